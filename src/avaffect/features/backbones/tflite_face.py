"""Shared plumbing of the extractors that run a ``.tflite`` face model on each face crop (``face_landmarks``,
``face_fer7``): the weight file (registered name or path), the model opened once and dropped when pickled, the
face pipeline's crop request, and streaming extraction. Needs ``pip install 'avaffect[faces]'``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from avaffect.data.recording import Recording
from avaffect.features.extractors.base import Extractor, ExtractorParams
from avaffect.features.face_stream import face_features
from avaffect.features.faces.pipeline import face_field
from avaffect.features.tflite import TfliteModel
from avaffect.features.weights import resolve_weights

__all__ = ["TfliteFaceExtractor", "TfliteParams"]


class TfliteParams(ExtractorParams):
    """The face pipeline and model file of a LiteRT face extractor (subclasses set the defaults)."""

    weights: str = Field(min_length=1, description="a registered LiteRT model or the path of a .tflite file")
    detector: str = face_field("detector")
    crop_size: int = face_field("crop_size")
    margin: float = face_field("margin")
    detect_every: int = face_field("detect_every")
    eyes_every: int = face_field("eyes_every")


class TfliteFaceExtractor(Extractor):
    """Base class: subclasses set ``Params`` (a :class:`TfliteParams` with their defaults), ``keep`` (inner
    tensors to read) and implement ``dim`` and ``describe(crops)`` for the crops that hold a face. Steps without a
    face are zeros."""

    modality = "video"
    keep: ClassVar[tuple[str, ...]] = ()
    _transient = ("_model",)
    late_defaults = {"eyes_every": 1}

    def load_model(self) -> None:
        """Open the model now (a missing runtime or file fails here, before any video)."""
        self.model()

    def model(self) -> TfliteModel:
        m = self.__dict__.get("_model")
        if m is None:
            m = self._model = TfliteModel(resolve_weights(self.params["weights"]), f"the {self.name} extractor",
                                          keep=self.keep)
        return m

    def describe(self, crops: np.ndarray) -> np.ndarray:
        """``[n, dim]`` of ``n`` uint8 RGB crops (``crop_size``), each holding a face."""
        raise NotImplementedError

    def features_from_crops(self, crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask, dtype=bool)
        out = np.zeros((len(mask), self.dim), dtype=np.float32)
        idx = np.flatnonzero(mask)
        if len(idx):
            out[idx] = self.describe(np.asarray(crops)[idx])
        return out

    def extract(self, rec: Recording) -> np.ndarray:
        return face_features(rec, self)
