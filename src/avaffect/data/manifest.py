"""Reader of a generic dataset described by a manifest CSV (docs/design.md §6).

The manifest has one row per recording::

    recording,video,audio,labels,split,subject
    clip01,videos/clip01.mp4,,labels/clip01.csv,train,spk1
    clip02,videos/clip02.mp4,audio/clip02.wav,labels/clip02.csv,validation,spk2
    clip03,videos/clip03.mp4,,,test,

Required columns: ``recording``, ``video``, ``split`` (``train``, ``validation`` — also ``val``/``dev`` —
or ``test``). Optional columns: ``audio`` (empty = the video's own audio), ``labels`` (empty = not
annotated), ``subject`` (empty = the recording), ``crops`` (a folder of ``00001.jpg``-style face crops,
one per timeline step, 1-based). Paths are relative to the manifest's folder (absolute paths work too).
A recording without a video needs ``audio`` and a ``time,...`` label file.

A label file is one of:

- ``time,valence,arousal``: the timeline is those times (seconds, increasing);
- ``frame,valence,arousal`` or ``valence,arousal``: one row per video frame; the timeline is the
  video's frame times (``frame`` is 0-based, or 1-based when it starts at 1; missing frames are
  unannotated).

Empty cells and ``nan`` are unannotated steps; other non-numbers and values outside [-1, 1] are errors.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avaffect.data.layout import check_splits, crop_indices, normalise_split, split_rank
from avaffect.data.recording import TARGETS, Recording
from avaffect.data.timeline import (
    check_label_times,
    crops_face_mask,
    fit_frame_labels,
    nominal_fps,
    read_video_timeline,
)
from avaffect.data.timeline_index import TimelineIndex, stored_timeline_or_error
from avaffect.errors import DataError
from avaffect.media import probe

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("recording", "video", "split")
OPTIONAL_COLUMNS = ("audio", "labels", "subject", "crops")
DEFAULT_FPS = 25.0


def manifest_path(root: str | Path) -> Path:
    """The manifest CSV: ``root`` itself, or ``root/manifest.csv`` when ``root`` is a folder."""
    root = Path(root)
    return root / MANIFEST_NAME if root.is_dir() else root


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (lower-cased, stripped) and ``(line number, cells)`` rows of a CSV. Blank lines are skipped; a row
    of empty cells (``,``) is a row — in a label file, an unannotated step — never dropped."""
    if not path.is_file():
        raise DataError(path, "file not found", "check the path (manifest paths are relative to its folder)")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        rows: list[tuple[int, list[str]]] = []
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):  # a blank line, not a row of empty cells
                continue
            if header is None:
                header = [c.strip().lower() for c in cells]
                continue
            rows.append((reader.line_num, [c.strip() for c in cells]))
    if header is None:
        raise DataError(path, "the file is empty", "it needs a header line")
    return header, rows


def read_label_csv(path: str | Path) -> tuple[str, np.ndarray | None, np.ndarray]:
    """Read a per-recording label file.

    Returns ``(kind, index, labels [N, 2])``: kind ``"time"`` (index = times in seconds), ``"frame"``
    (index = 0-based frame numbers) or ``"rows"`` (index None, row i = frame i). Raises
    :class:`DataError` naming the file and line for a missing column, a non-number, a value outside
    [-1, 1], or times/frames that do not increase."""
    path = Path(path)
    header, rows = _read_csv(path)
    for target in TARGETS:
        if target not in header:
            raise DataError(path, f"no {target!r} column (header: {','.join(header)})",
                            "label files have the header time,valence,arousal or frame,valence,arousal "
                            "or valence,arousal")
    kind = "time" if "time" in header else "frame" if "frame" in header else "rows"
    cols = [header.index(c) for c in TARGETS]
    key_col = header.index(kind) if kind != "rows" else None
    labels = np.empty((len(rows), 2), dtype=np.float32)
    index = np.empty(len(rows), dtype=np.float64)
    for i, (line, cells) in enumerate(rows):
        if len(cells) != len(header):
            raise DataError(path, f"line {line}: {len(cells)} fields but the header has {len(header)}",
                            "fix the row")
        for k, c in enumerate(cols):
            cell = cells[c]
            try:
                value = math.nan if cell == "" else float(cell)
            except ValueError:
                raise DataError(path, f"line {line}: {header[c]} = {cell[:30]!r} is not a number",
                                "write a number in [-1, 1], or leave the cell empty / write NaN for an "
                                "unannotated step") from None
            if math.isinf(value) or (not math.isnan(value) and abs(value) > 1.0):
                raise DataError(path, f"line {line}: {header[c]} = {cell} outside [-1, 1]",
                                "valence and arousal must lie in [-1, 1] (empty or NaN = not annotated)")
            labels[i, k] = value
        if key_col is not None:
            cell = cells[key_col]
            try:
                index[i] = float(cell)
                if not math.isfinite(index[i]) or (kind == "frame" and index[i] != int(index[i])):
                    raise ValueError
            except ValueError:
                what = "a time in seconds" if kind == "time" else "an integer frame number"
                raise DataError(path, f"line {line}: {kind} = {cell[:30]!r} is not {what}",
                                "fix the row") from None
            if i and index[i] <= index[i - 1]:
                raise DataError(path, f"line {line}: {kind} {cell} does not increase",
                                f"rows must be sorted by {kind}, each {kind} once")
    if not len(rows):
        raise DataError(path, "the file has a header but no rows", "write one row per step")
    if kind == "time":
        if index[0] < 0:
            raise DataError(path, f"line {rows[0][0]}: negative time {index[0]}", "times are seconds from 0")
        return kind, index, labels
    if kind == "frame":
        start = int(index[0]) if index[0] in (0, 1) else 0
        if index[0] < 0:
            raise DataError(path, f"line {rows[0][0]}: negative frame {int(index[0])}", "frames count from 0")
        return kind, (index - start).astype(np.int64), labels
    return kind, None, labels


