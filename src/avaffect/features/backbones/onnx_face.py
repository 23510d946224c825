"""``face_onnx``: a face model in ONNX form run on each face crop — its embedding as visual features, or its own
valence/arousal (bring-your-own V/A face models, ``predict --face-model``).

Made for the layout of EmotiEffLib / HSEmotion's multi-task V/A models (``enet_b0_8_va_mtl.onnx``: 224 x 224,
ImageNet normalisation; ``mbf_va_mtl.onnx``: 112 x 112, mean/std 0.5): one input ``[N, 3, S, S]`` float RGB, and
an output whose **last two columns are valence and arousal** (the columns before them: expression logits). A
model with two outputs is read as ``(embedding, head)``. Input size and normalisation of the registered files
live in their weight-registry entries (:attr:`WeightFile.inputs`); for your own file the input size is read from
the model (give ``input_size`` when it is not fixed there) and ``normalize`` defaults to ImageNet's. The
files are never downloaded: a missing one says where to get it and where to put it.

``output``: ``"embedding"`` (default: the first of two outputs, else the whole single output) or ``"va"`` (the
model's valence and arousal, 2 columns: what ``predict --face-model`` writes). Steps without a face are zeros.
Runs with ``onnxruntime`` (a dependency of avaffect; :mod:`avaffect.onnxrt`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.backbones.resnet import IMAGE_NORMALIZATIONS, ImageNormalization, prepare_crops
from avaffect.features.extractors.base import Extractor, ExtractorParams, Positive, register_extractor
from avaffect.features.face_stream import face_features
from avaffect.features.faces.pipeline import FacePipeline, face_field, face_pipeline
from avaffect.features.weights import WEIGHTS, ImageInput, UserSupplied, WeightFile, register_weights, resolve_weights
from avaffect.onnxrt import open_session

__all__ = ["FaceOnnx"]


# the registered EmotiEffLib files and the images each expects, declared here beside the extractor that runs them
_EMOTIEFF = UserSupplied("the ONNX model files of EmotiEffLib (HSEmotion, A. Savchenko), "
                         "https://github.com/sb-ai-lab/EmotiEffLib; its Python package downloads them at run time, "
                         "avaffect never does")
_AFFECTNET = ("EmotiEffLib's code is Apache-2.0; the weights are trained on AffectNet, whose terms restrict use to "
              "non-commercial research — check them for your use")
for _name, _what, _size, _norm, _takes in (
        ("enet_b0_8_va_mtl", "EfficientNet-B0 face model, 8 expressions", 224, "imagenet", "ImageNet-normalised RGB"),
        ("mbf_va_mtl", "MobileFaceNet face model, expressions", 112, "half", "RGB normalised to mean/std 0.5")):
    register_weights(WeightFile(
        name=_name, filename=f"{_name}.onnx", source=_EMOTIEFF, license=_AFFECTNET, used_by=("face_onnx",),
        description=f"{_what} + valence/arousal (multi-task, AffectNet), EmotiEffLib",
        note=f"an ONNX file taking [N, 3, {_size}, {_size}] {_takes}; its last two outputs are valence and arousal",
        inputs=ImageInput(_size, _norm)))


@register_extractor
class FaceOnnx(Extractor):
    """An ONNX face model per face crop (see the module docstring)."""

    name = "face_onnx"
    modality = "video"
    version = "1"

    class Params(ExtractorParams):
        weights: str = Field("enet_b0_8_va_mtl", min_length=1, description="a registered ONNX face model or the path "
                             "of an .onnx file")
        input_size: int | None = Field(None, ge=16, description="side the model sees (px); None: the registered "
                                       "file's, else read from the model")
        normalize: ImageNormalization | None = Field(None, description="pixel normalisation; None: the registered "
                                                     "file's, else imagenet")
        output: Literal["embedding", "va"] = Field("embedding", description="the model's embedding, or its own "
                                                   "valence and arousal (2 columns)")
        crop_size: int | None = face_field("crop_size", None)  # None: the model's input size
        detector: str = face_field("detector")
        detect_every: int = face_field("detect_every")
        eyes_every: int = face_field("eyes_every")
        batch_size: Positive = Field(32, description="crops per model call (does not change the features)")

    _transient = ("_session", "_dim")
    late_defaults = {"eyes_every": 1}

    def load_model(self) -> None:
        """Open the model now (a missing or broken file fails here, before any video)."""
        self._sess()

    def weights_path(self):
        """The .onnx file (a missing registered file says where to get it and where to put it)."""
        return resolve_weights(self.params["weights"], verify=False)

    # ------------------------------------------------------------------ what the file says
    @property
    def _inputs(self) -> ImageInput | None:
        """The images the registered file expects (``None``: a file of the user's)."""
        entry = WEIGHTS.get(self.params["weights"], None)
        return entry.inputs if entry is not None else None

    @property
    def input_size(self) -> int:
        """``input_size``, else the registry's, else the model's own static input shape."""
        size = self.params["input_size"] or (self._inputs.size if self._inputs else None)
        if size is None:
            shape = self._sess().get_inputs()[0].shape  # [N, 3, S, S], N usually symbolic
            size = shape[-1] if len(shape) == 4 and isinstance(shape[-1], int) else None
        if size is None:
            raise ConfigError(f"face_onnx: {self.params['weights']}: the model's input size is not fixed in the "
                              "file; give input_size (and normalize)")
        return int(size)

    @property
    def normalize(self) -> str:
        return self.params["normalize"] or (self._inputs.normalize if self._inputs else None) or "imagenet"

    def _sess(self):
        sess = self.__dict__.get("_session")
        if sess is None:
            path = self.weights_path()
            sess = open_session(path, threads=1)
            if len(sess.get_outputs()) not in (1, 2):
                raise AvaffectError(f"{path}: face_onnx expects one output (.. , valence, arousal) or two "
                                    f"(embedding, head); this model has {len(sess.get_outputs())}")
            self._session = sess
        return sess

    @property
    def dim(self) -> int:
        if self.params["output"] == "va":
            return 2
        d = self.__dict__.get("_dim")
        if d is None:
            d = self._dim = int(self._run(np.zeros((1, self.input_size, self.input_size, 3), np.uint8)).shape[1])
        return d

    # ------------------------------------------------------------------ running it
    def _run(self, crops: np.ndarray) -> np.ndarray:
        """``[n, out]`` of uint8 RGB crops at ``input_size``."""
        sess = self._sess()
        mean, std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in IMAGE_NORMALIZATIONS[self.normalize])
        name = sess.get_inputs()[0].name
        outs = []
        for lo in range(0, len(crops), int(self.params["batch_size"])):
            x = crops[lo:lo + int(self.params["batch_size"])].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
            try:
                res = sess.run(None, {name: (x - mean) / std})
            except Exception as e:  # onnxruntime's own exception types: a model of another layout
                raise AvaffectError(f"{self.params['weights']}: the model does not take [N, 3, {x.shape[2]}, "
                                    f"{x.shape[3]}] RGB images ({str(e).splitlines()[0][:200]}); face_onnx runs "
                                    "models in the EmotiEffLib layout (give input_size if it differs)") from None
            if self.params["output"] == "va":
                y = res[-1][:, -2:]
            else:
                y = res[0]
            outs.append(np.asarray(y, np.float32).reshape(len(x), -1))
        return np.concatenate(outs)

    def features_from_crops(self, crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask, dtype=bool)
        idx = np.flatnonzero(mask)
        out = np.zeros((len(mask), self.dim), dtype=np.float32)
        if len(idx):
            out[idx] = self._run(prepare_crops(np.asarray(crops)[idx], self.input_size, "resize"))
        return out

    def face_pipeline(self) -> FacePipeline:
        p = self.params
        return face_pipeline(detector=p["detector"], crop_size=int(p["crop_size"] or self.input_size),
                             detect_every=p["detect_every"], eyes_every=p["eyes_every"])

    def extract(self, rec: Recording) -> np.ndarray:
        return face_features(rec, self)
