"""Every person of a video (``predict --faces all``): one trace per person, identities kept across shot cuts.

One pass over the video tracks every face (:func:`avaffect.features.faces.people.track_people`: IoU, an
appearance cue, shot cuts); each person then becomes a recording of their own (``<video>#p1``, ``#p2``, ...)
whose crops are cut from that person's boxes, sharing the video's one audio track — the model of Aff-Wild2's
``_left`` / ``_right`` recordings — and the predictor runs on it exactly as on any video (no second code path).
Each person also gets a per-frame ``speaking`` score (audio-visual synchrony of their mouth and the voice,
:mod:`avaffect.features.faces.speaking`).

The fusion models hear the whole soundtrack for every person, as the papers do for Aff-Wild2's two-person
videos: a person's values on frames where someone else speaks lean on the other's voice.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from avaffect.data.recording import TARGETS, PersonFaces
from avaffect.errors import AvaffectError
from avaffect.evaluation.overlay import va_columns, write_people_overlay
from avaffect.evaluation.page import write_page
from avaffect.evaluation.reports import plot_people
from avaffect.features.faces.people import People, track_people
from avaffect.files import atomic_write_text, output_path
from avaffect.workflows.predict.result import CSV_FLOAT, PredictionRun, Summary, VideoPredictor

#: what the JSON says about the one soundtrack every person's prediction hears
SHARED_AUDIO = ("every person's values come from their own face and the video's one audio track (as the papers "
                "do for two-person videos): on frames where another person speaks, they lean on that voice; the "
                "speaking column (0-1, audio-visual synchrony of the person's mouth with the voice over 2 s) says "
                "who is likely speaking")

if TYPE_CHECKING:
    import pandas as pd


class PersonSummary(BaseModel):
    """One person of ``predict --faces all``: when they are on screen, and their values' statistics over those
    frames (``None`` when the model gave none there)."""

    model_config = ConfigDict(extra="forbid")

    person: int
    on_screen_s: float
    on_screen_fraction: float
    first_s: float | None
    last_s: float | None
    speaking_mean: float | None = None
    valence_mean: float | None = None
    valence_std: float | None = None
    arousal_mean: float | None = None
    arousal_std: float | None = None


class PeopleSummary(BaseModel):
    """The JSON of ``predict --faces all``: the video's summary (as one face's, its ``face_fraction`` the
    fraction of frames with anybody), the people, the shot cuts found and the persons dropped as too short."""

    model_config = ConfigDict(extra="forbid")

    faces: str = "all"
    video: Summary
    people: list[PersonSummary]
    people_dropped: int
    shot_cuts_s: list[float]
    audio_note: str = SHARED_AUDIO


@dataclass
class PeopleRun:
    """``predict --faces all`` on one video: the people found, each person's run (in person order), and the
    summary."""

    people: People
    runs: list[PredictionRun]
    summary: PeopleSummary
    speaking: np.ndarray  # [P, T] speaking scores (NaN where the person is not on screen)

    def frame(self) -> pd.DataFrame:
        """One table for everybody, a ``person`` column and the face box (x, y, w, h in frame pixels, empty where
        the person is not on screen), rows by person then frame."""
        import pandas as pd  # lazy: 0.4 s of every predict's start-up otherwise

        tables = []
        for k, run in enumerate(self.runs):
            t = run.frame.copy()
            t.insert(2, "person", k + 1)
            box = self.people.boxes[k]
            t.insert(t.columns.get_loc("face_detected") + 1, "speaking", np.round(self.speaking[k], 4))
            at = t.columns.get_loc("speaking") + 1
            for j, (col, v) in enumerate((("box_x", box[:, 0]), ("box_y", box[:, 1]), ("box_w", box[:, 2] - box[:, 0]),
                                          ("box_h", box[:, 3] - box[:, 1]))):
                t.insert(at + j, col, np.round(v, 1))
            tables.append(t)
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _person_summary(k: int, people: People, run: PredictionRun, speaking: np.ndarray) -> PersonSummary:
    on = people.on_screen[k]
    talk = speaking[k][np.isfinite(speaking[k])]
    times = people.times
    dt = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    stats = {}
    for t in TARGETS:
        v = run.frame[t].to_numpy()[on] if t in run.frame else np.zeros(0)
        v = v[np.isfinite(v)]
        stats[f"{t}_mean"] = float(v.mean()) if len(v) else None
        stats[f"{t}_std"] = float(v.std()) if len(v) else None
    return PersonSummary(person=k + 1, on_screen_s=round(float(on.sum()) * dt, 3),
                         on_screen_fraction=float(on.mean()) if len(on) else 0.0,
                         first_s=float(times[on][0]) if on.any() else None,
                         last_s=float(times[on][-1]) if on.any() else None,
                         speaking_mean=round(float(talk.mean()), 4) if len(talk) else None, **stats)


def predict_people(predictor: VideoPredictor, video: str | Path) -> PeopleRun:
    """Every person of ``video`` through ``predictor``: one people pass, then one run per person."""
    t0 = time.perf_counter()
    rec = predictor.recording(video)
    if rec.video_path is None:
        raise AvaffectError(f"{video}: --faces all needs the video itself (not a crops folder)")
    people = track_people(rec.video_path, rec.times, predictor.info.faces)
    runs = []
    for k in range(len(people)):
        person = PersonFaces(k + 1, people.boxes[k], people.angles[k])
        prec = dataclasses.replace(rec, name=f"{rec.name}#p{k + 1}", person=person, extra={})
        t1 = time.perf_counter()
        runs.append(predictor.make_run(str(video), prec, predictor.traces(prec, None), time.perf_counter() - t1))
    speaking = people.speaking(rec.video_path)
    anybody = people.on_screen.any(axis=0) if len(people) else np.zeros(rec.num_steps, bool)
    video_summary = _video_summary(predictor, str(video), rec, runs, anybody, time.perf_counter() - t0)
    video_summary = video_summary.model_copy(update={"shot_cuts": len(people.cuts)})
    summary = PeopleSummary(video=video_summary,
                            people=[_person_summary(k, people, r, speaking) for k, r in enumerate(runs)],
                            people_dropped=people.dropped,
                            shot_cuts_s=[round(float(rec.times[c]), 3) for c in people.cuts])
    return PeopleRun(people, runs, summary, speaking)


def _video_summary(predictor: VideoPredictor, video: str, rec, runs: list[PredictionRun], anybody: np.ndarray,
                   wall: float) -> Summary:
    """The one-video summary of a people run: the first person's, or a run on nobody when nobody was found, with
    the face counts of the whole video and the whole command's time."""
    base = runs[0].summary if runs else predictor.make_run(video, rec, predictor.traces(
        dataclasses.replace(rec, person=PersonFaces(0, np.full((rec.num_steps, 4), np.nan),
                                                    np.zeros(rec.num_steps)), extra={}), None), wall).summary
    warnings = [w for w in base.warnings if "no face" not in w]
    if not runs:
        warnings.insert(0, "no face was found in any frame: there is nobody to follow")
    n = rec.num_steps
    return base.model_copy(update={
        "face_fraction": float(anybody.mean()) if n else 0.0, "frames_without_face": int((~anybody).sum()),
        "warnings": warnings, "valence_mean": None, "valence_std": None, "arousal_mean": None, "arousal_std": None,
        "minutes": [],  # a person's values are theirs: the per-person CSV holds them
        "timings_s": base.timings_s.model_copy(update={"total": round(wall, 3), "stages": None}),
        "realtime_factor": round(base.duration_s / wall, 2) if wall > 0 else None, "face_tracks": None})


