"""Reader of the RECOLA / AVEC 2016 layout (docs/design.md §6) and a small ARFF reader for its gold standard.

Layout::

    ROOT/recordings_audio/{train,dev,test}_N.wav
    ROOT/recordings_video/{train,dev,test}_N.mp4
    ROOT/ratings_gold_standard/arousal/<split>_N.arff     attributes frameTime (s) and GoldStandard, 40 ms
    ROOT/ratings_gold_standard/valence/<split>_N.arff
    ROOT/cropped_aligned/<split>_N/00001.jpg ...           optional face crops, one per label step (1-based)

The timeline of a recording is its label timeline (25 Hz, the times are the files' ``frameTime``).
``dev`` is the validation split. The test labels are withheld by the organisers: a test recording
without gold-standard files has NaN labels, and its timeline is 25 Hz over its media's duration.
Each RECOLA recording is one subject, so the subject is the recording.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaffect.data.layout import AUDIO_EXTS, CROPS_DIR, VIDEO_EXTS, check_splits, normalise_split, split_rank
from avaffect.data.recording import TARGETS, Recording
from avaffect.data.timeline import check_label_times, crops_face_mask, nominal_fps
from avaffect.data.timeline_index import TimelineIndex, stored_timeline_or_error
from avaffect.errors import DataError
from avaffect.media import probe

log = logging.getLogger(__name__)

AUDIO_DIR = "recordings_audio"
VIDEO_DIR = "recordings_video"
GOLD_DIR = "ratings_gold_standard"
NAME_RE = re.compile(r"^(train|dev|test)_(\d+)$")
LABEL_RATE = 25.0  # Hz, one gold-standard value every 40 ms
TIME_ATTRIBUTE = "frametime"
VALUE_ATTRIBUTE = "goldstandard"


# --------------------------------------------------------------------------------------------
# ARFF


@dataclass
class Arff:
    """An ARFF file: its relation, attributes ``(name, type)`` in order, and one column per attribute
    (float64 arrays for numeric attributes with ``?`` → NaN, lists of str otherwise)."""

    path: Path
    relation: str
    attributes: list[tuple[str, str]]
    columns: dict[str, np.ndarray | list[str]]

    def column(self, name: str) -> np.ndarray | list[str]:
        """The column of attribute ``name`` (case-insensitive); DataError naming the file if absent."""
        for attr, _ in self.attributes:
            if attr.lower() == name.lower():
                return self.columns[attr]
        have = ", ".join(a for a, _ in self.attributes) or "none"
        raise DataError(self.path, f"no attribute {name!r} (attributes: {have})",
                        "expected an AVEC/RECOLA gold-standard file with frameTime and GoldStandard")


NUMERIC_TYPES = ("numeric", "real", "integer")


def _split_values(line: str, path: Path, lineno: int) -> list[str]:
    """Split a comma-separated ARFF line; values may be quoted with ' or " (backslash escapes)."""
    values: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] in "'\"":
            quote, i, buf = line[i], i + 1, []
            while i < n and line[i] != quote:
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(line[i])
                i += 1
            if i >= n:
                raise DataError(path, f"line {lineno}: unterminated quoted value", "fix the quotes in the file")
            i += 1
            values.append("".join(buf))
            while i < n and line[i] in " \t":
                i += 1
        else:
            j = line.find(",", i)
            j = n if j < 0 else j
            values.append(line[i:j].strip())
            i = j
        if i >= n:
            return values
        if line[i] != ",":
            raise DataError(path, f"line {lineno}: expected ',' after a quoted value", "fix the quotes in the file")
        i += 1


def _attribute(rest: str, path: Path, lineno: int) -> tuple[str, str]:
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        end = rest.find(rest[0], 1)
        if end < 0:
            raise DataError(path, f"line {lineno}: unterminated quoted attribute name", "fix the header")
        name, kind = rest[1:end], rest[end + 1:].strip()
    else:
        parts = rest.split(None, 1)
        name, kind = parts[0] if parts else "", parts[1].strip() if len(parts) > 1 else ""
    if not name or not kind:
        raise DataError(path, f"line {lineno}: cannot read '@attribute {rest[:40]}'",
                        "expected '@attribute <name> <type>'")
    return name, kind


