"""Shared plumbing of the extractors that run a ``.tflite`` face model on each face crop (``face_landmarks``,
``face_fer7``): the weight file (registered name or path), the model opened once and dropped when pickled, the
face pipeline's crop request, and streaming extraction. Needs ``pip install 'avaffect[faces]'``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError
from avaffect.features.extractors.base import Extractor
from avaffect.features.faces.crops import check_detect_every, face_pipeline_params
from avaffect.features.faces.source import resolve_face_source
from avaffect.features.stream import face_features
from avaffect.features.tflite import TfliteModel
from avaffect.features.weights import resolve_weights

__all__ = ["TfliteFaceExtractor"]


class TfliteFaceExtractor(Extractor):
    """Base class: subclasses set ``defaults`` (with ``weights``, ``detector``, ``crop_size``, ``margin``,
    ``detect_every``), ``keep`` (inner tensors to read) and implement ``dim`` and ``describe(crops)`` for the
    crops that hold a face. Steps without a face are zeros."""

    modality = "video"
    keep: ClassVar[tuple[str, ...]] = ()
    _transient = ("_model",)

    def validate(self) -> None:
        p = self.params
        if not isinstance(p["weights"], str) or not p["weights"]:
            raise ConfigError(f"{self.name}: weights must be a registered name or the path of a .tflite file")
        if not isinstance(p["crop_size"], int) or p["crop_size"] < 16:
            raise ConfigError(f"{self.name}: crop_size must be an integer >= 16 pixels, got {p['crop_size']!r}")
        if isinstance(p["margin"], bool) or not isinstance(p["margin"], (int, float)) or p["margin"] < 0:
            raise ConfigError(f"{self.name}: margin must be a number >= 0, got {p['margin']!r}")
        check_detect_every(self.name, p["detect_every"])

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

    def _pipeline(self) -> dict[str, Any]:
        return {"margin": float(self.params["margin"]), **face_pipeline_params(self.params)}

    def crop_request(self, rec: Recording) -> tuple[int, str, dict[str, Any]] | None:
        if resolve_face_source(rec, "auto", self.params["detector"]) != "video":
            return None
        return int(self.params["crop_size"]), self.params["detector"], self._pipeline()

    def extract(self, rec: Recording) -> np.ndarray:
        return face_features(rec, self, int(self.params["crop_size"]), self.params["detector"], **self._pipeline())