def load_manifest(root: str | Path, splits: tuple[str, ...] = ("train", "validation", "test"),
                  check_media: bool = True, length_tolerance: int = 0, default_fps: float = DEFAULT_FPS,
                  on_error: Callable[[DataError], None] | None = None,
                  timelines: TimelineIndex | None = None) -> list[Recording]:
    """The recordings listed in a manifest CSV (``root`` = the CSV or a folder holding ``manifest.csv``),
    in manifest order within each split (train, validation, test).

    With ``check_media`` the video's packets are read: frame-style labels must match its frame count
    within ``length_tolerance`` (small differences are padded with NaN / trimmed, and logged), time-style
    labels must not run past its end. Without it, frame-style timelines use ``default_fps``. With
    ``on_error``, a row's problem is passed to it and the row skipped (all problems are seen at once);
    a manifest-level problem (missing file or column) always raises.

    A row none of whose media (video, audio, crops) are here takes its timeline from ``timelines``, the feature
    store's timeline index (:mod:`avaffect.data.timeline_index`), when it holds the recording: training and
    evaluation then need the manifest, the label files and the store only.
    """
    check_splits(splits)
    path = manifest_path(root)
    header, rows = _read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(path, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(header: {','.join(header)})",
                        "the header is recording,video,audio,labels,split,subject (audio, labels, subject "
                        "optional)")
    extra = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if extra:
        log.warning("%s: ignoring unknown columns %s", path, ", ".join(extra))

    def report(err: DataError) -> None:
        if on_error is None:
            raise err
        on_error(err)

    base = path.parent
    seen: dict[str, int] = {}
    recordings: list[Recording] = []
    for line, cells in rows:
        if len(cells) != len(header):
            report(DataError(path, f"line {line}: {len(cells)} fields but the header has {len(header)}",
                             "fix the row"))
            continue
        row = dict(zip(header, cells))
        name = row["recording"]
        if not name:
            report(DataError(path, f"line {line}: empty recording name", "every row names its recording"))
            continue
        if name in seen:
            report(DataError(path, f"line {line}: recording {name!r} already listed on line {seen[name]}",
                             "recording names are unique and a recording belongs to one split only"))
            continue
        seen[name] = line
        split = normalise_split(row["split"])
        if split is None:
            report(DataError(path, f"line {line}: unknown split {row['split']!r} of {name!r}",
                             "use train, validation or test"))
            continue
        if split not in splits:
            continue
        try:
            recordings.append(_load_row(base, path, line, row, name, split, check_media, length_tolerance,
                                        default_fps, timelines))
        except DataError as err:
            report(err)
    return sorted(recordings, key=lambda r: split_rank(r.split))  # stable: manifest order within a split


def _resolve(base: Path, manifest: Path, line: int, cell: str, what: str, name: str) -> Path | None:
    if not cell:
        return None
    p = Path(cell).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise DataError(p, f"{what} of {name!r} not found (manifest line {line})",
                        f"paths are relative to the manifest's folder {base}; fix {manifest.name}")
    return p


def _media_absent(base: Path, row: dict[str, str]) -> bool:
    """Whether the row names media and none of them is here."""
    cells = [row.get(c, "") for c in ("video", "audio", "crops") if row.get(c, "")]
    return bool(cells) and not any((p if (p := Path(c).expanduser()).is_absolute() else base / p).exists()
                                   for c in cells)


