"""Dataset readers by name."""

from __future__ import annotations

from pathlib import Path

from avaffect.data.affwild2 import load_affwild2
from avaffect.data.recording import Recording
from avaffect.errors import ConfigError

DATASETS = ("affwild2", "synthetic")


def load_dataset(kind: str, root: str | Path | None, length_tolerance: int = 0,
                 splits: tuple[str, ...] = ("train", "validation", "test")) -> list[Recording]:
    """Recordings of dataset ``kind`` under ``root``. The synthetic set is in the Aff-Wild2 layout and
    is read by the same code as the real dataset."""
    if root is None:
        raise ConfigError("no dataset root given (data.root)")
    if kind in ("affwild2", "synthetic"):
        return load_affwild2(root, splits=splits, length_tolerance=length_tolerance)
    raise ConfigError(f"unknown dataset {kind!r}; available: {', '.join(DATASETS)}")
