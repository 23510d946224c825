"""``dlib``: dlib's HOG face detector and 5-point landmark model (the optional ``avaffect[dlib]`` extra)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from avaffect.errors import AvaffectError
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

__all__ = ["DlibDetector", "DLIB_INSTALL"]

DLIB_INSTALL = "pip install 'avaffect[dlib]'  (the packages dlib-bin and face-recognition-models)"


def _require_dlib():
    # dlib is an optional extra (avaffect[dlib]): imported only when a dlib detector is used
    if importlib.util.find_spec("dlib") is None:
        raise AvaffectError(f"the dlib face detector needs dlib, which is not installed: {DLIB_INSTALL}")
    return importlib.import_module("dlib")


def _dlib_five_point_model() -> Path:
    # found without importing face_recognition_models, whose __init__ needs pkg_resources (gone
    # from recent setuptools)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "models" / "shape_predictor_5_face_landmarks.dat"
            if path.is_file():
                return path
    raise AvaffectError(
        "the dlib 5-point landmark model (shape_predictor_5_face_landmarks.dat from the package "
        f"face-recognition-models) is not installed: {DLIB_INSTALL}; or pass predictor=PATH, or "
        "landmarks=False for boxes only"
    )


@register_detector
class DlibDetector(FaceDetector):
    """dlib's HOG + linear SVM frontal face detector, with its 5-point landmark model.

    Needs ``pip install 'avaffect[dlib]'`` (``dlib-bin``: prebuilt dlib; ``face-recognition-models``:
    ``shape_predictor_5_face_landmarks.dat``; or ``predictor=PATH``). dlib's window is 80 px: the
    frame is shrunk so that the smallest face searched for, ``min_face`` x its shorter side, becomes
    80 px (never enlarged: on small videos faces under 80 px are missed unless ``upsample`` >= 1,
    each level doubling the frame; ``max_side`` caps the longer side, 0: no cap); ``threshold``
    shifts the SVM decision threshold (lower = more faces). ``score`` is the SVM score. Landmarks
    (``landmarks=True``) are fitted on the full-resolution frame: the two eye centres (mean of each
    eye's two corner points) and the nose point; mouth rows NaN.
    """

    name = "dlib"
    landmarks = "eyes+nose"
    defaults = {
        "min_face": 0.1,
        "max_side": 0,
        "upsample": 0,
        "threshold": 0.0,
        "landmarks": True,
        "predictor": None,
    }
    _transient = ("_det", "_pred")

    def validate(self) -> None:
        _positive(self, "max_side", "upsample", allow_zero=True)
        _positive(self, "min_face")
        _require_dlib()
        if self.params["landmarks"]:
            given = self.params["predictor"]
            if given is not None and not Path(given).expanduser().is_file():
                raise AvaffectError(f"{given}: dlib landmark model not found (predictor=)")
            if given is None:
                _dlib_five_point_model()

    def _models(self):
        det = self.__dict__.get("_det")
        if det is None:
            dlib = _require_dlib()
            det = self._det = dlib.get_frontal_face_detector()
            self._pred = None
            if self.params["landmarks"]:
                path = self.params["predictor"] or _dlib_five_point_model()
                self._pred = dlib.shape_predictor(str(Path(path).expanduser()))
        return det, self._pred

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = np.ascontiguousarray(_check_image(rgb))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        s = _detection_scale(gray.shape, float(self.params["min_face"]), 80, int(self.params["max_side"]))
        return self._run(gray, s, int(self.params["upsample"]))

    def detect_near(self, rgb: np.ndarray, box: np.ndarray, search: float = 1.0) -> list[Detection]:
        """Faces near ``box`` (see :meth:`FaceDetector.detect_near`), searched in the region shrunk so
        that the box is 100 px (dlib's 80 px window leaves room for the face to shrink a little)."""
        rgb = _check_image(rgb)
        rx1, ry1, rx2, ry2 = _search_region(rgb.shape, box, search)
        if rx2 - rx1 < 8 or ry2 - ry1 < 8:
            return []
        gray = cv2.cvtColor(np.ascontiguousarray(rgb[ry1:ry2, rx1:rx2]), cv2.COLOR_RGB2GRAY)
        side = float(max(box[2] - box[0], box[3] - box[1], 1.0))
        s = min(1.0, 100.0 / side)
        upsample = int(self.params["upsample"]) if side * s < 90 else 0
        return [_shift(d, rx1, ry1) for d in self._run(gray, s, upsample)]

    def _run(self, gray: np.ndarray, s: float, upsample: int) -> list[Detection]:
        """Detect on ``gray`` shrunk by ``s``; boxes and landmarks in ``gray`` pixels."""
        import dlib  # optional extra, present once _models() has succeeded

        det, pred = self._models()
        small = _shrink(gray, s)
        rects, scores, _ = det.run(small, upsample, float(self.params["threshold"]))
        out = []
        for r, score in zip(rects, scores):
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float32) / s
            lm = None
            if pred is not None:
                rect = dlib.rectangle(*(int(round(v)) for v in (box[0], box[1], box[2] - 1, box[3] - 1)))
                shape = pred(gray, rect)
                pts = np.array([[shape.part(k).x, shape.part(k).y] for k in range(shape.num_parts)], dtype=np.float32)
                if len(pts) == 5:
                    lm = landmarks_from(np.stack([pts[0:2].mean(0), pts[2:4].mean(0)]), pts[4])
            out.append(Detection(box, float(score), lm))
        return out
