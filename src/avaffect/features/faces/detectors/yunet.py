"""``yunet``: OpenCV's YuNet face detector (``cv2.FaceDetectorYN``) with user-supplied ONNX weights."""

from __future__ import annotations

import cv2
import numpy as np

from avaffect.errors import AvaffectError
from avaffect.features.faces.detectors.base import (
    Detection,
    FaceDetector,
    _check_image,
    _downscale,
    _positive,
    _weights_path,
    register_detector,
)

__all__ = ["YuNetDetector", "YUNET_FILE"]

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_SOURCE = (
    "OpenCV Zoo's face_detection_yunet model: https://github.com/opencv/opencv_zoo/tree/main/models/"
    f"face_detection_yunet ({YUNET_FILE}; raw file: https://github.com/opencv/opencv_zoo/raw/main/models/"
    f"face_detection_yunet/{YUNET_FILE})"
)


@register_detector
class YuNetDetector(FaceDetector):
    """YuNet (``cv2.FaceDetectorYN``) with user-supplied ONNX weights.

    Get ``face_detection_yunet_2023mar.onnx`` from OpenCV Zoo (models/face_detection_yunet) and pass
    ``weights=PATH`` or save it as ``$AVAFFECT_HOME/weights/face_detection_yunet_2023mar.onnx``.
    The frame is shrunk to at most ``max_side`` pixels (0: full size); detections scoring below
    ``score_threshold`` are dropped, overlaps merged by NMS (``nms_threshold``), at most ``top_k``.
    Landmarks: all 5 points.
    """

    name = "yunet"
    landmarks = "5"
    defaults = {"weights": None, "max_side": 640, "score_threshold": 0.8, "nms_threshold": 0.3, "top_k": 50}
    _transient = ("_net", "_net_size")

    def validate(self) -> None:
        _positive(self, "max_side", allow_zero=True)
        _positive(self, "score_threshold", "nms_threshold", "top_k")
        self.weights = _weights_path(self.params["weights"], YUNET_FILE, "YuNet", YUNET_SOURCE)

    def _model(self, size: tuple[int, int]):
        net = self.__dict__.get("_net")
        if net is None:
            if not hasattr(cv2, "FaceDetectorYN"):
                raise AvaffectError("this OpenCV build has no FaceDetectorYN (needs OpenCV >= 4.5.4)")
            p = self.params
            try:
                net = cv2.FaceDetectorYN.create(
                    str(self.weights), "", size, float(p["score_threshold"]), float(p["nms_threshold"]), int(p["top_k"])
                )
            except cv2.error as exc:
                raise AvaffectError(f"{self.weights}: cannot load the YuNet model: {exc}") from exc
            self._net, self._net_size = net, size
        if self._net_size != size:
            net.setInputSize(size)
            self._net_size = size
        return net

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = _check_image(rgb)
        bgr, s = _downscale(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), int(self.params["max_side"]))
        net = self._model((bgr.shape[1], bgr.shape[0]))
        _, faces = net.detect(bgr)
        if faces is None:
            return []
        out = []
        for row in np.asarray(faces, dtype=np.float32).reshape(-1, 15):
            x, y, w, h = row[:4]
            box = np.array([x, y, x + w, y + h], dtype=np.float32) / s
            out.append(Detection(box, float(row[14]), row[4:14].reshape(5, 2) / s))
        return out
