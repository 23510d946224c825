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
  the audio is never dropped (it is cheap). The count is in every line and in the summary.
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
from avaffect.features.face_stream import FeatureChunk, StreamStats, chunk_crops, describe_chunks
from avaffect.features.faces.crops import FaceStep, iter_face_steps
from avaffect.livemedia import LiveFrame, LiveSource
from avaffect.media import frame_rgb, upright
from avaffect.workflows.predict import FaceModelPredictor, Predictor, VideoPredictor

log = logging.getLogger(__name__)

__all__ = ["LiveStep", "LiveSink", "LiveSummary", "LiveRun"]


@dataclass
class LiveStep:
    """One emitted step: its frame number and time on the source's clock, the values (one per target; NaN where
    there is none), whether a face was found, whether the frame was dropped, whether the value is provisional,
    and the seconds from the frame's arrival to this emission. ``box``: the face box (frame pixels) or NaN."""

    frame: int
    time: float
    values: np.ndarray
    face_detected: bool
    dropped: bool
    provisional: bool
    latency_s: float
    box: np.ndarray

    def as_json(self, targets: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"frame": self.frame, "time": round(self.time, 6)}
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
    steps: int = 0
    duration_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    frames_dropped: int = 0
    face_fraction: float = 0.0
    audio: str = "present"
    provisional_steps: int = 0
    latency_final: dict[str, float] = field(default_factory=dict)
    latency_provisional: dict[str, float] = field(default_factory=dict)
    source_stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        lat = self.latency_final
        text = (f"live {self.source}: {self.steps} steps ({self.duration_s:.1f} s), face in {self.face_fraction:.0%}, "
                f"{self.frames_dropped} frames dropped, audio {self.audio}")
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


