"""The preprocessing spec: everything between a video and the model's inputs that a checkpoint must carry, so
that ``predict`` and ``evaluate`` rebuild exactly what training ran — never guessed from paths or defaults.

Training writes it into ``model.safetensors`` (:func:`avaffect.models.checkpoint.save_checkpoint`); readers get
it back typed (:meth:`PreprocessingSpec.from_metadata`). Checkpoints written before the spec was typed (an
untyped dict with ``faces.source`` = ``cropped_aligned`` / ``detector``) are read into the same type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from avaffect.data.recording import TARGETS
from avaffect.errors import AvaffectError
from avaffect.features.extractors.base import Extractor, ExtractorSpec
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.features.faces.source import FaceSource

__all__ = ["ExtractorRecord", "FaceSpec", "MissingModalityRules", "PreprocessingSpec", "SPEC_VERSION"]

SPEC_VERSION = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExtractorRecord(ExtractorSpec):
    """An extractor as trained: name, the parameters the config gave, and its feature-store id (name + hash
    of all parameters and version), which tells whether a rebuilt extractor is the same one."""

    id: str = ""

    @classmethod
    def of(cls, spec: ExtractorSpec, extractor: Extractor) -> ExtractorRecord:
        return cls(name=spec.name, params=dict(spec.params), id=extractor.id)

    def side_files(self, folder: Path) -> list[Path]:
        """The files this extractor reads beside its checkpoint: its ``weights`` and ``onnx`` parameters where they
        are paths relative to ``folder`` (the checkpoint's own folder) and the file is there (``weights`` only without
        ``onnx``, which carries them). An end-to-end run records its fine-tuned backbones so (``backbones/<file>``), an
        export folder its extractor networks (``extractors/<file>.onnx``), so the folder can move, and a copy of the
        model must take the files along (``export --out``, ``calibrate``)."""
        keys = ("onnx",) if self.params.get("onnx") else ("weights",)
        return [f for f in (self._beside(folder, k) for k in keys) if f is not None]

    def params_beside(self, folder: Path) -> dict[str, Any]:
        """The parameters with the :meth:`side_files` made absolute against ``folder``."""
        params = dict(self.params)
        for key in ("weights", "onnx"):
            rel = self._beside(folder, key)
            if rel is not None:
                params[key] = str(folder / rel)
        return params

    def _beside(self, folder: Path, key: str) -> Path | None:
        """Parameter ``key`` as a path relative to ``folder`` whose file is there, else ``None``."""
        v = self.params.get(key)
        return Path(v) if isinstance(v, str) and not Path(v).is_absolute() and (folder / v).is_file() else None


class FaceSpec(_Strict):
    """Where the faces came from in training (the rule: :mod:`avaffect.features.faces.source`) and the face
    pipeline that cut them.

    ``source`` = ``crops``: the dataset's own face crops (Aff-Wild2 ``cropped_aligned``); at prediction time a
    video reproduces training only with its crops folder given (``predict --crops``), else the ``pipeline`` runs
    on it. ``video``: the ``pipeline`` ran on the videos, and runs again at prediction time. Checkpoints written
    before the typed pipeline stored its ``detector`` and ``crop_size`` here: they load into ``pipeline``."""

    source: FaceSource = "video"
    pipeline: FacePipeline = Field(default_factory=FacePipeline)

    @model_validator(mode="before")
    @classmethod
    def _before_the_pipeline(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and ({"detector", "crop_size"} & set(raw)):
            raw = dict(raw)
            pipeline = dict(raw.get("pipeline") or {})
            for key in ("detector", "crop_size"):
                if key in raw:
                    pipeline.setdefault(key, raw.pop(key))
            raw["pipeline"] = pipeline
        return raw

    @property
    def detector(self) -> str:
        return self.pipeline.detector

    @property
    def crop_size(self) -> int:
        return self.pipeline.crop_size


class MissingModalityRules(_Strict):
    """What the model sees when a modality is missing (applied identically in training and prediction)."""

    no_face: Literal["zero_visual"] = Field(
        "zero_visual", description="steps without a face: the normalised visual vector is zero (the training mean)")
    no_audio: Literal["training_mean"] = Field(
        "training_mean", description="a video without audio: audio features set to the training mean")


class PreprocessingSpec(_Strict):
    """Extractors, face source, windowing, normalisation and targets of a trained model."""

    version: int = SPEC_VERSION
    audio_extractor: ExtractorRecord
    video_extractor: ExtractorRecord
    faces: FaceSpec = FaceSpec()
    window: int = Field(ge=1, description="L, steps per window")
    hop: int = Field(ge=1)
    fps: float = Field(gt=0, description="median frame rate of the training recordings")
    targets: list[str] = Field(default_factory=lambda: list(TARGETS))
    normalization: Literal["train_mean_std"] = Field(
        "train_mean_std", description="per-feature (x - mean) / std, statistics of the training split, stored "
        "as buffers in the weights")
    missing: MissingModalityRules = MissingModalityRules()
    step_frames: int = Field(1, ge=1, description="video frames per timeline step: 1, a step per frame (avaffect "
                             "models); k, one step per non-overlapping k-frame clip (the authors' RJA / DCA / JCA "
                             "models), each frame taking its clip's prediction")
    trained_on: str = Field("unknown", description="the training config's data.dataset (synthetic: the built-in "
                            "cartoon demo set, whose predictions say nothing about real emotion); unknown in "
                            "checkpoints written before it was recorded")

    def side_files(self, folder: Path) -> list[Path]:
        """The files the extractors read beside the checkpoint in ``folder`` (:meth:`ExtractorRecord.side_files`),
        relative to it: what a copy of the model must take along."""
        return sorted({f for r in (self.audio_extractor, self.video_extractor) for f in r.side_files(folder)})

    @classmethod
    def from_metadata(cls, raw: dict[str, Any], where: str = "checkpoint") -> PreprocessingSpec:
        """The spec stored in a checkpoint, typed; a spec of the first (untyped) format is converted."""
        raw = dict(raw)
        if raw.get("version", 1) < 2:
            raw = _from_v1(raw)
        try:
            return cls(**raw)
        except ValidationError as e:
            raise AvaffectError(f"{where}: invalid preprocessing spec ({e}); re-train or re-export the model "
                                "with this version of avaffect") from None


def _from_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """The first format: ``faces.source`` was ``cropped_aligned`` (dataset crops) or ``detector``; the detector
    and crop size were only in the visual extractor's parameters (default ``haar`` / 112)."""
    video = raw.get("video_extractor", {})
    params = video.get("params", {})
    source = raw.get("faces", {}).get("source", "detector")
    out = {k: v for k, v in raw.items() if k in ("audio_extractor", "video_extractor", "window", "hop", "fps",
                                                 "targets")}
    out["faces"] = {"source": "crops" if source == "cropped_aligned" else "video",
                    "detector": params.get("detector", "haar"), "crop_size": params.get("crop_size", 112)}
    out["version"] = SPEC_VERSION
    return out
