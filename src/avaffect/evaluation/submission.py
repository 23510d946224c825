"""ABAW valence-arousal challenge submission: write the file and check it (docs/design.md §6).

The file is one CSV::

    image_location,valence,arousal
    2-30-640x360/00001.jpg,0.123456,-0.045000
    ...

with one row per frame (``<video>/<frame>.jpg``, 5-digit, 1-based) in exactly the order and number of
rows of the organisers' sample file (same header; its value columns, if any, are ignored). A video's
predictions are padded by repeating the last frame, or trimmed, to the frames the sample lists; both
are logged and returned in the :class:`SubmissionReport`. Values are clipped to [-1, 1].

Predictions come from per-recording CSVs as a run writes them (``predictions/<split>/<name>.csv``:
``frame,time,valence,arousal,...``, frame 0-based ↔ ``00001.jpg``). A one-target run writes only
its target's column: pass two folders (one per target) and the columns are merged.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avaffect.data.recording import TARGETS
from avaffect.errors import DataError
from avaffect.files import atomic_path

log = logging.getLogger(__name__)

HEADER = ("image_location", *TARGETS)


@dataclass
class SampleFile:
    """The organisers' sample file: the ``image_location`` of every row, in order."""

    path: Path
    locations: list[str]
    videos: list[str]  # per row
    frames: np.ndarray  # per row, 1-based frame number

    def frames_per_video(self) -> dict[str, int]:
        """Largest frame number the sample lists per video, in order of first appearance."""
        out: dict[str, int] = {}
        for v, f in zip(self.videos, self.frames.tolist()):
            out[v] = max(out.get(v, 0), f)
        return out


def parse_location(location: str) -> tuple[str, int] | None:
    """``"video/00012.jpg"`` → ``("video", 12)``; None when it is not of that form."""
    video, sep, file = location.rpartition("/")
    stem, dot, ext = file.rpartition(".")
    if not sep or not video or not dot or ext.lower() != "jpg" or not stem.isdigit() or int(stem) < 1:
        return None
    return video, int(stem)


def read_sample_file(path: str | Path | SampleFile) -> SampleFile:
    """Read the sample file; :class:`DataError` naming the line for a wrong header or location. A
    :class:`SampleFile` is returned as is."""
    if isinstance(path, SampleFile):
        return path
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "sample file not found", "download the organisers' sample file for the test set")
    locations: list[str] = []
    videos: list[str] = []
    frames: list[int] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[0].strip() != HEADER[0]:
            raise DataError(path, f"line 1: expected a header starting with {HEADER[0]!r}, found "
                            f"{','.join(header or [])[:60]!r}", "pass the organisers' sample file")
        for cells in reader:
            if not cells or not cells[0].strip():
                continue
            loc = cells[0].strip()
            parsed = parse_location(loc)
            if parsed is None:
                raise DataError(path, f"line {reader.line_num}: {loc[:60]!r} is not <video>/<00001>.jpg",
                                "pass the organisers' sample file")
            locations.append(loc)
            videos.append(parsed[0])
            frames.append(parsed[1])
    if not locations:
        raise DataError(path, "the sample file lists no frame", "pass the organisers' sample file")
    return SampleFile(path, locations, videos, np.asarray(frames, dtype=np.int64))


