"""The extractor base class, its registry and the extractor spec a config names.

An extractor turns one :class:`~avaffect.data.recording.Recording` into ``[T, dim]`` float32
features aligned to ``rec.times`` (docs/design.md §2). Its identity in the feature store is
``<name>-<hash>``, the hash covering its parameters (defaults filled in) and its version, so a
different configuration or a changed algorithm never reuses stale features.

Write a new one by subclassing :class:`Extractor`, setting ``name``, ``modality``, ``version`` and its typed
parameters ``Params`` (an :class:`ExtractorParams`: fields with defaults, descriptions and limits, cross-field
checks as validators) and implementing ``dim`` and ``extract``, decorating it with :func:`register_extractor`,
and importing its module from :mod:`avaffect.features.extractors` (or, for a backbone, from
:mod:`avaffect.features.backbones`). Instances are pickled to worker processes: keep heavy or
unpicklable state (models, OpenCV objects) in attributes listed in ``_transient`` and build it lazily.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError, DataError, validation_message
from avaffect.features.faces.detectors import AUTO, auto_identities, detector_identity
from avaffect.features.faces.pipeline import FacePipeline, face_pipeline
from avaffect.features.faces.source import resolve_face_source
from avaffect.files import sha256_bytes
from avaffect.registry import Registry

__all__ = ["EXTRACTORS", "Extractor", "ExtractorParams", "ExtractorSpec", "Positive", "audio_source",
           "build_extractor", "extractor_params", "extractor_params_table", "get_extractor", "list_extractors",
           "needs_weights", "register_extractor"]

log = logging.getLogger(__name__)

EXTRACTORS: Registry[type[Extractor]] = Registry("feature extractor")


class ExtractorParams(BaseModel):
    """Base of every extractor's typed parameters: unknown keys are refused, each value is checked against its
    field (type, limits), cross-field rules are ``model_validator`` s. ``avaffect extractors`` and
    ``avaffect config show`` list the fields with their defaults and descriptions."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


Positive = Annotated[int, Field(gt=0)]


def extractor_params(name: str, given: Mapping[str, Any]) -> ExtractorParams:
    """``given`` validated against the registered extractor ``name``'s ``Params``; a :class:`ConfigError` names
    the unknown keys and the allowed ones, or the value at fault."""
    return EXTRACTORS.get(name)._validated(given)