def read_arff(path: str | Path) -> Arff:
    """Read a dense ARFF file (``@relation``, ``@attribute``, ``@data``; ``%`` comments; quoted names
    and values; ``?`` = missing). Raises :class:`DataError` naming the file and line on anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "ARFF file not found", "check the dataset root")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    relation = ""
    attributes: list[tuple[str, str]] = []
    rows: list[list[str]] = []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if not in_data:
            key, _, rest = line.partition(" ")
            if "\t" in key:
                key, _, rest2 = key.partition("\t")
                rest = rest2 + " " + rest
            key = key.lower()
            if key == "@relation":
                relation = rest.strip().strip("'\"")
            elif key == "@attribute":
                attributes.append(_attribute(rest, path, lineno))
            elif key == "@data":
                in_data = True
            else:
                raise DataError(path, f"line {lineno}: unexpected header line {line[:40]!r}",
                                "the header holds only @relation, @attribute and @data lines")
            continue
        if line.startswith("{"):
            raise DataError(path, f"line {lineno}: sparse ARFF rows are not supported", "write the file densely")
        values = _split_values(line, path, lineno)
        if len(values) != len(attributes):
            raise DataError(path, f"line {lineno}: {len(values)} values but {len(attributes)} attributes",
                            "fix or re-download the file")
        rows.append(values)
    if not attributes:
        raise DataError(path, "no @attribute line: not an ARFF file", "check the file")
    if not in_data:
        raise DataError(path, "no @data section", "check the file is complete")
    columns: dict[str, np.ndarray | list[str]] = {}
    for k, (name, kind) in enumerate(attributes):
        cells = [r[k] for r in rows]
        if kind.lower() in NUMERIC_TYPES:
            col = np.empty(len(cells), dtype=np.float64)
            for i, c in enumerate(cells):
                try:
                    col[i] = math.nan if c == "?" else float(c)
                except ValueError:
                    raise DataError(path, f"data row {i + 1}: {name} = {c[:30]!r} is not a number",
                                    "fix or re-download the file") from None
            columns[name] = col
        else:
            columns[name] = cells
    return Arff(path, relation, attributes, columns)


def read_gold_standard(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(times [T] float64 s, values [T] float32)`` of one AVEC gold-standard ARFF file.

    Times must be finite and increasing; values in [-1, 1] (``?`` = NaN = not annotated)."""
    arff = read_arff(path)
    times = np.asarray(arff.column(TIME_ATTRIBUTE), dtype=np.float64)
    values = np.asarray(arff.column(VALUE_ATTRIBUTE), dtype=np.float64)
    if len(times) == 0:
        raise DataError(arff.path, "the @data section is empty", "fix or re-download the file")
    if not np.all(np.isfinite(times)):
        bad = int(np.flatnonzero(~np.isfinite(times))[0])
        raise DataError(arff.path, f"data row {bad + 1}: frameTime is missing", "every row needs its time")
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        bad = int(np.flatnonzero(np.diff(times) <= 0)[0])
        raise DataError(arff.path, f"data row {bad + 2}: frameTime {times[bad + 1]} does not increase",
                        "rows must be in time order, one per 40 ms")
    out = np.isfinite(values) & (np.abs(values) > 1.0)
    if out.any():
        bad = int(np.flatnonzero(out)[0])
        raise DataError(arff.path, f"data row {bad + 1}: GoldStandard {values[bad]} outside [-1, 1]",
                        "the gold standard must lie in [-1, 1]")
    if np.isinf(values).any():
        bad = int(np.flatnonzero(np.isinf(values))[0])
        raise DataError(arff.path, f"data row {bad + 1}: infinite GoldStandard", "use ? for a missing value")
    return times, values.astype(np.float32)


