"""The typed parts every predictor shares: what a path computed (:class:`Traces`), what a video's prediction is
(:class:`PredictionRun`: the per-frame table and a typed :class:`Summary`), and the :class:`VideoPredictor` base
that turns the one into the other."""

from __future__ import annotations

import abc
import csv
import io
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from avaffect.data.recording import TARGETS, Recording
from avaffect.errors import MediaError
from avaffect.evaluation.explain import explain_note
from avaffect.evaluation.segments import QUADRANT_NOTE, QUADRANT_THRESHOLD, minute_summaries
from avaffect.features.faces.detectors import resolve_detector
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.media import probe

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: what a prediction's numbers mean, by the data its model was trained on (``trained_on`` of the JSON and CSV)
MEANINGS = {
    "synthetic": "SYNTHETIC DEMO MODEL: trained on avaffect's built-in cartoon faces and tones; the numbers show "
                 "that the pipeline runs, they say nothing about this person's emotion",
    "face_model": "zero-shot valence/arousal of a face model trained elsewhere (its own training set), per frame "
                  "from the face alone; not an avaffect model trained on your data",
    "unknown": "an avaffect model whose training data this checkpoint does not record",
}


def prediction_meaning(trained_on: str) -> str:
    """The sentence the JSON, the plot and the HTML page carry about what the numbers mean."""
    if trained_on.startswith("authors:"):
        return (f"the authors' released {trained_on.split(':', 1)[1]} fusion model (trained by them on Aff-Wild2), "
                "run on inputs rebuilt by avaffect from their papers; its numbers mean what Aff-Wild2's annotations "
                "mean only with the authors' own fine-tuned backbone files, not with random or ImageNet ones")
    return MEANINGS.get(trained_on, f"an avaffect fusion model trained on the {trained_on} dataset; its numbers "
                                    "mean what that dataset's annotations mean")


QUADRANTS = {"threshold": QUADRANT_THRESHOLD, "note": QUADRANT_NOTE}


class Timings(BaseModel):
    """Wall seconds of one prediction: ``total`` always; the feature and model split and the seconds per stage
    where the path measures them; ``overlay`` once the overlay is written (``"same pass"`` when it was drawn during
    the prediction's own decode)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    total: float
    features: float | None = None
    model: float | None = None
    stages: dict[str, float] | None = None
    overlay: float | Literal["same pass"] | None = None


class Summary(BaseModel):
    """One video's summary, written to ``<name>.json`` (:meth:`as_json`). ``<target>_mean`` / ``_std`` are over the
    frames that have a value (``None`` when none has: a face model on a video without a face)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    video: str
    frames: int
    duration_s: float
    fps: float
    face_fraction: float
    audio: Literal["present", "missing", "not used"]
    frames_without_face: int
    warnings: list[str]
    targets: list[str]
    valence_mean: float | None = None
    valence_std: float | None = None
    arousal_mean: float | None = None
    arousal_std: float | None = None
    model: str
    checkpoint: str
    trained_on: str
    meaning: str
    checkpoint_sha256_16: str
    face_source: str
    timings_s: Timings
    streamed: bool
    detect_every: int | None
    realtime_factor: float | None
    device: str
    runtime: Literal["torch", "onnxruntime"] | None = None  # what ran the model (onnxruntime: its ONNX export)
    face_tracks: int | None = None  # tracks the single-face tracker started (> 1: the face followed changed)
    shot_cuts: int | None = None  # shot cuts seen by the face pipeline
    minutes: list[dict] = []  # one summary per minute (evaluation.segments.minute_summaries)
    segments: list[dict] | None = None  # one per row of predict --segments FILE
    quadrants: dict | None = None  # the circumplex reading's threshold and caveat (evaluation.segments)
    explain: str | None = None  # what the --explain columns mean (evaluation.explain)
    ensemble: dict | None = None  # an ensemble's members and mean spread (predict.ensemble)
    media: dict | None = None  # the container's duration against what decoded, decoding errors (media_report)
    calibration: dict | None = None  # avaffect calibrate's chain, applied (predict.checkpoint)
    face_quality: dict | None = None  # the face-quality rule and the frames it masked (features.faces.quality)

    def as_json(self) -> dict:
        """The JSON object: the statistics of targets the model does not predict left out, unmeasured timings
        and counters left out."""
        out = self.model_dump()
        for t in TARGETS:
            if t not in self.targets:
                out.pop(f"{t}_mean"), out.pop(f"{t}_std")
        for key in ("face_tracks", "shot_cuts", "runtime", "segments", "quadrants", "explain", "ensemble", "media",
                    "calibration", "face_quality"):
            if out[key] is None:
                out.pop(key)
        out["timings_s"] = self.timings_s.model_dump(exclude_none=True)
        return out


