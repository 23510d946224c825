"""``precomputed``: for frames that already are face crops (the whole image is the face)."""

from __future__ import annotations

import numpy as np

from avaffect.features.faces.detectors.base import Detection, FaceDetector, _check_image, register_detector

__all__ = ["PrecomputedDetector"]


@register_detector
class PrecomputedDetector(FaceDetector):
    """For frames that already are face crops (Aff-Wild2 ``cropped_aligned/<video>/00001.jpg``).

    ``detect`` returns one detection covering the whole image, unless the image is blank (every
    pixel at most ``blank_level``), which counts as no face. :func:`~avaffect.features.faces.crops.load_face_crops`
    reads a recording's crops folder directly (a missing jpg = no face).
    """

    name = "precomputed"
    landmarks = "none"
    defaults = {"blank_level": 0}

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = _check_image(rgb)
        if int(rgb.max()) <= int(self.params["blank_level"]):
            return []
        h, w = rgb.shape[:2]
        return [Detection(np.array([0, 0, w, h], dtype=np.float32), 1.0)]