def _stored_row(base: Path, manifest: Path, line: int, row: dict[str, str], name: str, split: str,
                length_tolerance: int, timelines: TimelineIndex | None) -> Recording:
    """A row whose media are elsewhere: its timeline from the store, its labels fitted to it."""
    stored = stored_timeline_or_error(
        timelines, name, manifest, f"(manifest line {line}) has none of its media here",
        f"paths are relative to the manifest's folder {base}; fix {manifest.name}, or, to train from features alone, "
        "run `avaffect extract` where the media are (it records each recording's timeline in the feature store)")
    labels_path = _resolve(base, manifest, line, row.get("labels", ""), "label file", name)
    kind, index, values = read_label_csv(labels_path) if labels_path is not None else ("none", None, None)
    if kind == "time":
        stored.require_times(index, labels_path, "label file")
        labels = values
    elif values is not None:
        labels = fit_frame_labels(values, stored.num_steps, length_tolerance, labels_path, stored.path,
                                  frames=index if kind == "frame" else None, noun="label frames",
                                  short_is_error=kind == "rows")
    else:
        labels = np.full((stored.num_steps, 2), np.nan, dtype=np.float32)
    return Recording(name=name, times=stored.times, labels=labels, face_mask=stored.face_mask, split=split,
                     annotation_path=labels_path, subject=row.get("subject") or name, fps=stored.fps,
                     stored=stored.media)


def _load_row(base: Path, manifest: Path, line: int, row: dict[str, str], name: str, split: str,
              check_media: bool, length_tolerance: int, default_fps: float,
              timelines: TimelineIndex | None = None) -> Recording:
    if timelines is not None and _media_absent(base, row):
        return _stored_row(base, manifest, line, row, name, split, length_tolerance, timelines)
    video = _resolve(base, manifest, line, row["video"], "video", name)
    audio = _resolve(base, manifest, line, row.get("audio", ""), "audio", name)
    labels_path = _resolve(base, manifest, line, row.get("labels", ""), "label file", name)
    crops_dir = _resolve(base, manifest, line, row.get("crops", ""), "crops folder", name)
    if video is None and audio is None:
        raise DataError(manifest, f"line {line}: recording {name!r} has neither video nor audio",
                        "fill the video (or audio) column")
    kind, index, values = read_label_csv(labels_path) if labels_path is not None else ("none", None, None)
    if video is None and kind != "time":
        raise DataError(labels_path or manifest, f"audio-only recording {name!r} needs a time,valence,arousal "
                        "label file to define its timeline", "add a video or write the labels with times")

    fps = default_fps
    timeline = None
    duration = None
    if check_media:
        if video is not None:
            timeline = read_video_timeline(video, default_fps)
            if not timeline.has_video:
                raise DataError(video, "has no video stream", "fill the audio column instead of video")
            if audio is None and not timeline.has_audio:
                raise DataError(video, "has no audio stream and the manifest gives no audio file",
                                "fill the audio column of this recording")
            fps, duration = timeline.fps, timeline.duration
        if audio is not None:
            ainfo = probe(audio)
            if not ainfo.has_audio:
                raise DataError(audio, "has no audio stream", "give an audio file or leave the cell empty")
            duration = duration or ainfo.duration

    if kind == "time":
        times, labels = index, values
        check_label_times(times, duration, labels_path, video or audio,
                          "the label file and the media do not belong together")
        fps = nominal_fps(times, fps)
    else:
        if timeline is not None:
            num_steps = timeline.num_frames
        elif values is not None:
            num_steps = int(index[-1]) + 1 if kind == "frame" else len(values)
        elif crops_dir is not None and len(crop_indices(crops_dir)):
            num_steps = int(crop_indices(crops_dir)[-1]) + 1
        else:
            raise DataError(video, f"cannot tell the frames of the unlabelled recording {name!r} without "
                            "reading its video", "check the media (prepare reads it)")
        if values is not None:
            labels = fit_frame_labels(values, num_steps, length_tolerance, labels_path, video,
                                      frames=index if kind == "frame" else None, noun="label frames",
                                      short_is_error=kind == "rows")
        else:
            labels = np.full((num_steps, 2), np.nan, dtype=np.float32)
        times = timeline.times if timeline is not None else np.arange(num_steps) / fps
    if not np.isfinite(labels).all(axis=1).any() and values is not None:
        log.warning("%s: no step of %r is annotated", labels_path, name)
    face_mask = crops_face_mask(crops_dir, len(times), length_tolerance,
                                "the crops folder belongs to another recording", where=repr(name))
    return Recording(name=name, times=times, labels=labels, face_mask=face_mask, split=split,
                     video_path=video, audio_path=audio or video, crops_dir=crops_dir,
                     annotation_path=labels_path, subject=row.get("subject") or name, fps=fps)