CSV_FLOAT = "%.6f"  # how predict's CSVs write a float (NaN: an empty cell)


def csv_number(value: float) -> str:
    """One float as predict's CSVs write it (:data:`CSV_FLOAT`, NaN empty): for a writer that goes row by row."""
    v = float(value)
    return CSV_FLOAT % v if math.isfinite(v) else ""


def table_csv(columns: dict[str, np.ndarray]) -> str:
    """A table given as columns in CSV, exactly as pandas writes its DataFrame with ``to_csv(index=False,
    float_format="%.6f")`` (tested): floats with 6 decimals and NaN empty, booleans ``True`` / ``False``, text
    quoted where it needs it. Written without pandas, which ``predict`` does not import (0.4 s of start-up)."""
    cells = []
    for v in columns.values():
        v = np.asarray(v)
        if v.dtype.kind == "f":
            text = np.char.mod(CSV_FLOAT, v).astype(object)
            text[np.isnan(v)] = ""
            cells.append(text)
        else:
            cells.append(v.astype(str).astype(object))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*cells, strict=True))
    return out.getvalue()


@dataclass
class PredictionRun:
    """One video's result: the per-frame table's ``columns`` (``frame,time,<targets>,face_detected,trained_on``)
    and the same as a pandas DataFrame (:attr:`frame`, made when first asked for), its :class:`Summary`, the face
    box per frame (``None`` when the faces came from a crops folder of a path that does not track them) and the
    overlay when the streaming pass drew it."""

    columns: dict[str, np.ndarray]
    summary: Summary
    boxes: np.ndarray | None = None
    overlay: Path | None = None
    overlay_frames_buffered: int | None = None

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The per-frame table as a DataFrame."""
        import pandas as pd  # lazy: 0.4 s that writing a prediction's files does not need

        return pd.DataFrame(self.columns)

    def values(self, targets: Sequence[str]) -> np.ndarray:
        """``[T, len(targets)]`` float values of the named targets."""
        return np.stack([np.asarray(self.columns[t], np.float64) for t in targets], axis=1) if targets else \
            np.zeros((len(self.columns["frame"]), 0))

    def csv_text(self) -> str:
        """The per-frame table as the CSV ``predict`` writes (:func:`table_csv`)."""
        return table_csv(self.columns)


@dataclass
class Traces:
    """What one prediction path computed: per frame its ``values`` [T, targets] (NaN where a path has none),
    whether a face was seen, the face boxes, and how it ran (the seconds per stage, the model's seconds)."""

    values: np.ndarray
    face: np.ndarray
    boxes: np.ndarray | None
    streamed: bool
    audio: Literal["present", "missing", "not used"] = "present"
    stages: dict[str, float] = field(default_factory=dict)
    model_s: float | None = None
    overlay: Path | None = None
    overlay_frames_buffered: int | None = None
    faces: dict = field(default_factory=dict)  # the face pipeline's counters, when the path has them
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # more per-frame columns (--explain, an ensemble)

    def face_counts(self) -> tuple[int | None, int | None]:
        """``(face tracks started, shot cuts)`` of the single-face tracker, when this path counted them."""
        return self.faces.get("tracks_started"), self.faces.get("cuts")


@dataclass(frozen=True)
class PredictorOptions:
    """How a checkpoint's predictor runs and what it adds to the values (``predict``'s options).

    ``device``: cpu or cuda. ``stream``: one decode in chunks, memory independent of the video's length (``False``:
    the whole-video path). ``detect_every``: the face detector on every k-th frame only, tracking in between,
    whatever the checkpoint recorded (``None``: its own setting; see ``docs/benchmarks/face_tracking.md``).
    ``runtime``: ``auto`` runs the ONNX export when a matching one sits beside the checkpoint and the device is the
    CPU, ``onnx`` requires it, ``torch`` never uses it. ``explain``: each modality's contribution by occlusion, the
    voicing and a gated model's gate weights, as columns (:mod:`avaffect.evaluation.explain`). ``face_quality``:
    each frame's face quality as columns; ``min_face_quality``: frames below it count as without a face
    (:mod:`avaffect.features.faces.quality`; the streaming path)."""

    device: str = "cpu"
    stream: bool = True
    detect_every: int | None = None
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    explain: bool = False
    face_quality: bool = False
    min_face_quality: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What a predictor tells about its model in every summary."""

    model: str
    checkpoint: Path
    checkpoint_sha256_16: str
    trained_on: str
    targets: tuple[str, ...]
    detect_every: int | None
    device: str
    faces: FacePipeline  # the face pipeline (its detector names the face source; the people pass runs it)
    runtime: Literal["torch", "onnxruntime"] | None = None  # what runs the model
    modality_dropout: dict | None = None  # training.modality_dropout it was trained with (None: none recorded)


#: a container whose header promises more than this beyond the frames read is reported as truncated (seconds, and
#: a fraction of its duration: the larger)
TRUNCATED_S, TRUNCATED_FRACTION = 0.5, 0.05


def media_report(rec: Recording, tr: Traces) -> dict:
    """What the file said against what decoded: the container's duration (its header) and the seconds of frames
    read, FFmpeg's concealed decoding errors (counted by the streaming pass), and the warnings these give
    (``warnings``, popped by the caller): a file cut short, damaged frames."""
    out: dict = {"warnings": []}
    if rec.video_path is None:
        return out
    try:
        header = probe(rec.video_path).duration
    except MediaError:
        header = 0.0
    read = duration_s(rec)
    out.update(container_duration_s=round(header, 3), decoded_duration_s=round(read, 3))
    if header > read + max(TRUNCATED_S, TRUNCATED_FRACTION * header):
        out["truncated"] = True
        out["warnings"].append(f"the file looks truncated or damaged: its header says {header:.2f} s but frames "
                               f"could be read for {read:.2f} s only; the values cover what was read")
    errors = tr.faces.get("decode_errors")
    if errors is not None:
        out["decode_errors"] = int(errors)
        if errors:
            first = "; ".join(tr.faces.get("decode_messages", [])[:2])
            out["warnings"].append(f"{errors} decoding error(s): FFmpeg concealed damaged data, so some frames may "
                                   f"be corrupted (first: {first}); check the file (ffmpeg -v error -i FILE -f null -)")
    return out


def duration_s(rec: Recording) -> float:
    """Seconds of video the timeline covers (the real-time factor's numerator)."""
    return float(rec.times[-1] - rec.times[0] + 1.0 / rec.fps) if rec.num_steps else 0.0


class VideoPredictor(abc.ABC):
    """A model loaded once, ready for many videos: ``predictor(video)`` gives a :class:`PredictionRun`.

    Subclasses set :attr:`info` and :attr:`no_face_consequence`, and implement :meth:`traces` (the prediction
    proper) and :meth:`spawn_args` (how a worker process rebuilds the predictor)."""

    info: ModelInfo
    #: what a video without any face means for this predictor's values (its warning)
    no_face_consequence: str = "the predictions rest on the voice alone"

    @abc.abstractmethod
    def traces(self, rec: Recording, overlay_to: Path | None) -> Traces:
        """Predict one recording; ``overlay_to``: draw the overlay there during a streaming pass (paths that
        do not stream leave it to :func:`~avaffect.workflows.predict.outputs.write_outputs`)."""

    @abc.abstractmethod
    def recording(self, video: str | Path, crops_dir: str | Path | None = None) -> Recording:
        """The video as a recording (with ``crops_dir``: its faces from that crops folder)."""

    @abc.abstractmethod
    def spawn_args(self) -> tuple[type, tuple]:
        """How a worker process rebuilds this predictor: ``(class, args)``."""

    def __call__(self, video: str | Path, crops_dir: str | Path | None = None,
                 overlay_to: str | Path | None = None) -> PredictionRun:
        """Predict one video (``crops_dir``: its own face crops; ``overlay_to``: the overlay drawn in the
        streaming pass, no second decode)."""
        t0 = time.perf_counter()
        rec = self.recording(video, crops_dir)
        tr = self.traces(rec, None if overlay_to is None else Path(overlay_to))
        return self.make_run(str(video), rec, tr, time.perf_counter() - t0)

    def make_run(self, video: str, rec: Recording, tr: Traces, wall: float) -> PredictionRun:
        """The per-frame table and the summary of one video."""
        info, n = self.info, rec.num_steps
        face = np.asarray(tr.face, bool)
        warnings = []
        if n and not face.any():
            warnings.append(f"no face was found in any frame: {self.no_face_consequence}")
        if tr.audio == "missing":
            warnings.append("no audio track: the predictions rest on the face alone")
        tracks, cuts = tr.face_counts()
        if tracks is not None and tracks > 1 and rec.person is None:
            warnings.append(f"the face followed changed {tracks - 1} time(s) (a shot cut or a face lost): this one "
                            "trace may follow more than one person; --faces all gives one trace per person")
        media = media_report(rec, tr)
        warnings += media.pop("warnings")
        for w in warnings:
            log.warning("%s: %s", video, w)
        frame: dict[str, np.ndarray] = {"frame": np.arange(n), "time": np.round(np.asarray(rec.times, np.float64), 6)}
        stats: dict[str, float | None] = {}
        for k, t in enumerate(info.targets):
            frame[t] = v = np.asarray(tr.values[:, k])
            has = np.isfinite(v)
            stats[f"{t}_mean"] = float(v[has].mean()) if has.any() else None
            stats[f"{t}_std"] = float(v[has].std()) if has.any() else None
        frame["face_detected"] = face
        frame.update(tr.extra)  # an ensemble's spread, --explain's columns
        frame["trained_on"] = np.full(n, info.trained_on, dtype=object)
        model_s = tr.model_s
        dur = duration_s(rec)
        timings = Timings(total=round(wall, 3), stages=tr.stages or None,
                          model=None if model_s is None else round(model_s, 3),
                          features=None if model_s is None else round(wall - model_s, 3))
        summary = Summary(
            video=video, frames=n, duration_s=round(dur, 3), fps=rec.fps,
            face_fraction=float(face.mean()) if n else 0.0, audio=tr.audio, frames_without_face=int((~face).sum()),
            warnings=warnings, targets=list(info.targets), **stats, model=info.model, checkpoint=str(info.checkpoint),
            trained_on=info.trained_on, meaning=prediction_meaning(info.trained_on),
            checkpoint_sha256_16=info.checkpoint_sha256_16,
            face_source="crops" if rec.crops_dir else resolve_detector(info.faces.detector), timings_s=timings,
            streamed=bool(tr.streamed), detect_every=info.detect_every,
            realtime_factor=round(dur / wall, 2) if wall > 0 else None, device=info.device, runtime=info.runtime,
            face_tracks=tracks, shot_cuts=cuts, media=media,
            minutes=minute_summaries(frame["time"], tr.values, face, list(info.targets)),
            explain=explain_note(info.modality_dropout) if "voicing" in tr.extra else None,
            quadrants=QUADRANTS if {"valence", "arousal"} <= set(info.targets) else None)
        return PredictionRun(frame, summary, tr.boxes, tr.overlay, tr.overlay_frames_buffered)