def _prediction_files(dirs: Iterable[str | Path]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.suffix == ".csv":
            found.setdefault(d.stem, []).append(d)
            continue
        if not d.is_dir():
            raise DataError(d, "predictions folder not found", "pass a run folder or its predictions/<split> folder")
        for f in sorted(d.rglob("*.csv")):
            found.setdefault(f.stem, []).append(f)
    return found


def read_prediction_csv(path: str | Path) -> dict[str, np.ndarray]:
    """``{target: [T] float}`` of the target columns (valence/arousal) present in a predictions CSV,
    rows in frame order. DataError naming the file for no target column, NaN or non-numeric values."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the predictions CSV: {exc}", "pass the CSVs a run writes") from None
    cols = [t for t in TARGETS if t in df.columns]
    if not cols:
        raise DataError(path, f"no valence or arousal column (columns: {','.join(map(str, df.columns))})",
                        "pass the per-recording CSVs a run writes under predictions/<split>/")
    if "frame" in df.columns:
        frames = pd.to_numeric(df["frame"], errors="coerce").to_numpy()
        if np.isnan(frames).any() or not np.array_equal(frames, np.arange(len(df))):
            raise DataError(path, "the frame column is not 0, 1, 2, ... in order",
                            "pass the per-recording CSVs a run writes (one row per frame)")
    out = {}
    for t in cols:
        values = pd.to_numeric(df[t], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise DataError(path, f"line {bad[0] + 2}: {t} is missing, NaN or not a number "
                            f"({len(bad)} such row(s))", "re-run the prediction for this recording")
        out[t] = values
    return out


def load_predictions(dirs: Iterable[str | Path], videos: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """``{video: [T, 2] (valence, arousal)}`` from prediction CSVs found under ``dirs`` (searched
    recursively; a file path works too). With ``videos`` only those are read. Each target of a video
    must come from exactly one file; a one-target run gives one column, another run the other."""
    found = _prediction_files(dirs)
    wanted = list(found) if videos is None else [v for v in dict.fromkeys(videos) if v in found]
    out: dict[str, np.ndarray] = {}
    for video in wanted:
        per_target: dict[str, tuple[np.ndarray, Path]] = {}
        for path in found[video]:
            for t, values in read_prediction_csv(path).items():
                if t in per_target:
                    raise DataError(path, f"{t} of {video!r} is also predicted in {per_target[t][1]}",
                                    "pass the predictions of one split (predictions/<split>) or one run per target")
                per_target[t] = (values, path)
        missing = [t for t in TARGETS if t not in per_target]
        if missing:
            raise DataError(found[video][0], f"no {' or '.join(missing)} prediction for {video!r}",
                            "pass a run that predicts it as another --predictions folder")
        (v, vp), (a, ap) = per_target["valence"], per_target["arousal"]
        if len(v) != len(a):
            raise DataError(vp, f"{len(v)} valence rows but {ap} has {len(a)} arousal rows",
                            "both targets must be predicted on the same recording timeline")
        out[video] = np.stack([v, a], axis=1)
    return out


@dataclass
class SubmissionReport:
    path: Path
    rows: int
    videos: int
    padded: dict[str, int] = field(default_factory=dict)  # video → frames added by repeating the last
    trimmed: dict[str, int] = field(default_factory=dict)  # video → predicted frames dropped
    clipped: int = 0  # values outside [-1, 1] clipped
    unused: list[str] = field(default_factory=list)  # predicted videos the sample file does not list

    def format(self, max_items: int = 20) -> str:
        lines = [f"wrote {self.path}: {self.rows} rows, {self.videos} videos"]
        for what, items in (("padded (last frame repeated)", self.padded), ("trimmed", self.trimmed)):
            if items:
                listed = ", ".join(f"{k} {'+' if what.startswith('p') else '-'}{n}"
                                   for k, n in list(items.items())[:max_items])
                more = f", ... ({len(items) - max_items} more)" if len(items) > max_items else ""
                lines.append(f"{what}: {len(items)} video(s): {listed}{more}")
        if self.clipped:
            lines.append(f"clipped {self.clipped} value(s) to [-1, 1]")
        if self.unused:
            lines.append(f"ignored {len(self.unused)} predicted video(s) not in the sample file")
        return "\n".join(lines)


def write_abaw_va(predictions: dict[str, np.ndarray], sample_file: str | Path | SampleFile, out: str | Path,
                  ) -> SubmissionReport:
    """Write the ABAW VA submission ``out`` (atomically) from ``{video: [T, 2]}`` predictions (frame 0 ↔
    ``00001.jpg``) in the sample file's row order. A video missing from ``predictions`` is an error
    (all missing ones are named)."""
    sample = read_sample_file(sample_file)
    counts = sample.frames_per_video()
    missing = [v for v in counts if v not in predictions]
    if missing:
        listed = ", ".join(missing[:10]) + (f", ... ({len(missing) - 10} more)" if len(missing) > 10 else "")
        raise DataError(sample.path, f"no predictions for {len(missing)} of its {len(counts)} videos: {listed}",
                        "predict every test video (avaffect predict / a run's test predictions)")
    out = Path(out)
    report = SubmissionReport(out, rows=len(sample.locations), videos=len(counts),
                              unused=sorted(set(predictions) - set(counts)))
    for video, n in counts.items():
        t = len(predictions[video])
        if t == 0:
            raise DataError(None, f"the predictions of {video!r} are empty", "re-run the prediction")
        if n > t:
            report.padded[video] = n - t
            log.info("%s: %d predicted frames, the sample lists %d: padded by repeating the last", video, t, n)
        elif n < t:
            report.trimmed[video] = t - n
            log.info("%s: %d predicted frames, the sample lists %d: trimmed", video, t, n)
    if report.padded or report.trimmed:
        log.warning("submission: padded %d video(s), trimmed %d to the sample file's frame counts",
                    len(report.padded), len(report.trimmed))
    values = np.empty((len(sample.locations), 2), dtype=np.float64)
    rows_of: dict[str, list[int]] = {}
    for i, v in enumerate(sample.videos):
        rows_of.setdefault(v, []).append(i)
    for video, rows in rows_of.items():
        pred = np.asarray(predictions[video], dtype=np.float64).reshape(-1, 2)
        idx = np.minimum(sample.frames[rows] - 1, len(pred) - 1)
        values[rows] = pred[idx]
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise DataError(None, f"NaN prediction for {sample.locations[bad]}", "re-run the prediction")
    outside = np.abs(values) > 1.0
    report.clipped = int(outside.sum())
    if report.clipped:
        log.warning("submission: clipped %d value(s) outside [-1, 1] (largest |value| %.3f)", report.clipped,
                    float(np.abs(values).max()))
        values = np.clip(values, -1.0, 1.0)
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        fh.write(",".join(HEADER) + "\n")
        fh.writelines(f"{loc},{v:.6f},{a:.6f}\n" for loc, (v, a) in zip(sample.locations, values))
    return report


def write_abaw_va_from_runs(prediction_dirs: Iterable[str | Path], sample_file: str | Path | SampleFile,
                            out: str | Path) -> SubmissionReport:
    """:func:`write_abaw_va` from per-recording prediction CSVs under ``prediction_dirs``."""
    prediction_dirs = list(prediction_dirs)
    sample = read_sample_file(sample_file)
    counts = sample.frames_per_video()
    predictions = load_predictions(prediction_dirs, videos=counts)
    report = write_abaw_va(predictions, sample, out)
    report.unused = sorted(set(_prediction_files(prediction_dirs)) - set(counts))
    return report


# --------------------------------------------------------------------------------------------
# the validator


def check_abaw_va(path: str | Path, sample_file: str | Path | SampleFile) -> list[str]:
    """Every problem of the submission file ``path`` against the sample file (empty list = valid):
    header, row order and count, field count, empty/NaN/non-numeric values and values outside [-1, 1].
    Messages name the line, the row number (1-based, header excluded) and the image_location."""
    path = Path(path)
    sample = read_sample_file(sample_file)
    if not path.is_file():
        return [f"{path}: file not found"]
    problems: list[str] = []
    with open(path, newline="", encoding="utf-8") as fh:
        raw = fh.read()
    if raw.startswith("\ufeff"):
        problems.append("line 1: the file starts with a byte-order mark; write plain UTF-8")
        raw = raw[1:]
    lines = raw.splitlines()
    header = lines[0].strip() if lines else ""
    if header != ",".join(HEADER):
        problems.append(f"line 1: header is {header[:60]!r}, expected {','.join(HEADER)!r}")
    row = 0
    misplaced: list[str] = []  # image_location mismatches: the first is reported, the rest counted
    locations = set(sample.locations)
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            problems.append(f"line {lineno}: empty line")
            continue
        row += 1
        cells = line.split(",") if '"' not in line else next(csv.reader([line]))
        loc = cells[0].strip() if cells else ""
        where = f"line {lineno} (row {row}, {loc or '<empty image_location>'})"
        if row <= len(sample.locations):
            expected = sample.locations[row - 1]
            if loc != expected:
                misplaced.append(f"{where}: image_location should be {expected!r} (the sample file's row {row})"
                                 + ("" if loc in locations else f"; {loc!r} is not in the sample file"))
        else:
            problems.append(f"{where}: extra row: the sample file has only {len(sample.locations)} rows")
        if len(cells) != 3:
            problems.append(f"{where}: {len(cells)} fields, expected 3 (image_location,valence,arousal)")
            continue
        for name, cell in zip(HEADER[1:], cells[1:]):
            cell = cell.strip()
            if not cell:
                problems.append(f"{where}: {name} is empty")
                continue
            try:
                value = float(cell)
            except ValueError:
                problems.append(f"{where}: {name} {cell[:20]!r} is not a number")
                continue
            if math.isnan(value):
                problems.append(f"{where}: {name} is NaN")
            elif not -1.0 <= value <= 1.0:
                problems.append(f"{where}: {name} {cell} is outside [-1, 1]")
    if misplaced:
        more = (f" — and {len(misplaced) - 1} later row(s) disagree too: a row is missing, extra or out of order "
                "near the first one, which shifts every row after it" if len(misplaced) > 1 else "")
        problems.insert(0 if not problems or not problems[0].startswith("line 1") else 1, misplaced[0] + more)
    if row < len(sample.locations):
        problems.append(f"the file has {row} rows but the sample file has {len(sample.locations)}: rows "
                        f"{row + 1}..{len(sample.locations)} are missing (first missing: "
                        f"{sample.locations[row]})")
    return problems
