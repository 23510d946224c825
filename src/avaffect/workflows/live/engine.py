"""The live loop: frames and audio from a :class:`~avaffect.livemedia.LiveSource` through the predictor's own
preprocessing (the face pipeline, the extractors, the windows), each step's value handed to the sinks as soon as
it is known.

The latency contract
--------------------
- **Final values** (``provisional: false``): a step's value once every window that covers it has run
  (:class:`~avaffect.evaluation.streaming.LiveWindows`): about ``window`` steps after it (the model's window, e.g.
  150 frames = 5 s at 30 fps for the demo model), plus the face pipeline's few frames. They equal offline
  ``predict`` on the same file (tested within 1e-5). A face model (``--face-model``) has no windows: every value is
  final when its frame is described.
- **Provisional values** (``--max-latency SECONDS``): a step not final ``SECONDS`` after its frame arrived is sent
  with the value the finished stream would give if it ended now (the windows run so far plus one window ending at
  the newest step), flagged ``provisional: true``; its final value follows later (a second line, and the CSV holds
  final values only). The shorter the latency, the less of the step's future the value has seen:
  ``docs/benchmarks/live_latency.md`` gives the CCC against the offline values at several latencies.
- **Frame dropping** (``--max-lag SECONDS``, default 2 for a live source; a file read as fast as it goes is not
  live and drops nothing): a frame that is more than ``max-lag`` seconds old when
  the face pipeline would take it is dropped: its step stays on the timeline, with no face (the model's
  missing-face input, as for a frame where no face was found) and ``dropped: true``. So when the machine cannot
  keep up, the face pipeline's lag stays under ``max-lag`` plus one frame's work instead of growing without limit;
  the audio is never dropped (it is cheap). Each line says whether its frame was dropped; the summary counts them.

Several people (``--faces all``): predict's people tracker on every frame the pipeline takes, one track per person
(:class:`_Track`), its windows started ``window - 1`` steps before the person's first step, so every window covering
their steps runs and their values equal ``predict --faces all``'s; a line per person and step on screen. A person
off screen for a window and a hop is retired and started again on return (the same values: no window covering their
later steps reaches back before it). Persons are numbered as first seen.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from avaffect.errors import AvaffectError
from avaffect.evaluation.streaming import LiveWindows
from avaffect.features.face_stream import CropChunk, CropChunker, StreamStats, describe_chunks
from avaffect.features.faces.crops import cut_crop, iter_face_steps
from avaffect.features.faces.detectors import get_detector
from avaffect.features.faces.people import iter_people_frames
from avaffect.livemedia import LiveFrame, LiveSource
from avaffect.media import frame_rgb, upright
from avaffect.workflows.predict import FaceModelPredictor, Predictor, VideoPredictor

log = logging.getLogger(__name__)

__all__ = ["LiveStep", "LiveSink", "LiveSummary", "LiveRun"]


@dataclass
class LiveStep:
    """One emitted step: its frame number and time on the source's clock, the values (one per target; NaN where
    there is none), whether a face was found, whether the frame was dropped, whether the value is provisional,
    and the seconds from the frame's arrival to this emission. ``box``: the face box (frame pixels) or NaN;
    ``person``: the person (``--faces all``), else ``None``."""

    frame: int
    time: float
    values: np.ndarray
    face_detected: bool
    dropped: bool
    provisional: bool
    latency_s: float
    box: np.ndarray
    person: int | None = None

    def as_json(self, targets: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"frame": self.frame, "time": round(self.time, 6)}
        if self.person is not None:
            out["person"] = self.person
        for k, name in enumerate(targets):
            v = float(self.values[k])
            out[name] = v if math.isfinite(v) else None
        out.update(face_detected=self.face_detected, provisional=self.provisional, dropped=self.dropped,
                   latency_s=round(self.latency_s, 4))
        return out


class LiveSink(Protocol):
    """Where emitted steps go (``avaffect.workflows.live.sinks``)."""

    def write(self, steps: list[LiveStep]) -> None: ...

    def frame(self, rgb: np.ndarray) -> None: ...

    def close(self, summary: LiveSummary) -> None: ...


@dataclass
class LiveSummary:
    """The run's figures: steps, what was dropped and why the stream ended, latencies of the final and the
    provisional values (seconds from a frame's arrival to its emission: median, p95, max), the process's CPU."""

    source: str
    model: str
    targets: list[str]
    faces: str = "largest"
    steps: int = 0
    duration_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    frames_dropped: int = 0
    face_fraction: float = 0.0
    audio: str = "present"
    people_seen: int | None = None
    provisional_steps: int = 0
    latency_final: dict[str, float] = field(default_factory=dict)
    latency_provisional: dict[str, float] = field(default_factory=dict)
    source_stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        lat = self.latency_final
        who = f"{self.people_seen} people, " if self.people_seen is not None else ""
        text = (f"live {self.source}: {self.steps} steps ({self.duration_s:.1f} s), {who}face in "
                f"{self.face_fraction:.0%}, {self.frames_dropped} frames dropped, audio {self.audio}")
        if lat:
            text += (f"; final values {lat['median']:.2f} s after their frame (p95 {lat['p95']:.2f}, "
                     f"max {lat['max']:.2f})")
        if self.latency_provisional:
            p = self.latency_provisional
            text += f"; provisional {p['median']:.2f} s (p95 {p['p95']:.2f})"
        return text + f"; {self.source_stats.get('ended', '')}"


def _latency_stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {"median": round(float(np.median(a)), 4), "p95": round(float(np.percentile(a, 95)), 4),
            "max": round(float(a.max()), 4), "count": len(a)}


@dataclass
class _Track:
    """One face followed live: the single face (``person`` None) or one person of ``--faces all``. Its crops are
    chunked from its windows' start on, described, and (a fusion model) windowed; ``present`` holds the steps not yet
    emitted final where the person was on screen (what ``--faces all`` emits), ``emitted`` the steps emitted final
    (from ``start``), ``prov_upto`` those emitted provisionally."""

    person: int | None
    chunker: CropChunker
    windows: LiveWindows | None
    present: set[int] = field(default_factory=set)
    emitted: int = 0
    prov_upto: int = 0
    last_seen: int = 0


class LiveRun:
    """One live source through one predictor to the sinks (module docstring). ``chunk``: steps per described chunk
    of crops (latency against the extractor's batch size); ``max_latency``: seconds before a provisional value
    (``None``: final values only); ``max_lag``: the frame-dropping rule's bound (``None``: never drop); ``faces``:
    ``largest`` (one face: every step emitted) or ``all`` (every person, numbered as first seen, each step where a
    person is on screen emitted with its ``person``)."""

    def __init__(self, predictor: VideoPredictor, source: LiveSource, sinks: Sequence[LiveSink], *,
                 max_latency: float | None = None, max_lag: float | None = 2.0, chunk: int = 5,
                 faces: str = "largest") -> None:
        if max_latency is not None and max_latency < 0:
            raise AvaffectError(f"--max-latency must be 0 or more seconds, got {max_latency}")
        if max_lag is not None and max_lag <= 0:
            raise AvaffectError(f"--max-lag must be more than 0 seconds, got {max_lag}")
        if chunk < 1:
            raise AvaffectError(f"the chunk must be at least one step, got {chunk}")
        if faces not in ("largest", "all"):
            raise AvaffectError(f"--faces must be largest or all, not {faces!r}")
        self.predictor, self.source, self.sinks = predictor, source, list(sinks)
        self.max_latency, self.max_lag, self.chunk, self.faces = max_latency, max_lag, int(chunk), faces
        if isinstance(predictor, Predictor):
            if predictor.spec.step_frames > 1:
                raise AvaffectError(f"{predictor.checkpoint}: an authors' clip model (step_frames "
                                    f"{predictor.spec.step_frames}) does not run live yet; use `avaffect predict`")
            self.extractor = predictor.video_ex
            if not hasattr(predictor.audio_ex, "step_stream"):
                raise AvaffectError(f"{predictor.checkpoint}: its audio extractor {predictor.audio_ex.name} does not "
                                    "compute features as audio arrives (logmel_stats does); use `avaffect predict`")
            self.length, self.hop = int(predictor.spec.window), int(predictor.spec.hop)
            self.targets = list(predictor.targets)
        elif isinstance(predictor, FaceModelPredictor):
            self.extractor = predictor.extractor
            self.length = self.hop = 0  # no windows: a value is final when its frame is described
            self.targets = ["valence", "arousal"]
        else:
            raise AvaffectError(f"live runs a checkpoint or a face model, not {type(predictor).__name__}")
        self.pipeline = self.extractor.face_pipeline()
        if self.pipeline is None:
            raise AvaffectError(f"the video extractor {self.extractor.name} does not describe face crops: it cannot "
                                "run live (use `avaffect predict`)")
        self.context = self.extractor.crop_context()
        if faces == "all" and self.context != (0, 0):
            raise AvaffectError(f"--faces all live needs an extractor that describes single crops; "
                                f"{self.extractor.name} needs its neighbours' (use `avaffect predict --faces all`)")
        self.summary = LiveSummary(source=source.label, model=predictor.info.model, targets=self.targets,
                                   faces=faces)
        # per step, from `base` until no track can emit the step any more: time, arrival, dropped
        self.base = 0
        self.times: collections.deque[float] = collections.deque()
        self.arrived: collections.deque[float] = collections.deque()
        self.dropped: collections.deque[bool] = collections.deque()
        self.steps = 0  # steps seen (frames taken from the source, dropped ones included)
        self.kept: collections.deque[int] = collections.deque()  # the steps handed to the face pipeline, in order
        self.rgb: np.ndarray | None = None  # the frame the face pipeline is on
        self.tracks: dict[int | None, _Track] = {}
        self.people_seen = 0
        # the audio features of the recent steps, shared by the tracks: rows from audio_base to audio_hi
        self.audio_rows = np.zeros((0, 0), np.float32)
        self.audio_base = self.audio_hi = 0
        self.faces_found = 0
        self.last_time = 0.0
        self.final_latency: list[float] = []
        self.prov_latency: list[float] = []
        self.stats = StreamStats()
        self.audio_steps = None

    # ------------------------------------------------------------------------------------------------ frames

    def _frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """The source's frames for the face pipeline, with the dropping rule; between frames, the audio and the
        windows advance (so values flow while the source is quiet)."""
        while True:
            item = self.source.next_frame(0.05)
            if item is None:
                self._tick()
                continue
            if item is LiveSource.END:
                return
            assert isinstance(item, LiveFrame)
            i = self.steps
            self.steps += 1
            self.last_time = item.t
            self.times.append(item.t)
            self.arrived.append(item.arrived)
            if self.audio_steps is not None:
                self.audio_steps.add_steps(np.array([item.t]))
            if self.max_lag is not None and time.monotonic() - item.arrived > self.max_lag:
                self.dropped.append(True)
                self.summary.frames_dropped += 1
                continue
            self.dropped.append(False)
            self.kept.append(i)
            rgb = self.rgb = upright(frame_rgb(item.frame), item.frame.rotation)
            for sink in self.sinks:
                sink.frame(rgb)
            yield item.t, rgb

    def _single(self) -> Iterator[tuple[int, list[tuple[int | None, np.ndarray | None, np.ndarray | None]]]]:
        """``(step, [(None, crop, box)])`` per frame the single-face pipeline took (no face: crop ``None``)."""
        for item in iter_face_steps(self._frames(), self.pipeline, None, stats=self.stats.faces):
            yield self.kept.popleft(), [(None, item.crop, item.box)]

    def _people(self) -> Iterator[tuple[int, list[tuple[int | None, np.ndarray | None, np.ndarray | None]]]]:
        """``(step, [(person, crop, box)])`` per frame: every person on it (the people tracker of ``predict --faces
        all``), each crop cut from the person's box as ``predict`` cuts a person's crops."""
        p = self.pipeline
        det = get_detector(p.detector, **p.detector_params)
        for _, people, _ in iter_people_frames(self._frames(), det, p, self.stats.faces):
            rgb = self.rgb
            entries = []
            for s in people:
                # the angle as predict stores a person's (float32, People.angles): the same crops to the pixel
                entries.append((s.person, cut_crop(rgb, s.box, float(np.float32(s.angle)), p), s.box))
            yield self.kept.popleft(), entries

    # ------------------------------------------------------------------------------------------------ the loop

    def run(self) -> LiveSummary:
        t0, cpu0 = time.monotonic(), time.process_time()
        pred = self.predictor
        if isinstance(pred, Predictor) and self.source.has_audio:
            self.audio_steps = pred.audio_ex.step_stream()
        elif isinstance(pred, Predictor):
            self.summary.audio = "missing"
            self.summary.warnings.append("the source has no audio: the audio features are the training mean, the "
                                         "values rest on the face alone")
        else:
            self.summary.audio = "not used"
        if self.faces == "largest":
            self._track(None, 0)
        for step, entries in (self._single() if self.faces == "largest" else self._people()):
            for track in list(self.tracks.values()):
                for c in track.chunker.reach(step):
                    self._describe(track, c)
            if self.faces == "all":
                self.faces_found += any(crop is not None for _, crop, _ in entries)
            for person, crop, box in entries:
                track = self.tracks.get(person)
                if track is None:  # a person first seen (or back): the no-face chunks before this step first
                    track = self._track(person, step)
                    for c in track.chunker.reach(step):
                        self._describe(track, c)
                if crop is not None:
                    track.chunker.put(step, crop, box)
                    track.present.add(step)
                    track.last_seen = step
            self._tick()
        for track in self.tracks.values():
            for c in track.chunker.finish(self.steps):
                self._describe(track, c)
        self._finish()
        s = self.summary
        s.steps, s.wall_s, s.cpu_s = self.steps, round(time.monotonic() - t0, 3), round(time.process_time() - cpu0, 3)
        s.duration_s = round(self.last_time, 3)
        s.face_fraction = self.faces_found / self.steps if self.steps else 0.0  # --faces all: anybody on screen
        s.people_seen = self.people_seen if self.faces == "all" else None
        s.latency_final = _latency_stats(self.final_latency)
        s.latency_provisional = _latency_stats(self.prov_latency)
        s.source_stats = self.source.stats.as_dict()
        for sink in self.sinks:
            sink.close(s)
        return s

    def _track(self, person: int | None, step: int) -> _Track:
        """A new track from ``step`` (a person first seen there; a person back after their track was retired): its
        windows start ``length - 1`` steps before, so every window covering ``step`` or later runs."""
        start = max(0, step - self.length + 1) if self.length else step
        size, (before, after) = self.pipeline.crop_size, self.context
        windows = LiveWindows(self.predictor.run, self.length, self.hop, start) if self.length else None
        # nothing before `step` is ever emitted for it (its person was not on screen): provisional values from there
        track = _Track(person, CropChunker(size, self.chunk, before, after, start=start), windows,
                       emitted=start, prov_upto=step, last_seen=step)
        self.tracks[person] = track
        if person is not None and person > self.people_seen:
            self.people_seen = person
        return track

    def _describe(self, track: _Track, crops: CropChunk) -> None:
        for fc in describe_chunks([crops], self.extractor, self.stats):
            if track.windows is not None:
                track.windows.add_video(fc)
            else:  # a face model: the chunk's values are final now
                values = np.where(fc.face_mask[:, None], fc.features, np.nan).astype(np.float32)
                self._emit(track, fc.lo, values, fc.face_mask, fc.boxes, provisional=False)

    def _audio(self, ended: bool = False) -> None:
        """The audio features that became known, shared by every track's windows."""
        if not self.length:
            return
        if self.audio_steps is None:  # no audio stream: the training mean on every step seen
            if self.steps > self.audio_hi:
                mean = np.asarray(self.predictor.audio_mean, np.float32)
                self._add_audio(self.audio_hi, self.steps, np.tile(mean, (self.steps - self.audio_hi, 1)))
        else:
            for piece in self.source.take_audio():
                self.audio_steps.add_audio(piece)
            if ended:
                self.audio_steps.end()
            out = self.audio_steps.take()
            if out is not None:
                self._add_audio(*out)
        for track in self.tracks.values():
            w = track.windows
            if w is not None and w.audio_hi < self.audio_hi:
                lo = max(w.audio_hi, self.audio_base)
                w.add_audio(lo, self.audio_hi, self.audio_rows[lo - self.audio_base:])
        # keep what a track still lacks, and what a person first seen now would need (length steps back)
        keep = min([t.windows.audio_hi for t in self.tracks.values() if t.windows is not None]
                   + [max(0, self.steps - self.length)])
        if keep > self.audio_base:
            self.audio_rows = self.audio_rows[min(keep, self.audio_hi) - self.audio_base:]
            self.audio_base = min(keep, self.audio_hi)

    def _add_audio(self, lo: int, hi: int, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float32)
        self.audio_rows = rows if self.audio_hi == self.audio_base else np.concatenate([self.audio_rows, rows])
        self.audio_hi = hi

    def _tick(self) -> None:
        """Advance the audio and the windows; emit what became final, and what is due provisionally."""
        if not self.length:
            return
        self._audio()
        now = time.monotonic()
        for track in list(self.tracks.values()):
            w = track.windows
            out = w.advance()
            if out is not None:
                self._emit(track, *out, provisional=False)
            if self.max_latency is not None:
                n, lo = w.steps_in, max(track.prov_upto, w.final)
                due = lo
                while due < n and now - self.arrived[due - self.base] >= self.max_latency:
                    due += 1
                if due > lo and (track.person is None or any(lo <= s < due for s in track.present)):
                    p = w.provisional()
                    if p is not None:
                        plo, values, face, boxes = p
                        sl = slice(lo - plo, due - plo)
                        self._emit(track, lo, values[sl], face[sl], boxes[sl], provisional=True)
            if (track.person is not None and not track.present and w.final > track.last_seen
                    and self.steps - track.last_seen > self.length + self.hop):
                del self.tracks[track.person]  # off screen for a window: retired (exact: see _track)
        self._forget()

    def _finish(self) -> None:
        self._audio(ended=True)
        for track in self.tracks.values():
            if track.windows is not None:
                out = track.windows.finish()
                if out is not None:
                    self._emit(track, *out, provisional=False)

    def _emit(self, track: _Track, lo: int, values: np.ndarray, face: np.ndarray, boxes: np.ndarray,
              provisional: bool) -> None:
        now = time.monotonic()
        steps = []
        for j in range(len(values)):
            i = lo + j
            if track.person is not None and i not in track.present:
                continue  # --faces all: a person's steps on screen only
            r = i - self.base
            lat = now - self.arrived[r]
            steps.append(LiveStep(i, self.times[r], values[j], bool(face[j]), self.dropped[r], provisional, lat,
                                  boxes[j], track.person))
            (self.prov_latency if provisional else self.final_latency).append(lat)
        hi = lo + len(values)
        if provisional:
            track.prov_upto = hi
            self.summary.provisional_steps += len(steps)
        else:
            self.faces_found += int(np.count_nonzero(face)) if track.person is None else 0
            track.prov_upto = max(track.prov_upto, hi)
            track.emitted = hi
            track.present.difference_update(range(lo, hi))
        if steps:
            for sink in self.sinks:
                sink.write(steps)

    def _forget(self) -> None:
        """Drop the per-step facts no track can emit any more."""
        waiting = self.kept[0] if self.kept else self.steps  # frames the face pipeline holds: not emitted yet
        upto = min([t.emitted for t in self.tracks.values()] + [waiting])
        while self.base < upto and self.times:
            self.times.popleft()
            self.arrived.popleft()
            self.dropped.popleft()
            self.base += 1


def install_stop(source: LiveSource) -> Callable[[], None]:
    """Ctrl-C (SIGINT) and SIGTERM end the stream cleanly: the source stops, the frames already read are processed
    and every value so far is written; a second Ctrl-C stops at once. Returns the function that restores the
    previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    hits = [0]

    def handler(signum, frame):  # noqa: ARG001
        hits[0] += 1
        if hits[0] > 1:
            raise KeyboardInterrupt
        log.warning("stopping: the values so far are being written (Ctrl-C again to stop at once)")
        source.stop()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    return restore