def _type_text(annotation: Any, metadata: list) -> str:
    """A field's type as a user reads it: ``int >= 32``, ``causal|forward|centered``, ``str or none``."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        text = "|".join(map(str, get_args(annotation)))
    elif len(args) < len(get_args(annotation)):  # Optional[...]
        return f"{_type_text(args[0] if len(args) == 1 else annotation, metadata)} or none"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    for m in metadata:
        for op, attr in ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt")):
            if getattr(m, attr, None) is not None:
                text += f" {op} {getattr(m, attr)}"
    return text


def extractor_params_table(name: str) -> str:
    """What ``avaffect extractors`` prints for one extractor: its modality and dimension at the defaults, then one
    line per parameter (name, type, default, description)."""
    cls = EXTRACTORS.get(name)
    try:
        dim = str(cls().dim)
    except AvaffectError:  # a required parameter (imported_*) or a model file that sets it (face_onnx)
        dim = "set by its parameters or model file"
    lines = [f"{name} ({cls.modality}, dim {dim})"]
    for key, field in cls.Params.model_fields.items():
        kind = _type_text(field.annotation, field.metadata)
        default = "(required)" if field.is_required() else repr(field.get_default(call_default_factory=True))
        lines.append(f"  {key:<14} {kind:<26} {default:<20} {field.description or ''}".rstrip())
    return "\n".join(lines)


class ExtractorSpec(BaseModel):
    """An extractor as a config names it: ``name`` and ``params`` (the rest are the extractor's defaults),
    checked against the extractor's typed ``Params`` as soon as it is read."""

    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_params(self) -> ExtractorSpec:
        try:
            extractor_params(self.name, self.params)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return self

def _jsonable(value: Any) -> Any:
    """Normalise a parameter value so that equal configurations hash equally."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 2**53 else value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Extractor(ABC):
    """Base class of feature extractors.

    ``Extractor(**params)`` or ``Extractor(config)`` with ``config`` a dict or a pydantic model: the parameters,
    validated by the class's ``Params``, override its defaults; unknown names and bad values raise
    :class:`ConfigError`. ``self.settings`` is the typed parameters, ``self.params`` the same as a plain dict
    (what the feature id hashes).
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""  # "audio" or "video"
    version: ClassVar[str] = "1"
    Params: ClassVar[type[ExtractorParams]] = ExtractorParams
    #: ``Params``' defaults as a dict (derived, one fact: the ``Params`` class)
    defaults: ClassVar[dict[str, Any]] = {}
    _transient: ClassVar[tuple[str, ...]] = ()  # attributes dropped when pickled (rebuilt lazily)
    # parameters added after feature ids were first published, with the value they implicitly had before: left
    # out of the id while they keep it, so existing feature stores stay valid
    late_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None, **params: Any) -> None:
        given: dict[str, Any] = {}
        if config is not None:
            if hasattr(config, "model_dump"):
                config = config.model_dump()
            if not isinstance(config, Mapping):
                raise ConfigError(
                    f"extractor {self.name}: config must be a mapping, got {type(config).__name__}"
                )
            given.update(config)
        given.update(params)
        self.settings = self._validated(given)
        self.params: dict[str, Any] = _jsonable(self.settings.model_dump())

    @classmethod
    def _validated(cls, given: Mapping[str, Any]) -> ExtractorParams:
        unknown = sorted(set(given) - set(cls.Params.model_fields))
        if unknown:
            raise ConfigError(f"extractor {cls.name}: unknown parameter(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(cls.Params.model_fields) or '(none)'}")
        try:
            return cls.Params(**given)
        except ValidationError as e:
            raise ConfigError(f"extractor {cls.name}: {validation_message(e)}") from None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "defaults" in vars(cls):
            raise TypeError(f"{cls.__qualname__}: declare the parameters as a nested `class Params(ExtractorParams)` "
                            "(typed fields with defaults), not a `defaults` dict")
        cls.defaults = {k: f.get_default(call_default_factory=True) for k, f in cls.Params.model_fields.items()
                        if not f.is_required()}

    @property
    def config_hash(self) -> str:
        return self._hash(self.hash_params())

    def _hash(self, params: dict[str, Any]) -> str:
        return sha256_bytes(json.dumps({"params": params, "version": self.version}, sort_keys=True))[:8]

    def auto_ids(self) -> set[str]:
        """With a face ``detector`` ``auto``: the feature id this extractor has on each install (one per detector
        ``auto`` may run there); else empty. A checkpoint made where ``auto`` ran another detector has another."""
        if self.params.get("detector") != AUTO:
            return set()
        return {f"{self.name}-{self._hash({**self.hash_params(), 'detector': i})}" for i in auto_identities()}

    def hash_params(self) -> dict[str, Any]:
        """The parameters that make the feature id: all but :attr:`late_defaults` at their old value, a face
        ``detector`` ``auto`` as what cuts the crops here (:func:`~avaffect.features.faces.detectors.
        detector_identity`)."""
        late = self.late_defaults
        out = {k: v for k, v in self.params.items() if not (k in late and v == late[k])}
        if "detector" in out:
            out["detector"] = detector_identity(out["detector"])
        return out

    @property
    def id(self) -> str:
        """Feature-store folder name: ``<name>-<hash of params and version>``."""
        return f"{self.name}-{self.config_hash}"

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature size d."""

    @abstractmethod
    def extract(self, rec: Recording) -> np.ndarray:
        """``[len(rec.times), dim]`` float32 features aligned to ``rec.times``."""

    def iter_steps(self, rec: Recording) -> Iterator[tuple[int, int, np.ndarray]]:
        """``extract(rec)`` in consecutive blocks ``(lo, hi, features [hi - lo, dim])`` covering the timeline in
        order, for a caller that streams a long recording (``predict``). The values are :meth:`extract`'s; an
        extractor that can compute them with memory independent of the recording's length overrides this (the
        default is one block: the whole of :meth:`extract`). Errors about the recording (no audio stream) are
        raised at the call, before the first block."""
        feats = self.extract(rec)
        return iter([(0, len(feats), feats)])

    def face_pipeline(self) -> FacePipeline | None:
        """The face pipeline this extractor's crops come from: its parameters that are face-pipeline settings
        (declared in its ``Params`` with :func:`~avaffect.features.faces.pipeline.face_field`), over the pipeline's
        defaults; ``None`` when it has no ``crop_size`` (it does not describe faces)."""
        settings = {k: v for k, v in self.params.items() if k in FacePipeline.model_fields}
        return face_pipeline(**settings) if "crop_size" in settings else None

    def crop_request(self, rec: Recording) -> FacePipeline | None:
        """The face pipeline to cut ``rec``'s crops from its video with, when this extractor describes face crops
        of that video (then :meth:`features_from_crops` gives its features from any crops of that size, and a
        video can stream through it); ``None`` otherwise (audio extractors, a recording read from its crops
        folder by the face-source rule)."""
        pipeline = self.face_pipeline()
        source = self.params.get("source", "auto")
        if pipeline is None or resolve_face_source(rec, source, pipeline.detector) != "video":
            return None
        return pipeline

    def features_from_crops(self, crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[n, dim]`` float32 features of uint8 RGB crops ``[n, S, S, 3]`` with face mask ``[n]``, equal to what
        :meth:`extract` gives those steps; only for extractors whose :meth:`crop_request` is not ``None``."""
        raise NotImplementedError(f"extractor {self.name} does not describe single face crops")

    def crop_context(self) -> tuple[int, int]:
        """``(before, after)``: how many steps of crops ahead of and past a step its features need (a clip
        extractor's clip); ``(0, 0)``, the default, for features of a step's own crop."""
        return 0, 0

    def features_in_context(self, crops: np.ndarray, mask: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """``[hi - lo, dim]`` features of rows ``lo:hi`` of a run of consecutive steps' crops ``[n, S, S, 3]`` / mask
        ``[n]`` that holds :meth:`crop_context` steps around them (fewer only where the recording starts or ends):
        what :meth:`extract` gives those steps. The streaming path's call (:mod:`avaffect.features.face_stream`)."""
        return self.features_from_crops(crops[lo:hi], mask[lo:hi])

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "modality": self.modality,
            "version": self.version,
            "config_hash": self.config_hash,
            "params": self.params,
            "dim": self.dim,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in self._transient:
            state.pop(key, None)
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, params={self.params})"