def write_people_outputs(run: PeopleRun, out_dir: str | Path, name: str, overlay: bool = False,
                         html: bool = False) -> dict[str, Path]:
    """``<name>.csv`` (everybody, a ``person`` column), ``<name>.json`` (the people summary) and ``<name>.png``
    (one trace per person) in ``out_dir``; with ``overlay`` ``<name>_overlay.mp4`` (each person's box, number and
    values) and with ``html`` ``<name>.html`` (one valence and one arousal trace per person; the overlay embedded,
    kept beside it only when asked for or too big to embed)."""
    out_dir = Path(out_dir)
    paths = {k: output_path(out_dir, name, ext) for k, ext in (("csv", ".csv"), ("json", ".json"), ("png", ".png"))}
    atomic_write_text(paths["csv"], run.frame().to_csv(index=False, float_format=CSV_FLOAT))
    s = run.summary.video
    mark = " — SYNTHETIC DEMO MODEL, not real emotion" if s.trained_on == "synthetic" else ""
    traces = [(f"person {k + 1}", r.frame[list(s.targets)].to_numpy(), run.people.on_screen[k])
              for k, r in enumerate(run.runs)]
    plot_people(paths["png"], f"{name} — {s.model}{mark}", run.people.times, traces, s.targets)
    if overlay or html:
        t0 = time.perf_counter()
        values = np.stack([va_columns(r.frame[list(s.targets)].to_numpy(), s.targets) for r in run.runs]) \
            if run.runs else np.zeros((0, len(run.people.times), 2))
        paths["overlay"] = write_people_overlay(s.video, output_path(out_dir, name, "_overlay.mp4"), values,
                                                run.people.boxes)
        s.timings_s.overlay = round(time.perf_counter() - t0, 3)
    if html:
        import pandas as pd  # lazy: 0.4 s of every predict's start-up otherwise

        anybody = pd.DataFrame({"time": run.people.times, "face_detected": run.people.on_screen.any(axis=0)
                                if len(run.people) else np.zeros(len(run.people.times), bool)})
        paths["html"], embedded = write_page(output_path(out_dir, name, ".html"), anybody, s.as_json(),
                                             paths["overlay"], name, people=[r.frame for r in run.runs])
        if embedded and not overlay:
            paths.pop("overlay").unlink()
    body = run.summary.model_dump()
    body["video"] = s.as_json()
    atomic_write_text(paths["json"], json.dumps(body, indent=2) + "\n")
    return paths
