"""The run configs shipped inside the package (``avaffect/configs/papers/<paper>/<row>.yaml``): their names, their
files, and their ``paper:`` blocks read without validation — light enough for ``avaffect config list`` to start
without torch (validating a config builds its model's typed parameters, which imports the model code)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from avaffect.errors import ConfigError

__all__ = ["PAPER_CONFIG_DIR", "paper_config_names", "resolve_config_path", "paper_block"]

PAPER_CONFIG_DIR = ("configs", "papers")  # inside the package: avaffect/configs/papers/<paper>/<row>.yaml


def paper_config_names() -> list[str]:
    """The paper configs shipped with the package, as ``<paper>/<row>`` names (``avaffect config list``)."""
    root = resources.files("avaffect").joinpath(*PAPER_CONFIG_DIR)
    if not root.is_dir():
        return []
    return sorted(f"{d.name}/{f.name[:-5]}" for d in root.iterdir() if d.is_dir()
                  for f in d.iterdir() if f.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file: the path itself when it exists, else a shipped paper config named ``<paper>/<row>``
    (``.yaml`` optional, a leading ``configs/`` ignored)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.as_posix().removesuffix(".yaml").removeprefix("configs/")
    shipped = resources.files("avaffect").joinpath(*PAPER_CONFIG_DIR, f"{name}.yaml")
    if shipped.is_file():
        return Path(str(shipped))
    raise ConfigError(f"{path}: config file not found (nor a shipped paper config of that name; "
                      "`avaffect config list` shows them)")



def paper_block(name: str) -> dict[str, Any]:
    """The raw ``paper:`` mapping of a shipped config (empty when it has none or the YAML is unreadable: the
    config's own validation reports that)."""
    try:
        raw = yaml.safe_load(resolve_config_path(name).read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return {}
    paper = raw.get("paper") if isinstance(raw, dict) else None
    return paper if isinstance(paper, dict) else {}
