"""``haar``: OpenCV's Haar cascade face detector, with eye centres from its eye cascade."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.faces.detectors.base import (
    Detection,
    FaceDetector,
    _check_image,
    _detection_scale,
    _positive,
    _search_region,
    _shift,
    _shrink,
    landmarks_from,
    register_detector,
)

__all__ = ["HaarDetector"]


@register_detector
class HaarDetector(FaceDetector):
    """OpenCV Haar cascade (Viola-Jones) frontal-face detector; works offline from the wheel alone.

    The frame is converted to grayscale and shrunk so that the smallest face searched for,
    ``min_face`` x the frame's shorter side, becomes the cascade's 24 px window (and its longer side
    at most ``max_side`` px; 0: no cap): the cost does not grow with the video's resolution. The
    cascade then scans sizes in steps of ``scale_factor`` (``min_neighbors`` raw hits needed);
    ``equalize`` applies histogram equalisation first. ``score`` is the number of merged raw
    detections (cascade neighbours). :meth:`detect_near` (used while tracking) searches only around
    the tracked box, in finer 1.1 steps.

    With ``eyes`` on, OpenCV's eye cascade runs in the upper part of each face box (rescaled to a
    120 px wide face, full-resolution pixels); when it finds one plausible eye in each half of the
    face (similar size and height, 20-75 % of the face width apart, eye line within 35 degrees),
    their centres fill ``landmarks5`` rows 0 and 1 (nose and mouth rows NaN); otherwise
    ``landmarks5`` is ``None``. It costs a few milliseconds per face. The frontal cascade itself
    only finds faces within about 20 degrees of upright.
    """

    name = "haar"
    landmarks = "eyes"
    defaults = {
        "max_side": 0,
        "scale_factor": 1.2,
        "min_neighbors": 5,
        "min_face": 0.1,
        "equalize": True,
        "eyes": True,
        "cascade": "haarcascade_frontalface_default.xml",
        # the tracking search and the eye search: what they cost against what they find is measured in
        # docs/benchmarks/face_speed.md (until 2026-12: roi_min 0.5, roi_max 2). eye_width: a 90 px face halves
        # the eye search's time but found both eyes in 33-45 % of CREMA-D faces instead of 55-76 % (face_speed.md
        # and one check of 191 faces): kept at 120
        "roi_face": 48,
        "roi_min": 0.7,
        "roi_max": 1.5,
        "eye_width": 120,
        "eye_min": 1 / 6,  # the eyes searched, as fractions of the face's width (20 to 48 px at 120)
        "eye_max": 0.4,
    }
    _transient = ("_face", "_eye")

    def validate(self) -> None:
        _positive(self, "max_side", allow_zero=True)
        _positive(self, "min_face", "min_neighbors", "roi_face", "roi_min", "eye_width", "eye_min")
        if not self.params["eye_min"] < self.params["eye_max"] <= 1.0:
            raise ConfigError(f"haar: need eye_min < eye_max <= 1, got {self.params['eye_min']!r}, "
                              f"{self.params['eye_max']!r}")
        if not self.params["roi_min"] < 1.0 < self.params["roi_max"]:
            raise ConfigError(f"haar: need roi_min < 1 < roi_max, got {self.params['roi_min']!r}, "
                              f"{self.params['roi_max']!r}")
        if not self.params["scale_factor"] > 1.0:
            raise ConfigError(f"haar: scale_factor must be > 1, got {self.params['scale_factor']!r}")

    @staticmethod
    def _cascade(filename: str) -> cv2.CascadeClassifier:
        path = Path(filename)
        if not path.is_file():
            path = Path(cv2.data.haarcascades) / filename
        if not path.is_file():
            raise AvaffectError(
                f"Haar cascade {filename} not found (looked in {cv2.data.haarcascades}): OpenCV 5 wheels no "
                "longer ship the cascades; install opencv-python-headless<5 or give the cascade's path"
            )
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise AvaffectError(f"{path}: cannot load the Haar cascade (corrupt file?)")
        return cascade

    def _models(self) -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier | None]:
        face = self.__dict__.get("_face")
        if face is None:
            face = self._face = self._cascade(self.params["cascade"])
            self._eye = self._cascade("haarcascade_eye.xml") if self.params["eyes"] else None
        return face, self._eye

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self._detect(rgb, self.params["eyes"])

    def detect_near(self, rgb: np.ndarray, box: np.ndarray, search: float = 1.0) -> list[Detection]:
        """Faces near ``box`` (see :meth:`FaceDetector.detect_near`), searched at a scale where the
        box is ``roi_face`` px and among sizes from ``roi_min`` to ``roi_max`` times the box: a few times
        faster than :meth:`detect` on the whole frame."""
        return self._detect_near(rgb, box, search, self.params["eyes"])

    def detect_boxes(self, rgb: np.ndarray, near: np.ndarray | None = None, search: float = 1.0) -> list[Detection]:
        """The faces without their eyes (:meth:`add_landmarks` finds those): the face cascade only."""
        return self._detect(rgb, False) if near is None else self._detect_near(rgb, near, search, False)

    def _eye_sizes(self) -> tuple[float, float]:
        return float(self.params["eye_min"]), float(self.params["eye_max"])

    def add_landmarks(self, rgb: np.ndarray, detections: list[Detection]) -> list[Detection]:
        """The eye search of :meth:`detect` on each detection (the face cascade already ran)."""
        _, eye_cascade = self._models()
        if eye_cascade is None or not detections:
            return detections
        gray = cv2.cvtColor(_check_image(rgb), cv2.COLOR_RGB2GRAY)
        width = float(self.params["eye_width"])
        out = []
        for d in detections:
            eyes = self._eyes(gray, d.box, eye_cascade, width, self._eye_sizes())
            out.append(Detection(d.box, d.score, landmarks_from(eyes) if eyes is not None else None))
        return out

    def _detect(self, rgb: np.ndarray, eyes: bool) -> list[Detection]:
        rgb = _check_image(rgb)
        p = self.params
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        s = _detection_scale(gray.shape, float(p["min_face"]), 24, int(p["max_side"]))
        small = _shrink(gray, s)
        min_px = max(24, int(round(float(p["min_face"]) * min(gray.shape[:2]) * s)))
        return self._run(gray, small, s, min_px, None, float(p["scale_factor"]), eyes)

    def _detect_near(self, rgb: np.ndarray, box: np.ndarray, search: float, eyes: bool) -> list[Detection]:
        rgb = _check_image(rgb)
        rx1, ry1, rx2, ry2 = _search_region(rgb.shape, box, search)
        if rx2 - rx1 < 8 or ry2 - ry1 < 8:
            return []
        gray = cv2.cvtColor(np.ascontiguousarray(rgb[ry1:ry2, rx1:rx2]), cv2.COLOR_RGB2GRAY)
        p = self.params
        side = float(max(box[2] - box[0], box[3] - box[1], 1.0))
        s = min(1.0, float(p["roi_face"]) / side)
        if s < 1.0:
            size = (max(1, int(round(gray.shape[1] * s))), max(1, int(round(gray.shape[0] * s))))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        else:
            small = gray
        lo = max(20, int(round(float(p["roi_min"]) * side * s)))
        found = self._run(gray, small, s, lo, max(lo + 1, int(round(float(p["roi_max"]) * side * s))), 1.1, eyes)
        return [_shift(d, rx1, ry1) for d in found]

    def _run(
        self, gray: np.ndarray, small: np.ndarray, s: float, min_px: int, max_px: int | None, step: float,
        eyes: bool = True,
    ) -> list[Detection]:
        """Run the face cascade on ``small`` (``gray`` shrunk by ``s``), with ``eyes`` the eye cascade on
        ``gray``."""
        face_cascade, eye_cascade = self._models()
        if not eyes:
            eye_cascade = None
        p = self.params
        if min_px > min(small.shape[:2]):
            return []
        if p["equalize"]:
            small = cv2.equalizeHist(small)
        kw = {"maxSize": (max_px, max_px)} if max_px else {}
        rects, neighbours = face_cascade.detectMultiScale2(
            small,
            scaleFactor=step,
            minNeighbors=int(p["min_neighbors"]),
            minSize=(min_px, min_px),
            **kw,
        )
        out = []
        for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(neighbours).reshape(-1)):
            box = np.array([x, y, x + w, y + h], dtype=np.float32) / s
            pair = (self._eyes(gray, box, eye_cascade, float(p["eye_width"]), self._eye_sizes())
                    if eye_cascade is not None else None)
            out.append(Detection(box, float(n), landmarks_from(pair) if pair is not None else None))
        return out

    @staticmethod
    def _eyes(gray: np.ndarray, box: np.ndarray, cascade: cv2.CascadeClassifier, width: float,
              sizes: tuple[float, float]) -> np.ndarray | None:
        """Eye centres ``[2, 2]`` (frame pixels) inside a face box (searched with the face ``width`` px wide, eyes
        of ``sizes`` times that width), or ``None``."""
        x1, y1, x2, y2 = (float(v) for v in box)
        w = x2 - x1
        h = y2 - y1
        if w < 8 or h < 8:
            return None
        H, W = gray.shape[:2]
        rx1, rx2 = int(max(0, x1)), int(min(W, x2))
        ry1, ry2 = int(max(0, y1 + 0.12 * h)), int(min(H, y1 + 0.62 * h))
        if rx2 - rx1 < 8 or ry2 - ry1 < 8:
            return None
        f = width / w
        roi = cv2.resize(
            gray[ry1:ry2, rx1:rx2],
            (max(1, int(round((rx2 - rx1) * f))), max(1, int(round((ry2 - ry1) * f)))),
            interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
        )
        roi = cv2.equalizeHist(roi)
        lo, hi = max(12, int(round(width * sizes[0]))), max(13, int(round(width * sizes[1])))
        found = cascade.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi))
        found = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        if len(found) < 2:
            return None
        cx = rx1 + (found[:, 0] + found[:, 2] / 2) / f
        cy = ry1 + (found[:, 1] + found[:, 3] / 2) / f
        size = found[:, 2] / f
        mid = x1 + w / 2
        left = np.flatnonzero(cx < mid)
        right = np.flatnonzero(cx >= mid)
        best, best_cost = None, math.inf
        for i in left:
            for j in right:
                dx, dy = cx[j] - cx[i], cy[j] - cy[i]
                if not (0.2 * w <= dx <= 0.75 * w) or abs(math.degrees(math.atan2(dy, dx))) > 35:
                    continue
                if max(size[i], size[j]) > 1.8 * min(size[i], size[j]):
                    continue
                cost = abs(dx / w - 0.42) + abs(size[i] - size[j]) / w
                if cost < best_cost:
                    best, best_cost = (i, j), cost
        if best is None:
            return None
        i, j = best
        return np.array([[cx[i], cy[i]], [cx[j], cy[j]]], dtype=np.float32)
