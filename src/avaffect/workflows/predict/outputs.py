"""The files of one video's prediction: ``<name>.csv``, ``<name>.json``, ``<name>.png``, and on request the overlay
video and the HTML page."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from avaffect.data.recording import TARGETS
from avaffect.evaluation.explain import MODALITIES, contribution_column, last_gate_columns
from avaffect.evaluation.overlay import va_columns, write_overlay
from avaffect.evaluation.page import write_page
from avaffect.evaluation.reports import plot_recording
from avaffect.evaluation.segments import Segment, segment_summaries
from avaffect.files import atomic_write_text, output_path
from avaffect.workflows.predict.result import PredictionRun


@dataclass(frozen=True)
class OutputRequest:
    """Where the files go and which of the optional ones to write."""

    out_dir: Path
    overlay: bool = False
    html: bool = False
    faces: str = "largest"  # "largest": one trace (the single-face tracker); "all": one per person
    segments: tuple[Segment, ...] | None = None  # predict --segments: summarised in the JSON

    def overlay_to(self, name: str) -> Path | None:
        """Where a streaming pass should draw the overlay (``None`` when neither it nor the page needs it)."""
        return output_path(self.out_dir, name, "_overlay.mp4") if self.overlay or self.html else None


def write_outputs(run: PredictionRun, out_dir: str | Path, name: str, overlay: bool = False,
                  html: bool = False, segments: list[Segment] | tuple[Segment, ...] | None = None) -> dict[str, Path]:
    """``<name>.csv``, ``<name>.json``, ``<name>.png``, with ``overlay`` ``<name>_overlay.mp4`` and with ``html``
    ``<name>.html`` (the page with the overlay embedded; the overlay file is then kept only when asked for or too
    big to embed), all directly in ``out_dir`` (``name`` is encoded by :func:`avaffect.files.safe_name`: it never
    leaves ``out_dir``); ``segments``: summarised in the JSON (``segments``)."""
    out_dir = Path(out_dir)
    s = run.summary
    if segments:
        targets = [t for t in TARGETS if t in run.columns]
        s.segments = segment_summaries(run.columns["time"], run.values(targets), run.columns["face_detected"],
                                       targets, list(segments))
    paths = {k: output_path(out_dir, name, ext) for k, ext in (("csv", ".csv"), ("json", ".json"), ("png", ".png"))}
    atomic_write_text(paths["csv"], run.csv_text())
    targets = [t for t in TARGETS if t in run.columns]
    mark = " — SYNTHETIC DEMO MODEL, not real emotion" if s.trained_on == "synthetic" else ""
    parts = {m: run.values([contribution_column(t, m) for t in targets]) for m in MODALITIES
             if all(contribution_column(t, m) in run.columns for t in targets)}
    spread = run.values([f"{t}_spread" for t in targets]) if all(f"{t}_spread" in run.columns for t in targets) \
        else None
    last = last_gate_columns(run.columns)
    plot_recording(paths["png"], f"{name} — {s.model}{mark}", run.columns["time"], run.values(targets), None,
                   targets, run.columns["face_detected"], band=spread, contributions=parts or None,
                   gates={g: run.columns[c] for g, c in last.items()} or None)
    if (overlay or html) and run.overlay is not None:  # drawn during the prediction's own decode
        paths["overlay"] = run.overlay
        s.timings_s.overlay = "same pass"
    elif overlay or html:
        t0 = time.perf_counter()
        values = va_columns(run.values(targets), targets)
        paths["overlay"] = write_overlay(s.video, output_path(out_dir, name, "_overlay.mp4"),
                                         run.columns["time"], values, run.boxes)
        s.timings_s.overlay = round(time.perf_counter() - t0, 3)
    if html:
        paths["html"], embedded = write_page(output_path(out_dir, name, ".html"), run.frame, s.as_json(),
                                             paths["overlay"], name)
        if embedded and not overlay:
            paths.pop("overlay").unlink()
    atomic_write_text(paths["json"], json.dumps(s.as_json(), indent=2) + "\n")
    return paths
