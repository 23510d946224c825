"""Recordings' timelines kept beside their features, so that training and evaluation run from a feature store and
the annotation files alone: a GPU node needs neither the videos nor the face crops the features came from.

A reader builds a recording's timeline from its media (the video's frame timestamps, the crops folder's face mask);
feature extraction records that timeline here (:class:`~avaffect.features.store.FeatureStore` writes it when it
saves features, and ``avaffect extract`` adds it for features extracted before the index existed). Where a
recording's media are absent, the Aff-Wild2 reader reads the timeline from here instead
(:func:`stored_timeline_or_error`).

Layout: ``<folder>/<recording>.npz`` (the recording name percent-encoded, as every file named after a recording),
written atomically, read with ``allow_pickle=False``::

    times      [T] float64   seconds of each step (the video's frame timestamps)
    face_mask  [T] bool      whether the step may hold a face (the crops folder's mask; all True for a video)
    meta       [n] uint8     UTF-8 JSON: name, split, fps, num_steps, source (the media signature the features were
                             computed from), video / crops (which media the recording had), annotation (the
                             label file's name and sha256 when the timeline was recorded), written (UTC)
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from avaffect.data.recording import Recording, StoredMedia
from avaffect.errors import DataError
from avaffect.files import atomic_write_bytes, safe_name, sha256_file

__all__ = ["StoredTimeline", "TimelineIndex", "stored_timeline_or_error"]

FORMAT = 1


@dataclass(frozen=True)
class StoredTimeline:
    """One recording's timeline as the index holds it."""

    name: str
    split: str
    times: np.ndarray
    face_mask: np.ndarray
    fps: float
    source: dict[str, Any]
    video: bool
    crops: bool
    annotation: dict[str, Any] | None
    path: Path

    @property
    def num_steps(self) -> int:
        return len(self.times)

    @property
    def media(self) -> StoredMedia:
        return StoredMedia(self.source, self.video, self.crops)

    def require_times(self, times: np.ndarray, label_path: Path | None, labels: str) -> None:
        """Time-stamped labels (``labels``: what they are, for the message) must be the stored steps: else the
        label file changed since the features were extracted (a :class:`DataError` naming both files)."""
        if len(times) != self.num_steps or not np.allclose(times, self.times, atol=1e-6):
            raise DataError(label_path, f"its {len(times)} label times are not the {self.num_steps} steps of the "
                            f"timeline stored with {self.name!r}'s features ({self.path})",
                            f"the {labels} changed since the features were extracted: extract again where the "
                            "media are")


class TimelineIndex:
    """A folder of :class:`StoredTimeline` files, one per recording."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{safe_name(name)}.npz"

    def save(self, rec: Recording, source: dict[str, Any]) -> Path:
        """Record ``rec``'s timeline (computed from the media described by ``source``); a no-op when the same
        timeline is recorded already (every extractor of a recording saves it)."""
        path = self.path(rec.name)
        annotation = None
        if rec.annotation_path is not None and Path(rec.annotation_path).is_file():
            annotation = {"file": Path(rec.annotation_path).name, "sha256": sha256_file(rec.annotation_path)}
        meta = {"format": FORMAT, "name": rec.name, "split": rec.split, "fps": float(rec.fps),
                "num_steps": rec.num_steps, "source": source, "video": rec.has_video, "crops": rec.has_crops,
                "annotation": annotation}
        try:
            old = self._read(path) if path.is_file() else None
        except DataError:  # a damaged entry is simply written again
            old = None
        if (old is not None and old.source == source and old.split == rec.split and old.num_steps == rec.num_steps
                and np.array_equal(old.times, rec.times) and np.array_equal(old.face_mask, rec.face_mask)
                and old.annotation == annotation):
            return path
        meta["written"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        buf = io.BytesIO()
        np.savez(buf, times=np.asarray(rec.times, dtype=np.float64), face_mask=np.asarray(rec.face_mask, dtype=bool),
                 meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8))
        return atomic_write_bytes(path, buf.getvalue())

    def names(self, split: str | None = None) -> list[str]:
        """The recordings with a stored timeline (of ``split``: the split they had when it was recorded), sorted."""
        if not self.folder.is_dir():
            return []
        names = sorted(unquote(p.name[:-len(".npz")]) for p in self.folder.glob("*.npz"))
        return names if split is None else [n for n in names if self._read(self.path(n)).split == split]

    def get(self, name: str) -> StoredTimeline | None:
        """The stored timeline of ``name``, None when there is none; :class:`DataError` for a damaged file."""
        path = self.path(name)
        return self._read(path) if path.is_file() else None

    def _read(self, path: Path) -> StoredTimeline:
        fix = "delete it and run `avaffect extract` where the recording's media are (it records the timeline again)"
        try:
            with np.load(path, allow_pickle=False) as z:
                times, face_mask = np.asarray(z["times"], dtype=np.float64), np.asarray(z["face_mask"], dtype=bool)
                meta = json.loads(bytes(z["meta"]).decode())
            name, fps, source = meta["name"], float(meta["fps"]), dict(meta["source"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, zipfile.BadZipFile) as e:
            raise DataError(path, f"cannot read this stored timeline ({type(e).__name__}: {e})", fix) from None
        if times.ndim != 1 or face_mask.shape != times.shape or meta.get("num_steps") != len(times):
            raise DataError(path, f"inconsistent stored timeline ({len(times)} times, {face_mask.size} face-mask "
                            f"steps, {meta.get('num_steps')} recorded)", fix)
        return StoredTimeline(name, str(meta.get("split", "")), times, face_mask, fps, source,
                              bool(meta.get("video")), bool(meta.get("crops")), meta.get("annotation"), path)


def stored_timeline_or_error(index: TimelineIndex | None, name: str, where: Path | None, missing: str,
                             fix: str) -> StoredTimeline:
    """The stored timeline of ``name``; a :class:`DataError` at ``where`` saying ``missing`` (the media that are
    absent) and how to fix it when there is no index or no entry."""
    stored = index.get(name) if index is not None else None
    if stored is None:
        where_index = (f"and the feature store's timeline index ({index.folder}) has no entry for it"
                       if index is not None else "and no feature store was given to read its timeline from")
        raise DataError(where, f"recording {name!r}: {missing} {where_index}", fix)
    return stored