def read_recola_labels(valence_path: str | Path, arousal_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(times [T], labels [T, 2] valence, arousal)`` from the two gold-standard files of a recording.

    Raises :class:`DataError` naming both files when their lengths or times disagree."""
    tv, v = read_gold_standard(valence_path)
    ta, a = read_gold_standard(arousal_path)
    if len(tv) != len(ta):
        raise DataError(valence_path, f"{len(tv)} rows but the arousal file {arousal_path} has {len(ta)}",
                        "valence and arousal must share one timeline; re-download the gold standard")
    if not np.allclose(tv, ta, atol=1e-4):
        bad = int(np.flatnonzero(~np.isclose(tv, ta, atol=1e-4))[0])
        raise DataError(valence_path, f"data row {bad + 1}: frameTime {tv[bad]} but the arousal file "
                        f"{arousal_path} has {ta[bad]}", "valence and arousal must share one timeline")
    return tv, np.stack([v, a], axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the dataset


def _files(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in exts}


def load_recola(root: str | Path, splits: tuple[str, ...] = ("train", "validation", "test"),
                check_media: bool = True, on_error: Callable[[DataError], None] | None = None,
                timelines: TimelineIndex | None = None) -> list[Recording]:
    """All recordings of a RECOLA / AVEC 2016 root, sorted by split (train, validation = dev, test) then
    number.

    With ``check_media`` each audio and video file is probed (headers only): it must decode, and the
    labels must not run past its end by more than a second. With ``on_error``, a recording's problem
    is passed to it and the recording skipped, so that every problem is seen at once.

    A recording with neither its audio nor its video here takes its timeline (and face mask) from ``timelines``,
    the feature store's timeline index (:mod:`avaffect.data.timeline_index`); test recordings are found there too.
    """
    root = Path(root)
    check_splits(splits)
    audio = _files(root / AUDIO_DIR, AUDIO_EXTS)
    video = _files(root / VIDEO_DIR, VIDEO_EXTS)
    gold = {dim: _files(root / GOLD_DIR / dim, (".arff",)) for dim in TARGETS}
    stored_tests = set(timelines.names("test")) if timelines is not None and "test" in splits else set()
    if not audio and not video and not gold["valence"] and not gold["arousal"] and not stored_tests:
        raise DataError(root, "no RECOLA recording found",
                        f"expected {AUDIO_DIR}/<split>_N.wav, {VIDEO_DIR}/<split>_N.mp4 and "
                        f"{GOLD_DIR}/{{arousal,valence}}/<split>_N.arff under the root")

    def report(err: DataError) -> None:
        if on_error is None:
            raise err
        on_error(err)

    names = set(audio) | set(video) | set(gold["valence"]) | set(gold["arousal"]) | stored_tests
    recordings: list[Recording] = []
    for name in names:
        match = NAME_RE.match(name)
        if match is None:
            path = audio.get(name) or video.get(name) or gold["valence"].get(name) or gold["arousal"].get(name)
            report(DataError(path, f"cannot tell the split of {name!r}",
                             "RECOLA files are named train_N, dev_N or test_N"))
            continue
        split = normalise_split(match.group(1))  # dev is the validation split
        if split not in splits:
            continue
        try:
            recordings.append(_load_one(root, name, split, audio.get(name), video.get(name),
                                        gold["valence"].get(name), gold["arousal"].get(name), check_media,
                                        timelines))
        except DataError as err:
            report(err)
    recordings.sort(key=lambda r: (split_rank(r.split), int(NAME_RE.match(r.name).group(2))))
    return recordings


def _load_one(root: Path, name: str, split: str, audio: Path | None, video: Path | None,
              valence: Path | None, arousal: Path | None, check_media: bool,
              timelines: TimelineIndex | None = None) -> Recording:
    if (valence is None) != (arousal is None):
        have, missing = ("valence", "arousal") if arousal is None else ("arousal", "valence")
        raise DataError(valence or arousal, f"{have} gold standard of {name!r} without its {missing} file",
                        f"expected {GOLD_DIR}/{missing}/{name}.arff as well")
    if valence is None and split != "test":
        raise DataError(audio or video, f"{split} recording {name!r} has no gold standard",
                        f"expected {GOLD_DIR}/{{arousal,valence}}/{name}.arff (only test labels are withheld)")
    if audio is None and video is None:
        stored = stored_timeline_or_error(
            timelines, name, valence or root,
            f"has {'gold standard but ' if valence is not None else ''}neither audio nor video here",
            f"expected {AUDIO_DIR}/{name}.wav or {VIDEO_DIR}/{name}.mp4; or, to train from features alone, run "
            "`avaffect extract` where the media are (it records each recording's timeline in the feature store)")
        labels = np.full((stored.num_steps, 2), np.nan, dtype=np.float32)
        if valence is not None:
            times, labels = read_recola_labels(valence, arousal)
            stored.require_times(times, valence, "gold standard")
        return Recording(name=name, times=stored.times, labels=labels, face_mask=stored.face_mask, split=split,
                         annotation_path=valence, subject=name, fps=stored.fps, stored=stored.media,
                         extra={"arousal_path": arousal} if arousal is not None else {})
    durations = {}
    if check_media or valence is None:
        for path in (audio, video):
            if path is not None:
                info = probe(path)
                if path == audio and not info.has_audio:
                    raise DataError(path, "has no audio stream", "re-extract the RECOLA audio recording")
                if path == video and not info.has_video:
                    raise DataError(path, "has no video stream", "re-download the RECOLA video recording")
                durations[path] = info.duration
    if valence is not None:
        times, labels = read_recola_labels(valence, arousal)
        for path, duration in durations.items():
            check_label_times(times, duration, valence, path, "the gold standard and the recording do not belong "
                              "together")
    else:
        duration = min((d for d in durations.values() if d > 0), default=0.0)
        if duration <= 0:
            raise DataError(audio or video, "cannot tell the duration of the recording",
                            "re-encode the file so that its header states its duration")
        times = np.arange(int(math.floor(duration * LABEL_RATE + 1e-6)) + 1) / LABEL_RATE
        labels = np.full((len(times), 2), np.nan, dtype=np.float32)
    fps = nominal_fps(times, LABEL_RATE)
    crops_dir = root / CROPS_DIR / name
    face_mask = crops_face_mask(crops_dir if crops_dir.is_dir() else None, len(times), 0,
                                "crops are one per 40 ms label step, 1-based")
    return Recording(name=name, times=times, labels=labels, face_mask=face_mask, split=split,
                     video_path=video, audio_path=audio or video,
                     crops_dir=crops_dir if crops_dir.is_dir() else None, annotation_path=valence,
                     subject=name, fps=fps, extra={"arousal_path": arousal} if arousal is not None else {})
