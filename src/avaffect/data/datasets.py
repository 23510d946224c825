"""Dataset readers by name."""

from __future__ import annotations

from pathlib import Path

from avaffect.data.affwild2 import load_affwild2
from avaffect.data.recording import Recording
from avaffect.errors import ConfigError

DATASETS = ("affwild2", "synthetic", "recola", "manifest")


def load_dataset(kind: str, root: str | Path | None, length_tolerance: int = 0,
                 splits: tuple[str, ...] = ("train", "validation", "test")) -> list[Recording]:
    """Recordings of dataset ``kind`` under ``root``. The synthetic set is in the Aff-Wild2 layout and
    is read by the same code as the real dataset."""
    if root is None:
        raise ConfigError("no dataset root given (data.root)")
    if kind in ("affwild2", "synthetic"):
        return load_affwild2(root, splits=splits, length_tolerance=length_tolerance)
    if kind == "recola":  # RECOLA / AVEC 2016; dev is the validation split
        from avaffect.data.recola import load_recola

        return load_recola(root, splits=splits)
    if kind == "manifest":  # root: the manifest CSV, or a folder holding manifest.csv
        from avaffect.data.manifest import load_manifest

        return load_manifest(root, splits=splits, length_tolerance=length_tolerance)
    raise ConfigError(f"unknown dataset {kind!r}; available: {', '.join(DATASETS)}")
