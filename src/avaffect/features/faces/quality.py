"""How good a face crop is, per frame (``predict --face-quality``, ``--min-face-quality``).

Measured on what the model is given — the aligned ``crop_size`` crop — and on the face's box and eye line:

- ``face_size``: the box's longer side in frame pixels;
- ``sharpness``: the variance of the Laplacian of the grey crop (blur lowers it: on the CREMA-D test clips a sharp
  face crop measures 360-580, the same crop under a Gaussian blur of sigma 2 about 8);
- ``roll``: the eye line's angle in degrees (the head's in-plane tilt; 0 when the eyes were not found, the only pose
  the 2-eye landmarks of the default detector give);
- ``yaw``: how far the face is turned, in degrees, from the eyes and the nose tip where the detector gives them
  (:func:`~avaffect.features.faces.align.head_yaw`: a proxy through a round-number head model; NaN for Haar);
- ``detector_score``: the detector's own score on the last frame it ran (Haar: its neighbour count, MediaPipe: a
  probability; not comparable across detectors, so not in the quality below).

``face_quality`` in [0, 1] is the product of three terms, each 1 when nothing is wrong:
size ``clip((face_size - 24) / (80 - 24), 0, 1)`` (the detector's smallest faces up to a face that fills a
112-px crop with detail), sharpness ``clip(sharpness / 100, 0, 1)``, and roll
``clip(1 - (|roll| - 15) / 30, 0, 1)`` (full up to 15 degrees, 0 from 45); where the yaw is known, a fourth,
``clip(1 - (|yaw| - 20) / 40, 0, 1)`` (full up to 20 degrees, 0 from 60: a face in profile). The thresholds are
stated choices, not fitted: ``--min-face-quality Q`` treats a frame whose quality is below ``Q`` as a frame
without a face (the model's missing-face input, ``face_detected`` false), so that blur or a tiny face does not
feed the model noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["QUALITY_COLUMNS", "QUALITY_RULE", "FaceQuality", "face_quality", "QualityLog"]

MIN_SIDE, GOOD_SIDE = 24.0, 80.0
SHARP_REF = 100.0
ROLL_OK, ROLL_BAD = 15.0, 45.0
YAW_OK, YAW_BAD = 20.0, 60.0
QUALITY_COLUMNS = ("face_size", "sharpness", "roll", "yaw", "detector_score", "face_quality")
QUALITY_RULE = (f"face_quality = size x sharpness x roll terms: clip((face_size - {MIN_SIDE:g}) / "
                f"{GOOD_SIDE - MIN_SIDE:g}), clip(sharpness / {SHARP_REF:g}), clip(1 - (|roll| - {ROLL_OK:g}) / "
                f"{ROLL_BAD - ROLL_OK:g}), each clipped to [0, 1], and where the yaw is known clip(1 - (|yaw| - "
                f"{YAW_OK:g}) / {YAW_BAD - YAW_OK:g}); sharpness: the variance of the Laplacian of the grey aligned "
                "crop; roll: the eye line's angle (degrees); yaw: from the eyes and the nose tip (approximate)")


@dataclass(frozen=True)
class FaceQuality:
    face_size: float
    sharpness: float
    roll: float
    yaw: float
    detector_score: float
    face_quality: float


def _angle_term(angle: float, ok: float, bad: float) -> float:
    """1 up to ``ok`` degrees either way, 0 from ``bad``, linear between."""
    return float(np.clip(1 - (abs(angle) - ok) / (bad - ok), 0, 1))


def face_quality(crop: np.ndarray, box: np.ndarray, roll: float, score: float = float("nan"),
                 yaw: float = float("nan")) -> FaceQuality:
    """The measures and the quality of one crop (module docstring); ``yaw`` NaN: not known, no yaw term."""
    side = float(max(box[2] - box[0], box[3] - box[1]))
    sharp = float(cv2.Laplacian(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
    q = (np.clip((side - MIN_SIDE) / (GOOD_SIDE - MIN_SIDE), 0, 1) * np.clip(sharp / SHARP_REF, 0, 1)
         * _angle_term(roll, ROLL_OK, ROLL_BAD))
    if np.isfinite(yaw):
        q *= _angle_term(yaw, YAW_OK, YAW_BAD)
    return FaceQuality(side, sharp, float(roll), float(yaw), float(score), float(q))


@dataclass
class QualityLog:
    """The quality of every step that got a crop, gathered as a pass goes (a few floats a step), and the steps
    masked by a minimum quality."""

    steps: list[np.ndarray] = field(default_factory=list)
    rows: list[FaceQuality] = field(default_factory=list)
    masked: int = 0

    def add(self, steps: np.ndarray, q: FaceQuality) -> None:
        self.steps.append(np.asarray(steps, np.int64))
        self.rows.append(q)

    def columns(self, num_steps: int) -> dict[str, np.ndarray]:
        """``[num_steps]`` float32 per column of :data:`QUALITY_COLUMNS`, NaN where no crop was cut."""
        out = {c: np.full(num_steps, np.nan, np.float32) for c in QUALITY_COLUMNS}
        for steps, q in zip(self.steps, self.rows, strict=True):
            steps = steps[steps < num_steps]
            for c in QUALITY_COLUMNS:
                out[c][steps] = getattr(q, c)
        return out
