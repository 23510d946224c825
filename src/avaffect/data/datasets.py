"""The dataset table: each dataset name with its reader. Loading, ``avaffect prepare`` and the config schema
(``data.dataset``) all read this one table; a new dataset is one reader module plus one row here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avaffect.data.affwild2 import load_affwild2
from avaffect.data.layout import SPLITS
from avaffect.data.manifest import load_manifest
from avaffect.data.recola import load_recola
from avaffect.data.recording import Recording
from avaffect.data.timeline_index import TimelineIndex
from avaffect.errors import ConfigError, DataError

__all__ = ["DATASETS", "DATASET_NAMES", "DatasetReader", "get_dataset", "load_dataset"]

OnError = Callable[[DataError], None] | None


@dataclass(frozen=True)
class DatasetReader:
    """One dataset kind: ``read(root, splits, length_tolerance, check_media, on_error, timelines)`` → recordings.

    ``timelines``: a feature store's timeline index (:mod:`avaffect.data.timeline_index`), where a reader takes
    the timeline of a recording whose media are absent.

    ``affwild2_layout``: the Aff-Wild2 folder layout (``_left``/``_right`` share their base video's audio,
    ``cropped_aligned`` crops expected); ``prepare`` checks those recordings' audio streams itself."""

    name: str
    read: Callable[[Path, tuple[str, ...], int, bool, OnError, TimelineIndex | None], list[Recording]]
    summary: str
    affwild2_layout: bool = False


DATASETS: dict[str, DatasetReader] = {r.name: r for r in (
    DatasetReader("affwild2", lambda root, splits, tol, media, on_error, timelines: load_affwild2(
        root, splits=splits, length_tolerance=tol, check_media=media, on_error=on_error, timelines=timelines),
        "Aff-Wild2 / ABAW VA layout (annotations/VA_Estimation_Challenge, cropped_aligned, videos)", True),
    DatasetReader("synthetic", lambda root, splits, tol, media, on_error, timelines: load_affwild2(
        root, splits=splits, length_tolerance=tol, check_media=media, on_error=on_error, timelines=timelines),
        "the built-in synthetic set (`avaffect synth`), in the Aff-Wild2 layout", True),
    DatasetReader("recola", lambda root, splits, tol, media, on_error, timelines: load_recola(
        root, splits=splits, check_media=media, on_error=on_error, timelines=timelines),
        "RECOLA / AVEC 2016 (dev = validation; labels on their own 25 Hz timeline)"),
    DatasetReader("manifest", lambda root, splits, tol, media, on_error, timelines: load_manifest(
        root, splits=splits, length_tolerance=tol, check_media=media, on_error=on_error, timelines=timelines),
        "any dataset described by a manifest CSV (root: the CSV or a folder holding manifest.csv)"),
)}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def get_dataset(name: str) -> DatasetReader:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; available: {', '.join(DATASET_NAMES)}") from None


def load_dataset(kind: str, root: str | Path | None, length_tolerance: int = 0, splits: tuple[str, ...] = SPLITS,
                 check_media: bool = True, on_error: OnError = None,
                 timelines: TimelineIndex | None = None) -> list[Recording]:
    """Recordings of dataset ``kind`` under ``root`` (see :data:`DATASETS`); ``timelines``: where recordings whose
    media are absent take their timeline from (a feature store's index)."""
    reader = get_dataset(kind)
    if root is None:
        raise ConfigError("no dataset root given (data.root)")
    return reader.read(Path(root), tuple(splits), length_tolerance, check_media, on_error, timelines)
