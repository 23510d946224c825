"""Model registry: presets by name, each with a typed config (as timm registers models).

The registry is a leaf: the preset modules import it and register themselves, and the package
``avaffect.models`` imports every preset module, so ``import avaffect.models`` (or any of its submodules)
fills it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
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
        unknown = [str(x["loc"][-1]) for x in e.errors() if x.get("type") == "extra_forbidden"]
        hint = (f"\nunknown parameter(s) {', '.join(unknown)}; the parameters of {name!r} are: "
                f"{', '.join(entry.config_cls.model_fields)}") if unknown else ""
        raise ConfigError(f"invalid parameters for model {name!r}:\n{e}{hint}") from None


def create_model(name: str, d_audio: int, d_video: int, params: dict | BaseModel | None = None) -> nn.Module:
    """Build preset ``name`` for input sizes ``d_audio``, ``d_video``."""
    entry = get_entry(name)
    cfg = params if isinstance(params, BaseModel) else model_config(name, params)
    return entry.build(d_audio, d_video, cfg)


def yaml_keys(name: str) -> list[str]:
    """The fields a preset's YAML lists: all of its config's, less those it declares unused (``yaml_exclude``)."""
    cls = get_entry(name).config_cls
    return [f for f in cls.model_fields if f not in getattr(cls, "yaml_exclude", ())]


def preset_yaml(name: str) -> str:
    """The preset's defaults as a commented YAML (what ``src/avaffect/configs/models/<name>.yaml`` holds; the
    files are generated from the typed configs by ``avaffect models --write-yaml DIR``, never edited by hand).

    Comments: the preset's summary, the config class's ``yaml_note`` (if any) and each field's description."""
    entry = get_entry(name)
    cls = entry.config_cls
    lines = [f"# Default parameters of the `{name}` model preset: {entry.summary}",
             f"# Keys are the fields of {cls.__name__} ({cls.__module__}); use them as model.params."]
    lines += [f"# {line}" for line in getattr(cls, "yaml_note", "").splitlines()]
    defaults = cls()
    for field_name in yaml_keys(name):
        field = cls.model_fields[field_name]
        value = yaml.safe_dump(getattr(defaults, field_name), default_flow_style=True, allow_unicode=True)
        line = f"{field_name}: {value.strip().removesuffix('...').strip()}"
        lines.append(f"{line}  # {field.description}" if field.description else line)
    return "\n".join(lines) + "\n"
