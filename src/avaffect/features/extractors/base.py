"""The extractor base class, its registry and the extractor spec a config names.

An extractor turns one :class:`~avaffect.data.recording.Recording` into ``[T, dim]`` float32
features aligned to ``rec.times`` (docs/design.md §2). Its identity in the feature store is
``<name>-<hash>``, the hash covering its parameters (defaults filled in) and its version, so a
different configuration or a changed algorithm never reuses stale features.

Write a new one by subclassing :class:`Extractor`, setting ``name``, ``modality``, ``version`` and
``defaults`` and implementing ``dim`` and ``extract``, decorating it with :func:`register_extractor`,
and importing its module from :mod:`avaffect.features.extractors` (or, for a backbone, from
:mod:`avaffect.features.backbones`). Instances are pickled to worker processes: keep heavy or
unpicklable state (models, OpenCV objects) in attributes listed in ``_transient`` and build it lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError, DataError
from avaffect.registry import Registry

__all__ = ["EXTRACTORS", "Extractor", "ExtractorSpec", "audio_source", "build_extractor", "get_extractor",
           "list_extractors", "needs_weights", "register_extractor"]

log = logging.getLogger(__name__)

EXTRACTORS: Registry[type[Extractor]] = Registry("feature extractor")


class ExtractorSpec(BaseModel):
    """An extractor as a config names it: ``name`` and ``params`` (the rest are the extractor's defaults)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

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

    ``Extractor(**params)`` or ``Extractor(config)`` with ``config`` a dict or a pydantic model:
    the parameters override ``defaults``; unknown names raise :class:`ConfigError`.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""  # "audio" or "video"
    version: ClassVar[str] = "1"
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
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"extractor {self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        self.params: dict[str, Any] = _jsonable({**self.defaults, **given})
        self.validate()

    def validate(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Check ``self.params``; raise :class:`ConfigError` on a bad value (default: accept all)."""

    @property
    def config_hash(self) -> str:
        blob = json.dumps({"params": self.hash_params(), "version": self.version}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def hash_params(self) -> dict[str, Any]:
        """The parameters that make the feature id: all but :attr:`late_defaults` at their old value."""
        late = self.late_defaults
        return {k: v for k, v in self.params.items() if not (k in late and v == late[k])}

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

    def crop_request(self, rec: Recording) -> tuple[int, str, dict[str, Any]] | None:
        """``(crop size, detector, face-pipeline keywords)`` when this extractor describes face crops that the face
        pipeline would cut from ``rec``'s video (then :meth:`features_from_crops` gives its features from any crops
        of that size, and a video can stream through it); ``None`` otherwise (the default: audio extractors, a
        recording read from its crops folder)."""
        return None

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
        what :meth:`extract` gives those steps. The streaming path's call (:mod:`avaffect.features.stream`)."""
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