def face_mask_from_features(rec_face_mask: np.ndarray, video: np.ndarray) -> np.ndarray:
    """The missing-face rule: a visual extractor writes an all-zero vector where it found no face, so a step is a
    face step where the recording allows one and its visual vector is not all zero:
    ``rec_face_mask & any(video != 0)`` per step."""
    return np.asarray(rec_face_mask, dtype=bool) & np.asarray(video).any(axis=1)  # nonzero (NaN too): no temporary


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make ``cls`` available as ``get_extractor(cls.name)``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.modality not in ("audio", "video"):
        raise ValueError(f"{cls.__qualname__}.modality must be 'audio' or 'video', got {cls.modality!r}")
    if cls.name in EXTRACTORS:
        old = EXTRACTORS.get(cls.name)
        if (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"extractor name {cls.name!r} is taken by {old.__module__}.{old.__qualname__}")
    EXTRACTORS.add(cls.name, cls, replace_same=lambda old, new: old.__qualname__ == new.__qualname__)
    return cls


def get_extractor(name: str, config: Any = None, **params: Any) -> Extractor:
    """Build the registered extractor ``name`` with the given parameters."""
    return EXTRACTORS.get(name)(config, **params)


def build_extractor(spec: ExtractorSpec) -> Extractor:
    return get_extractor(spec.name, **spec.params)


def needs_weights(name: str) -> bool:
    """Whether extractor ``name`` loads a weight file (a learned backbone)."""
    return hasattr(EXTRACTORS.get(name), "weights_path")


def list_extractors(modality: str | None = None) -> list[str]:
    """Sorted names of the registered extractors (optionally of one modality)."""
    return EXTRACTORS.names(None if modality is None else lambda c: c.modality == modality)


def audio_source(rec: Recording) -> Path:
    """The file a recording's audio is decoded from: its audio file, else its video."""
    source = rec.audio_path or rec.video_path
    if source is None:
        raise DataError(
            None,
            f"recording {rec.name} has neither an audio nor a video file",
            "set the recording's audio or video path (dataset manifest) or use a video-only model",
        )
    return Path(source)
