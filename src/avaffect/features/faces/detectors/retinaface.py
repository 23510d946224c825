"""``retinaface``: RetinaFace from a user-supplied ONNX export, run with ``cv2.dnn``, and its anchor
layout and box/landmark decoding."""

from __future__ import annotations

import math
from collections.abc import Sequence

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

__all__ = ["RetinaFaceDetector", "retinaface_priors", "decode_retinaface", "RETINAFACE_FILE"]

RETINAFACE_FILE = "retinaface.onnx"
RETINAFACE_SOURCE = (
    "a RetinaFace ONNX export with the standard outputs loc [1,N,4], conf [1,N,2], landms [1,N,10], e.g. "
    "made with convert_to_onnx.py of https://github.com/biubug6/Pytorch_Retinaface from its "
    "mobilenet0.25 or resnet50 weights"
)


def retinaface_priors(
    height: int,
    width: int,
    min_sizes: Sequence[Sequence[int]] = ((16, 32), (64, 128), (256, 512)),
    steps: Sequence[int] = (8, 16, 32),
) -> np.ndarray:
    """RetinaFace anchors ``[N, 4]`` (centre x, centre y, width, height) in input pixels.

    Per level (stride ``steps[k]``, feature map ``ceil(H/step) x ceil(W/step)``), row-major over
    the map, and per cell one square anchor per size in ``min_sizes[k]``, centred on the cell:
    the layout of the original RetinaFace (and of its common PyTorch port).
    """
    parts = []
    for sizes, step in zip(min_sizes, steps):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * step, (np.arange(fw) + 0.5) * step, indexing="ij")
        k = len(sizes)
        level = np.empty((fh, fw, k, 4), dtype=np.float32)
        level[..., 0] = cx[..., None]
        level[..., 1] = cy[..., None]
        level[..., 2] = np.asarray(sizes, dtype=np.float32)
        level[..., 3] = np.asarray(sizes, dtype=np.float32)
        parts.append(level.reshape(-1, 4))
    return np.concatenate(parts)


def decode_retinaface(
    loc: np.ndarray, landms: np.ndarray | None, priors: np.ndarray, variance: Sequence[float] = (0.1, 0.2)
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode RetinaFace regressions against ``priors`` (pixels, from :func:`retinaface_priors`).

    ``loc [N, 4]`` -> boxes ``[N, 4]`` (x1, y1, x2, y2): centre = prior centre + loc[:2] * v0 * prior
    size; size = prior size * exp(loc[2:] * v1). ``landms [N, 10]`` -> ``[N, 5, 2]``: prior centre +
    landms * v0 * prior size.
    """
    loc = np.asarray(loc, dtype=np.float32).reshape(-1, 4)
    pc, ps = priors[:, :2], priors[:, 2:]
    centre = pc + loc[:, :2] * variance[0] * ps
    size = ps * np.exp(loc[:, 2:] * variance[1])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    points = None
    if landms is not None:
        lm = np.asarray(landms, dtype=np.float32).reshape(-1, 5, 2)
        points = pc[:, None, :] + lm * variance[0] * ps[:, None, :]
    return boxes, points


def _softmax_if_logits(conf: np.ndarray) -> np.ndarray:
    if conf.min() < 0 or conf.max() > 1 or not np.allclose(conf.sum(axis=1), 1, atol=1e-3):
        e = np.exp(conf - conf.max(axis=1, keepdims=True))
        conf = e / e.sum(axis=1, keepdims=True)
    return conf


@register_detector
class RetinaFaceDetector(FaceDetector):
    """RetinaFace from a user-supplied ONNX export, run with ``cv2.dnn``.

    Expected export (the layout of the original model and of biubug6/Pytorch_Retinaface's
    ``convert_to_onnx.py``): input ``[1, 3, S, S]`` BGR float minus the mean (104, 117, 123), not
    scaled; three outputs, told apart by their last dimension: ``loc [1, N, 4]`` box regressions,
    ``conf [1, N, 2]`` (background, face) probabilities (logits are softmaxed), ``landms [1, N, 10]``
    5-point regressions, against the anchors of :func:`retinaface_priors` (``min_sizes``, ``steps``)
    with ``variance`` (0.1, 0.2). The frame is shrunk (never enlarged) so that its longer side fits
    ``input_size`` and padded at the bottom/right to ``input_size x input_size`` (exports with a
    fixed 640 x 640 input work as is). Pass ``weights=PATH`` or save the file as
    ``$AVAFFECT_HOME/weights/retinaface.onnx``. Landmarks: all 5 points.
    """

    name = "retinaface"
    landmarks = "5"
    defaults = {
        "weights": None,
        "input_size": 640,
        "score_threshold": 0.7,
        "nms_threshold": 0.4,
        "min_sizes": ((16, 32), (64, 128), (256, 512)),
        "steps": (8, 16, 32),
        "variance": (0.1, 0.2),
        "mean_bgr": (104.0, 117.0, 123.0),
    }
    _transient = ("_net", "_priors")

    def validate(self) -> None:
        _positive(self, "input_size", "score_threshold", "nms_threshold")
        self.weights = _weights_path(self.params["weights"], RETINAFACE_FILE, "RetinaFace", RETINAFACE_SOURCE)

    def _model(self):
        net = self.__dict__.get("_net")
        if net is None:
            try:
                net = cv2.dnn.readNetFromONNX(str(self.weights))
            except cv2.error as exc:
                raise AvaffectError(f"{self.weights}: cannot load the RetinaFace ONNX model: {exc}") from exc
            self._net = net
            size = int(self.params["input_size"])
            self._priors = retinaface_priors(size, size, self.params["min_sizes"], self.params["steps"])
        return net

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = _check_image(rgb)
        net = self._model()
        size = int(self.params["input_size"])
        bgr, s = _downscale(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size)
        canvas = np.zeros((size, size, 3), dtype=np.uint8)
        canvas[: bgr.shape[0], : bgr.shape[1]] = bgr
        blob = cv2.dnn.blobFromImage(canvas, 1.0, (size, size), tuple(self.params["mean_bgr"]), swapRB=False)
        net.setInput(blob)
        outs = net.forward(net.getUnconnectedOutLayersNames())
        by_dim = {int(o.shape[-1]): o.reshape(-1, o.shape[-1]) for o in outs}
        if not {4, 2} <= set(by_dim):
            raise AvaffectError(
                f"{self.weights}: outputs of shapes {[tuple(o.shape) for o in outs]} are not RetinaFace's "
                "loc [1,N,4], conf [1,N,2], landms [1,N,10]"
            )
        priors = self._priors
        if len(by_dim[4]) != len(priors):
            raise AvaffectError(
                f"{self.weights}: {len(by_dim[4])} anchors in the output but {len(priors)} expected for a "
                f"{size}x{size} input; set input_size to the export's input size (and min_sizes/steps)"
            )
        scores = _softmax_if_logits(by_dim[2])[:, 1]
        keep = np.flatnonzero(scores >= float(self.params["score_threshold"]))
        if len(keep) == 0:
            return []
        boxes, points = decode_retinaface(
            by_dim[4][keep], by_dim[10][keep] if 10 in by_dim else None, priors[keep], self.params["variance"]
        )
        xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
        chosen = cv2.dnn.NMSBoxes(
            xywh, scores[keep].tolist(), float(self.params["score_threshold"]), float(self.params["nms_threshold"])
        )
        out = []
        for i in np.asarray(chosen, dtype=int).reshape(-1):
            out.append(Detection(boxes[i] / s, float(scores[keep][i]), points[i] / s if points is not None else None))
        return out