class LiveRun:
    """One live source through one predictor to the sinks (module docstring). ``chunk``: steps per described chunk
    of crops (latency against the extractor's batch size); ``max_latency``: seconds before a provisional value
    (``None``: final values only); ``max_lag``: the frame-dropping rule's bound (``None``: never drop)."""

    def __init__(self, predictor: VideoPredictor, source: LiveSource, sinks: Sequence[LiveSink], *,
                 max_latency: float | None = None, max_lag: float | None = 2.0, chunk: int = 5) -> None:
        if max_latency is not None and max_latency < 0:
            raise AvaffectError(f"--max-latency must be 0 or more seconds, got {max_latency}")
        if max_lag is not None and max_lag <= 0:
            raise AvaffectError(f"--max-lag must be more than 0 seconds, got {max_lag}")
        if chunk < 1:
            raise AvaffectError(f"the chunk must be at least one step, got {chunk}")
        self.predictor, self.source, self.sinks = predictor, source, list(sinks)
        self.max_latency, self.max_lag, self.chunk = max_latency, max_lag, int(chunk)
        if isinstance(predictor, Predictor):
            if predictor.spec.step_frames > 1:
                raise AvaffectError(f"{predictor.checkpoint}: an authors' clip model (step_frames "
                                    f"{predictor.spec.step_frames}) does not run live yet; use `avaffect predict`")
            self.extractor = predictor.video_ex
            if not hasattr(predictor.audio_ex, "step_stream"):
                raise AvaffectError(f"{predictor.checkpoint}: its audio extractor {predictor.audio_ex.name} does not "
                                    "compute features as audio arrives (logmel_stats does); use `avaffect predict`")
            self.windows: LiveWindows | None = LiveWindows(predictor.run, predictor.spec.window, predictor.spec.hop)
            self.targets = list(predictor.targets)
        elif isinstance(predictor, FaceModelPredictor):
            self.extractor = predictor.extractor
            self.windows = None
            self.targets = ["valence", "arousal"]
        else:
            raise AvaffectError(f"live runs a checkpoint or a face model, not {type(predictor).__name__}")
        self.pipeline = self.extractor.face_pipeline()
        if self.pipeline is None:
            raise AvaffectError(f"the video extractor {self.extractor.name} does not describe face crops: it cannot "
                                "run live (use `avaffect predict`)")
        self.summary = LiveSummary(source=source.label, model=predictor.info.model, targets=self.targets)
        # per step, from `base` until the step is emitted final: time, arrival, dropped
        self.base = 0
        self.times: collections.deque[float] = collections.deque()
        self.arrived: collections.deque[float] = collections.deque()
        self.dropped: collections.deque[bool] = collections.deque()
        self.steps = 0  # steps seen (frames taken from the source, dropped ones included)
        self.kept: collections.deque[int] = collections.deque()  # the steps handed to the face pipeline, in order
        self.prov_upto = 0  # steps emitted provisionally (or final) so far
        self.faces = 0
        self.final_latency: list[float] = []
        self.prov_latency: list[float] = []
        self.stats = StreamStats()
        self.audio_steps = None
        self._video_values: collections.deque = collections.deque()  # face model: (lo, values, face, boxes)

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
            rgb = upright(frame_rgb(item.frame), item.frame.rotation)
            for sink in self.sinks:
                sink.frame(rgb)
            yield item.t, rgb

    def _face_steps(self) -> Iterator[FaceStep]:
        """The face pipeline's steps, numbered on the live timeline (dropped frames are steps too)."""
        for item in iter_face_steps(self._frames(), self.pipeline, None, stats=self.stats.faces):
            yield dataclasses.replace(item, steps=np.array([self.kept.popleft()]))

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
        before, after = self.extractor.crop_context()
        crops = chunk_crops(self._face_steps(), self.pipeline.crop_size, self.chunk, before, after,
                            at_end=lambda: self.steps)
        for fc in describe_chunks(crops, self.extractor, self.stats):
            self._video(fc)
            self._tick()
        self._finish()
        s = self.summary
        s.steps, s.wall_s, s.cpu_s = self.steps, round(time.monotonic() - t0, 3), round(time.process_time() - cpu0, 3)
        s.duration_s = round(self.summary.duration_s, 3)
        s.face_fraction = self.faces / self.steps if self.steps else 0.0
        s.latency_final = _latency_stats(self.final_latency)
        s.latency_provisional = _latency_stats(self.prov_latency)
        s.source_stats = self.source.stats.as_dict()
        for sink in self.sinks:
            sink.close(s)
        return s

    def _video(self, fc: FeatureChunk) -> None:
        if self.windows is not None:
            self.windows.add_video(fc)
        else:  # a face model: the chunk's values are final now
            values = np.where(fc.face_mask[:, None], fc.features, np.nan).astype(np.float32)
            self._emit(fc.lo, values, fc.face_mask, fc.boxes, provisional=False)

    def _audio(self, ended: bool = False) -> None:
        w = self.windows
        if w is None:
            return
        if self.audio_steps is None:  # no audio stream: the training mean on every step seen
            if self.steps > w.audio_hi:
                mean = np.asarray(self.predictor.audio_mean, np.float32)
                w.add_audio(w.audio_hi, self.steps, np.tile(mean, (self.steps - w.audio_hi, 1)))
            return
        for piece in self.source.take_audio():
            self.audio_steps.add_audio(piece)
        if ended:
            self.audio_steps.end()
        out = self.audio_steps.take()
        if out is not None:
            w.add_audio(*out)

    def _tick(self) -> None:
        """Advance the audio and the windows; emit what became final, and what is due provisionally."""
        w = self.windows
        if w is None:
            return
        self._audio()
        out = w.advance()
        if out is not None:
            self._emit(*out, provisional=False)
        if self.max_latency is None:
            return
        n = w.steps_in
        lo = max(self.prov_upto, w.final)
        if n <= lo:
            return
        now = time.monotonic()
        due = lo
        while due < n and now - self.arrived[due - self.base] >= self.max_latency:
            due += 1
        if due > lo:
            p = w.provisional()
            if p is not None:
                plo, values, face, boxes = p
                self._emit(lo, values[lo - plo:due - plo], face[lo - plo:due - plo], boxes[lo - plo:due - plo],
                           provisional=True)

    def _finish(self) -> None:
        self._audio(ended=True)
        if self.windows is not None:
            out = self.windows.finish()
            if out is not None:
                self._emit(*out, provisional=False)

    def _emit(self, lo: int, values: np.ndarray, face: np.ndarray, boxes: np.ndarray, provisional: bool) -> None:
        now = time.monotonic()
        steps = []
        for j in range(len(values)):
            i = lo + j
            r = i - self.base
            lat = now - self.arrived[r]
            steps.append(LiveStep(i, self.times[r], values[j], bool(face[j]), self.dropped[r], provisional, lat,
                                  boxes[j]))
            (self.prov_latency if provisional else self.final_latency).append(lat)
        if provisional:
            self.prov_upto = lo + len(values)
            self.summary.provisional_steps += len(values)
        else:
            self.faces += int(np.count_nonzero(face))
            self.prov_upto = max(self.prov_upto, lo + len(values))
            if len(values):
                self.summary.duration_s = float(self.times[len(values) - 1 + lo - self.base])
            for _ in range(len(values)):  # emitted final: forget the step
                self.times.popleft()
                self.arrived.popleft()
                self.dropped.popleft()
            self.base = lo + len(values)
        for sink in self.sinks:
            sink.write(steps)


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
