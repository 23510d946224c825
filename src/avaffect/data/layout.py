"""Dataset layout facts, each stated once: file extensions, split names, the face-crops folder and its file
names, and the Aff-Wild2 / ABAW folder layout (which the synthetic writer reproduces).

Every reader, writer and check imports these; nothing else spells them out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from avaffect.errors import ConfigError

__all__ = [
    "AFFWILD2_ANNOTATION_DIR",
    "AFFWILD2_MISSING_VALUE",
    "AFFWILD2_SPLIT_DIRS",
    "AFFWILD2_VIDEO_DIRS",
    "AUDIO_EXTS",
    "CROPS_DIR",
    "CROP_EXT",
    "SPLITS",
    "SPLIT_ALIASES",
    "VIDEO_EXTS",
    "check_splits",
    "crop_indices",
    "crop_name",
    "crop_path",
    "normalise_split",
    "split_rank",
]

# ------------------------------------------------------------------------------------------------ media

VIDEO_EXTS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".flv", ".webm")
AUDIO_EXTS: tuple[str, ...] = (".wav", ".flac", ".mp3", ".m4a", ".ogg")

# ------------------------------------------------------------------------------------------------ splits

SPLITS: tuple[str, str, str] = ("train", "validation", "test")
"""The canonical split names, in order. Readers map their dataset's own names onto these."""

SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "validation": "validation", "val": "validation", "valid": "validation", "dev": "validation",
    "devel": "validation", "development": "validation",
    "test": "test", "testing": "test",
}


def normalise_split(name: str) -> str | None:
    """The canonical split of ``name`` (``"dev"`` → ``"validation"``), or None for an unknown name."""
    return SPLIT_ALIASES.get(name.strip().lower())


def check_splits(splits: Iterable[str]) -> tuple[str, ...]:
    """``splits`` if each is a canonical split name; :class:`ConfigError` otherwise."""
    splits = tuple(splits)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ConfigError(f"unknown split(s) {', '.join(unknown)}; use {', '.join(SPLITS)}")
    return splits


def split_rank(split: str) -> int:
    """Sort key: train, validation, test, then anything else."""
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


# ------------------------------------------------------------------------------------------------ face crops

CROPS_DIR = "cropped_aligned"
"""The folder of per-recording face crops under a dataset root: ``<root>/cropped_aligned/<recording>/``."""

CROP_EXT = ".jpg"


def crop_name(index: int) -> str:
    """File name of the crop of timeline step ``index`` (0-based): ``00001.jpg`` for step 0 (5 digits, 1-based)."""
    return f"{index + 1:05d}{CROP_EXT}"


def crop_path(crops_dir: str | Path, index: int) -> Path:
    return Path(crops_dir) / crop_name(index)


def crop_indices(crops_dir: str | Path | None) -> np.ndarray:
    """Sorted 0-based step indices of the crops present in ``crops_dir`` (empty when it is missing)."""
    if crops_dir is None or not Path(crops_dir).is_dir():
        return np.zeros(0, dtype=np.int64)
    n = len(CROP_EXT)
    idx = [int(f[:-n]) - 1 for f in os.listdir(crops_dir) if f.endswith(CROP_EXT) and f[:-n].isdigit()]
    return np.asarray(sorted(idx), dtype=np.int64)


# ------------------------------------------------------------------------------------------------ Aff-Wild2

AFFWILD2_ANNOTATION_DIR = Path("annotations") / "VA_Estimation_Challenge"
AFFWILD2_SPLIT_DIRS: dict[str, str] = {"train": "Train_Set", "validation": "Validation_Set"}
AFFWILD2_VIDEO_DIRS: tuple[str, ...] = ("videos", "raw_videos", "batch1", "batch2", "batch3", "new_vids", ".")
AFFWILD2_MISSING_VALUE = -5.0
