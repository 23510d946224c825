"""The cartoon face of a synthetic recording, drawn with OpenCV on an aligned crop, and the static
scene it is pasted into.

Valence shows in the mouth curvature; arousal in the eye and brow opening (the head jitter that also
follows arousal is placed by the writer).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import ArrayLike

_SKIN_TONES = np.array([  # BGR, light to dark
    (196, 214, 245), (170, 196, 234), (140, 175, 222), (112, 150, 198), (86, 120, 165), (60, 88, 124),
], dtype=np.float64)
_HAIR = np.array([(20, 20, 25), (30, 45, 80), (40, 80, 140), (150, 170, 190), (25, 30, 45)], dtype=np.float64)
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates in 1/16 px
_SCALE = 1 << _SHIFT


def _pt(x: float, y: float) -> tuple[int, int]:
    """A point in cv2 sub-pixel (``_SHIFT``) coordinates."""
    return int(round(x * _SCALE)), int(round(y * _SCALE))


def _color(c: ArrayLike) -> tuple[int, int, int]:
    """A cv2 colour from three channel values, clipped to 0..255."""
    return tuple(int(v) for v in np.clip(c, 0, 255))


class _Face:
    """Identity of the face and its drawing on one crop."""

    def __init__(self, rng: np.random.Generator, cs: int) -> None:
        self.cs = cs
        tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 8, 3)
        self.skin = _color(tone)
        self.shade = _color(tone * 0.78)
        self.hair = _color(_HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 6, 3))
        self.lips = _color(tone * 0.45 + np.array([10, 10, 60]))
        self.iris = _color(rng.choice([(40, 50, 70), (90, 70, 40), (60, 90, 60), (30, 30, 30)]))
        # aligned crops: the face is normalised in place and scale, so shape varies only moderately
        self.fw = rng.uniform(0.30, 0.34) * cs  # half-width
        self.fh = self.fw * rng.uniform(1.2, 1.32)  # half-height
        self.eye_dx = self.fw * rng.uniform(0.36, 0.48)
        self.eye_dy = -self.fh * rng.uniform(0.12, 0.22)
        self.eye_w = self.fw * rng.uniform(0.16, 0.22)
        self.mouth_w = self.fw * rng.uniform(0.40, 0.50)  # half-width
        self.mouth_dy = self.fh * rng.uniform(0.46, 0.54)
        self.hair_top = rng.uniform(0.85, 1.05)

    def draw(self, img: np.ndarray, valence: float, arousal: float, jx: float, jy: float) -> None:
        """Draw the face in place on the ``cs`` x ``cs`` BGR crop ``img``, offset by ``(jx, jy)`` px."""
        cs, lt = self.cs, cv2.LINE_AA
        cx, cy = cs / 2 + jx, cs * 0.52 + jy
        u = (arousal + 1.0) / 2.0  # 0 calm .. 1 excited
        hair_axes = _pt(self.fw * 1.08, self.fh * self.hair_top)
        cv2.ellipse(img, _pt(cx, cy - 0.18 * self.fh), hair_axes, 0, 0, 360, self.hair, -1, lt, _SHIFT)
        cv2.ellipse(img, _pt(cx, cy), _pt(self.fw, self.fh), 0, 0, 360, self.skin, -1, lt, _SHIFT)
        # eyes: opening follows arousal; brows rise with arousal
        eye_h = self.eye_w * (0.15 + 0.55 * u)
        for side in (-1.0, 1.0):
            ex, ey = cx + side * self.eye_dx, cy + self.eye_dy
            cv2.ellipse(img, _pt(ex, ey), _pt(self.eye_w, eye_h), 0, 0, 360, (235, 235, 235), -1, lt, _SHIFT)
            r = min(eye_h, 0.5 * self.eye_w)
            cv2.circle(img, _pt(ex, ey), int(round(r * _SCALE)), self.iris, -1, lt, _SHIFT)
            brow_y = ey - eye_h - self.eye_w * (0.35 + 0.8 * u)
            cv2.line(img, _pt(ex - side * 0.2 * self.eye_w - self.eye_w, brow_y + 0.15 * self.eye_w),
                     _pt(ex + self.eye_w, brow_y - side * 0.1 * self.eye_w), self.hair, 2, lt, _SHIFT)
        # nose
        nose_tip = _pt(cx - 0.06 * self.fw, cy + 0.16 * self.fh)
        cv2.line(img, _pt(cx, cy + 0.02 * self.fh), nose_tip, self.shade, 2, lt, _SHIFT)
        # mouth: corners up for positive valence (smile), down for negative
        my = cy + self.mouth_dy
        xs = np.linspace(-1.0, 1.0, 11)
        bend = 0.45 * self.mouth_w * valence
        pts = np.stack([cx + xs * self.mouth_w, my - bend * (xs ** 2 - 0.5)], axis=1)
        cv2.polylines(img, [np.round(pts * _SCALE).astype(np.int32)], False, self.lips, 3, lt, _SHIFT)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A static scene: a vertical gradient between two colours and a few soft rectangles."""
    top, bottom = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    img = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1))
    img = img.astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
        cv2.rectangle(img, (x0, y0), (x1, y1), _color(rng.uniform(20, 235, 3)), -1)
    return cv2.GaussianBlur(img, (0, 0), 2.0)
