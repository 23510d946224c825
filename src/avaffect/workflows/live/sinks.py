"""Where a live run's values go: JSON Lines (stdout), the usual CSV written as it goes, and a summary file.

Nothing is lost on a kill: both writers flush after every batch of steps (a batch is what one tick of the live
loop made final, a fraction of a second). The CSV holds final values only (a provisional value is replaced by its
final one in the JSON Lines, and never reaches the CSV), in predict's columns plus ``dropped``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import IO, Any

import numpy as np

from avaffect.errors import AvaffectError
from avaffect.files import write_json
from avaffect.workflows.live.engine import LiveStep, LiveSummary
from avaffect.workflows.predict.result import csv_number

__all__ = ["JsonLinesSink", "CsvSink", "SummarySink"]


class JsonLinesSink:
    """One JSON object per emitted step (``LiveStep.as_json``: ``frame``, ``time``, one key per target,
    ``face_detected``, ``provisional``, ``dropped``, ``latency_s``), flushed per batch; the run's summary as a last line
    ``{"summary": {...}}`` when ``summary`` is set."""

    def __init__(self, stream: IO[str], targets: list[str], summary: bool = True) -> None:
        self.stream, self.targets, self.summary = stream, targets, summary

    def write(self, steps: list[LiveStep]) -> None:
        if steps:
            self.stream.write("".join(json.dumps(s.as_json(self.targets)) + "\n" for s in steps))
            self.stream.flush()

    def frame(self, rgb: np.ndarray) -> None:
        pass

    def close(self, summary: LiveSummary) -> None:
        if self.summary:
            self.stream.write(json.dumps({"summary": summary.as_json()}) + "\n")
        self.stream.flush()


class CsvSink:
    """predict's per-frame CSV (``frame,time,<targets>,face_detected,dropped,trained_on``, numbers as predict writes
    them; with ``people`` a ``person`` column after ``time``, as in ``predict --faces all``), final values only,
    appended and flushed per batch. The file must not exist (a live run is not resumed into an old file)."""

    def __init__(self, path: str | Path, targets: list[str], trained_on: str, people: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise AvaffectError(f"{self.path} exists: a live run writes a new CSV; pass another --csv path or remove "
                                "the old file")
        if not self.path.parent.is_dir():
            raise AvaffectError(f"{self.path.parent} is not a folder: create it first, or pass another --csv path")
        self.targets, self.trained_on, self.people = targets, trained_on, people
        self.file = self.path.open("w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(["frame", "time", *(["person"] if people else []), *targets, "face_detected", "dropped",
                              "trained_on"])
        self.file.flush()

    def write(self, steps: list[LiveStep]) -> None:
        rows = [[s.frame, csv_number(s.time), *([s.person] if self.people else []), *(csv_number(v) for v in s.values),
                 s.face_detected, s.dropped, self.trained_on] for s in steps if not s.provisional]
        if rows:
            self.writer.writerows(rows)
            self.file.flush()

    def frame(self, rgb: np.ndarray) -> None:
        pass

    def close(self, summary: LiveSummary) -> None:
        self.file.close()


class SummarySink:
    """The run's summary written as JSON (atomically) at the end."""

    def __init__(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        self.path, self.extra = Path(path), dict(extra or {})

    def write(self, steps: list[LiveStep]) -> None:
        pass

    def frame(self, rgb: np.ndarray) -> None:
        pass

    def close(self, summary: LiveSummary) -> None:
        write_json(self.path, {**summary.as_json(), **self.extra})
