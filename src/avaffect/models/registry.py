"""Model registry: presets by name, each with a typed config (as timm/torchvision register models)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from avaffect.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type[BaseModel]
    build: Callable[[int, int, Any], nn.Module]  # (d_audio, d_video, config) -> module
    summary: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_cls: type[BaseModel], summary: str = ""):
    """Decorator registering ``build(d_audio, d_video, cfg) -> nn.Module`` under ``name``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, config_cls, fn, summary or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return wrap


def list_models() -> list[str]:
    _ensure_presets()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _ensure_presets()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def model_config(name: str, params: dict | None = None) -> BaseModel:
    """Validate ``params`` against the preset's typed config (unknown keys are errors)."""
    entry = get_entry(name)
    try:
        return entry.config_cls(**(params or {}))
    except ValidationError as e:
        raise ConfigError(f"invalid parameters for model {name!r}:\n{e}") from None


def create_model(name: str, d_audio: int, d_video: int, params: dict | BaseModel | None = None) -> nn.Module:
    """Build preset ``name`` for input sizes ``d_audio``, ``d_video``."""
    entry = get_entry(name)
    cfg = params if isinstance(params, BaseModel) else model_config(name, params)
    return entry.build(d_audio, d_video, cfg)


def _ensure_presets() -> None:
    from avaffect.models import presets  # noqa: F401  (registers the presets on import)
