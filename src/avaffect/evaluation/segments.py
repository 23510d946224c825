"""Predictions summarised per interval: the rows of a user's segments file (``predict --segments``: a transcript's
utterances, a diarisation's turns, a session's phases) and every minute of the video, with an optional, caveated
reading of the mean (valence, arousal) as a quadrant of Russell's circumplex.

A segment ``[start, end)`` (seconds on the video's clock, the CSV's ``time`` column) summarises the frames whose
time lies in it: per target the mean, the standard deviation and the slope (least squares, units per second) over
the frames that have a value (a face model has none where no face was found), and the fraction of its frames with
a face. A segment holding no frame has ``frames: 0`` and no statistics.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avaffect.errors import DataError

__all__ = ["Segment", "read_segments", "summarise_interval", "segment_summaries", "minute_summaries", "quadrant",
           "QUADRANT_THRESHOLD", "QUADRANT_NOTE", "SEGMENTS_FIX"]

SEGMENTS_FIX = ("write one row per segment: start,end[,label] in seconds on the video's clock, start < end, with or "
                "without a header row start,end,label")

#: below this distance from 0 on either axis, a mean is read as "near neutral" rather than a quadrant
QUADRANT_THRESHOLD = 0.1
QUADRANT_NOTE = (f"a reading of the mean (valence, arousal) on Russell's circumplex: each axis split at 0, with "
                 f"|value| < {QUADRANT_THRESHOLD} on either axis read as near neutral. The words are the circumplex's "
                 "usual examples, not a classification of this person's emotion: the values mean only what the "
                 "model's training data made them mean (see 'meaning'), and 0 is that data's midpoint, not a "
                 "person's baseline")
_QUADRANTS = {(1, 1): "positive valence, high arousal (e.g. excited, happy)",
              (1, -1): "positive valence, low arousal (e.g. calm, content)",
              (-1, 1): "negative valence, high arousal (e.g. angry, afraid)",
              (-1, -1): "negative valence, low arousal (e.g. sad, bored)"}


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    label: str | None = None


def read_segments(path: str | Path) -> list[Segment]:
    """The rows ``start,end[,label]`` of a CSV (a header row is optional), checked: numbers, ``start < end``, at
    least one row. Raises :class:`~avaffect.errors.DataError` naming the file, the row and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "segments file not found", SEGMENTS_FIX)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(path, f"cannot read the segments file: {e}", SEGMENTS_FIX) from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["start", "end"]:
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows, 1):
        if len(row) < 2:
            raise DataError(path, f"segment row {i} has {len(row)} column(s), needs start,end[,label]", SEGMENTS_FIX)
        try:
            start, end = float(row[0]), float(row[1])
        except ValueError:
            raise DataError(path, f"segment row {i}: start and end must be numbers, got {row[0]!r}, {row[1]!r}",
                            SEGMENTS_FIX) from None
        if not (math.isfinite(start) and math.isfinite(end)) or start >= end:
            raise DataError(path, f"segment row {i}: needs finite start < end, got {start} .. {end}", SEGMENTS_FIX)
        label = ",".join(row[2:]).strip() or None
        out.append(Segment(start, end, label))
    if not out:
        raise DataError(path, "the segments file has no segment", SEGMENTS_FIX)
    return out


def quadrant(valence: float | None, arousal: float | None, threshold: float = QUADRANT_THRESHOLD) -> str | None:
    """The circumplex reading of a mean (``QUADRANT_NOTE``); ``None`` without both values."""
    if valence is None or arousal is None or not (math.isfinite(valence) and math.isfinite(arousal)):
        return None
    if abs(valence) < threshold or abs(arousal) < threshold:
        return "near neutral"
    return _QUADRANTS[(1 if valence > 0 else -1, 1 if arousal > 0 else -1)]


def summarise_interval(times: np.ndarray, values: np.ndarray, face: np.ndarray, targets: list[str], start: float,
                       end: float) -> dict[str, Any]:
    """The summary of the frames with ``start <= time < end`` (module docstring)."""
    times = np.asarray(times, np.float64)
    inside = (times >= start) & (times < end)
    out: dict[str, Any] = {"start": round(float(start), 3), "end": round(float(end), 3),
                           "frames": int(inside.sum())}
    if not inside.any():
        return out
    out["face_fraction"] = round(float(np.asarray(face, bool)[inside].mean()), 4)
    t = times[inside]
    for k, name in enumerate(targets):
        v = np.asarray(values, np.float64)[inside, k]
        has = np.isfinite(v)
        out[f"{name}_mean"] = float(v[has].mean()) if has.any() else None
        out[f"{name}_std"] = float(v[has].std()) if has.any() else None
        slope = None
        if has.sum() >= 2 and np.ptp(t[has]) > 0:
            slope = float(np.polyfit(t[has], v[has], 1)[0])
        out[f"{name}_slope_per_s"] = slope
    if "valence" in targets and "arousal" in targets:
        out["quadrant"] = quadrant(out["valence_mean"], out["arousal_mean"])
    return out


def segment_summaries(times: np.ndarray, values: np.ndarray, face: np.ndarray, targets: list[str],
                      segments: list[Segment]) -> list[dict[str, Any]]:
    """One summary per segment, in the file's order (its label kept)."""
    out = []
    for seg in segments:
        s = summarise_interval(times, values, face, targets, seg.start, seg.end)
        if seg.label is not None:
            s = {"label": seg.label, **s}
        out.append(s)
    return out


def minute_summaries(times: np.ndarray, values: np.ndarray, face: np.ndarray, targets: list[str],
                     minute_s: float = 60.0) -> list[dict[str, Any]]:
    """One summary per minute of the video (``[0, 60)``, ``[60, 120)``, ...; the last one ends at the last frame)."""
    times = np.asarray(times, np.float64)
    if not len(times):
        return []
    out = []
    for k in range(int(times[-1] // minute_s) + 1):
        s = summarise_interval(times, values, face, targets, k * minute_s, (k + 1) * minute_s)
        s["end"] = round(float(min((k + 1) * minute_s, times[-1])), 3)
        s["minute"] = k
        out.append(s)
    return out
