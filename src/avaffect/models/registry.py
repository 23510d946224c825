"""Model registry: presets by name, each with a typed config (as timm registers models).

The registry is a leaf: the preset modules import it and register themselves, and the package
``avaffect.models`` imports every preset module, so ``import avaffect.models`` (or any of its submodules)
fills it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from avaffect.errors import ConfigError
from avaffect.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type[BaseModel]
    build: Callable[[int, int, Any], nn.Module]  # (d_audio, d_video, config) -> module
    summary: str


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, config_cls: type[BaseModel], summary: str = ""):
    """Decorator registering ``build(d_audio, d_video, cfg) -> nn.Module`` under ``name``."""

    def wrap(fn):
        MODELS.add(name, ModelEntry(name, config_cls, fn, summary or (fn.__doc__ or "").strip().split("\n")[0]))
        return fn

    return wrap


def list_models() -> list[str]:
    return MODELS.names()


def get_entry(name: str) -> ModelEntry:
    return MODELS.get(name)


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
