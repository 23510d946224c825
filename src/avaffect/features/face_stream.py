"""A video's face features in chunks of timeline steps, with memory independent of the video's length.

:func:`iter_face_feature_chunks` runs one decode of the video (in a background thread, :func:`avaffect.media.prefetch`)
through the face pipeline frame by frame (:func:`avaffect.features.faces.crops.iter_face_steps`) and hands the
crops of every ``chunk`` steps to the video extractor (:meth:`Extractor.features_from_crops`, batched), so that
no more than one chunk of crops is ever held. The values equal the whole-recording path
(``extractor.extract(rec)`` after :func:`~avaffect.features.faces.load_face_crops`): same frames, same detector
and tracker, same crops, same features (up to the last float bit of a network's batched arithmetic).

Extractors that describe face crops stream (:meth:`Extractor.crop_request` is not ``None``: ``face_hog``, the face
ResNets, ``vggface_face``, and the clip extractor ``r2plus1d18_clip``, whose features need the crops of neighbouring
steps: its :meth:`~Extractor.crop_context` says how many, and every chunk carries them). A recording read from its
crops folder has no video to stream. :func:`iter_crop_chunks` is the crops' stream itself, for callers that
describe them their own way (predict's authors'-model path: one clip per ``step_frames`` frames).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError, MediaError
from avaffect.features.extractors.base import Extractor, face_mask_from_features
from avaffect.features.faces.crops import FaceStep, face_crops, iter_face_steps
from avaffect.features.faces.people import person_faces
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.features.faces.quality import QualityLog, face_quality
from avaffect.media import DECODE_FIX, iter_video_frames, prefetch

__all__ = ["CropChunk", "FeatureChunk", "StreamStats", "can_stream", "video_streamable", "iter_crop_chunks",
           "CropChunker", "chunk_crops", "describe_chunks", "iter_face_feature_chunks", "streamed_features",
           "face_features"]


@dataclass
class FeatureChunk:
    """Steps ``lo:hi`` of the timeline: features ``[n, d]``, the model's face mask ``[n]`` (the missing-face
    rule of :func:`~avaffect.features.extractors.base.face_mask_from_features`), the detected face boxes
    ``[n, 4]`` (NaN where none was found)."""

    lo: int
    hi: int
    features: np.ndarray
    face_mask: np.ndarray
    boxes: np.ndarray


@dataclass
class StreamStats:
    """Seconds per stage of one streamed video, as busy time (work done, not time spent waiting), and the face
    pipeline's counters. Three threads share the work: the decoder (``decode``: decoding and colour conversion,
    in its own thread; ``decode_cpu`` its CPU seconds, FFmpeg's own frame threads not counted), the detector ahead
    (``detect``: the face detector's time, on whichever thread it ran) and this one: ``crop`` (shot cuts,
    tracking, alignment, cutting), ``features``, and ``wait`` (blocked on decoded frames, ``wait_frames``, or on
    a detection ahead, ``wait_detect``). A large ``wait_frames`` says decoding bounds the pass; a large
    ``wait_detect``, detection. CPU seconds, what each thread did rather than how long it took (on 2 busy cores a
    thread's wall time includes the time it was not running): ``decode_cpu``, ``detect_cpu`` (the threads that
    ran the detector, while they ran it: part of ``main_cpu`` where this thread did), ``main_cpu`` (this thread
    over the pass, with the work of whoever consumes the chunks, e.g. the model) and ``cpu``, the
    process's, every thread's (FFmpeg's and OpenCV's pools included)."""

    decode: float = 0.0
    decode_cpu: float = 0.0
    detect: float = 0.0
    detect_cpu: float = 0.0
    crop: float = 0.0
    features: float = 0.0
    wait_frames: float = 0.0
    wait_detect: float = 0.0
    total: float = 0.0
    main_cpu: float = 0.0
    cpu: float = 0.0
    faces: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {k: round(getattr(self, k), 3) for k in ("decode", "decode_cpu", "detect", "detect_cpu", "crop",
                                                         "features", "wait_frames", "wait_detect", "total",
                                                         "main_cpu", "cpu")}


def video_streamable(rec: Recording) -> bool:
    """Whether ``rec`` has what any streaming pass needs: a video and a non-empty, strictly increasing timeline
    (each decoded frame then serves steps in order, and a chunk is final once a later step is reached)."""
    if rec.video_path is None or rec.num_steps == 0:
        return False
    return bool(np.all(np.diff(np.asarray(rec.times)) > 0))


def can_stream(rec: Recording, extractor: Extractor) -> bool:
    """Whether ``rec``'s video can stream through ``extractor`` (see the module docstring)."""
    return video_streamable(rec) and extractor.crop_request(rec) is not None


@dataclass
class CropChunk:
    """The face crops around steps ``lo:hi``: rows ``crops[i]`` / ``mask[i]`` are step ``start + i``, from
    ``before`` steps ahead of ``lo`` to ``after`` steps past ``hi`` (as far as the recording goes; see
    :func:`iter_crop_chunks`). ``mask``: a face was found there and the recording allows one; ``boxes``
    ``[hi - lo, 4]``: the detected boxes of ``lo:hi`` (NaN where none). The arrays are views of the stream's buffer:
    use them before asking for the next chunk."""

    lo: int
    hi: int
    start: int
    crops: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray

    @property
    def own(self) -> slice:
        """The rows of ``lo:hi`` in ``crops`` / ``mask``."""
        return slice(self.lo - self.start, self.hi - self.start)


def iter_crop_chunks(rec: Recording, pipeline: FacePipeline, chunk: int = 256, before: int = 0, after: int = 0, *,
                     depth: int = 16, stats: StreamStats | None = None,
                     frame_sink: Callable[[float, np.ndarray], None] | None = None, quality: QualityLog | None = None,
                     min_quality: float | None = None) -> Iterator[CropChunk]:
    """Consecutive :class:`CropChunk` s of ``chunk`` steps covering ``rec``'s timeline, from one decode of its
    video (in a background thread) through the face ``pipeline``. Each carries ``before`` / ``after`` steps of
    context on either side, for features that need neighbouring frames (clips): a chunk is handed out once the
    step ``after`` past its end has been cut, and the buffer never holds more than ``before + chunk + after``
    crops. ``depth``: decoded frames buffered ahead; ``frame_sink(t, rgb)`` sees every decoded frame in order."""
    if chunk < 1 or before < 0 or after < 0:
        raise ConfigError(f"chunk must be >= 1 step and the context >= 0, got {chunk}, {before}, {after}")
    st = stats if stats is not None else StreamStats()
    t_start, cpu_start, main_start = time.perf_counter(), time.process_time(), time.thread_time()
    decode: dict[str, float] = {}
    # FFmpeg's own frame threads off: the pass has its own threads (this one, the decoder's, the detector's), and
    # with them the whole command took 1.04x as long on 2 cores (paired, docs/benchmarks/predict_command.md)
    damage: dict = {}
    frames = prefetch(iter_video_frames(rec.video_path, threads=False, report=damage), depth, decode)
    source = frames if frame_sink is None else _tee(frames, frame_sink)
    steps_iter = iter_face_steps(source, pipeline, rec.times, given=person_faces(rec, pipeline), stats=st.faces)

    def decoded() -> None:  # the length is the recording's
        if st.faces.get("frames_decoded", 0) == 0:
            raise MediaError(rec.video_path, "cannot decode the video: no frame could be decoded", DECODE_FIX)

    try:
        yield from chunk_crops(steps_iter, pipeline.crop_size, chunk, before, after, rec.num_steps,
                               np.asarray(rec.face_mask, dtype=bool), at_end=decoded, quality=quality,
                               min_quality=min_quality)
    finally:
        frames.close()
        st.faces["decode_errors"] = damage.get("decode_errors", 0)
        st.faces["decode_messages"] = damage.get("decode_messages", [])
        st.decode = decode.get("produce_seconds", 0.0)
        st.decode_cpu = decode.get("produce_cpu_seconds", 0.0)
        st.detect = st.faces.get("detect_seconds", 0.0)
        st.detect_cpu = st.faces.get("detect_cpu_seconds", 0.0)
        st.main_cpu = time.thread_time() - main_start
        st.wait_frames = decode.get("wait_seconds", 0.0)
        st.wait_detect = st.faces.get("detect_wait_seconds", 0.0)
        st.total = time.perf_counter() - t_start
        st.cpu = time.process_time() - cpu_start
        here = st.detect - st.faces.get("detect_ahead_seconds", 0.0)  # the detections this thread ran itself
        st.crop = max(0.0, st.total - here - st.features - st.wait_frames - st.wait_detect)


class CropChunker:
    """The crop buffer of :func:`chunk_crops` in push form, for a caller that cuts the crops of several faces at once
    (``avaffect live --faces all``: one per person): :meth:`reach` a step before putting its crop (:meth:`put`) hands
    out the chunks that became final, :meth:`finish` the rest. Chunks cover ``start`` onwards (a person who appears
    later starts later). The chunks' arrays are views of the buffer: use them before the next call."""

    def __init__(self, size: int, chunk: int = 256, before: int = 0, after: int = 0, start: int = 0,
                 num_steps: int | None = None, allowed: np.ndarray | None = None) -> None:
        if chunk < 1 or before < 0 or after < 0:
            raise ConfigError(f"chunk must be >= 1 step and the context >= 0, got {chunk}, {before}, {after}")
        self.chunk, self.before, self.after, self.num_steps, self.allowed = chunk, before, after, num_steps, allowed
        self.cap = before + chunk + after
        self.crops = np.zeros((self.cap, size, size, 3), dtype=np.uint8)
        self.found = np.zeros(self.cap, dtype=bool)
        self.boxes = np.full((self.cap, 4), np.nan, dtype=np.float32)
        self.lo = self.start = int(start)  # the next chunk's first step; the step of row 0

    def _emit(self, hi: int, total: int) -> CropChunk:
        end, start = min(total, hi + self.after), self.start
        mask = self.found[:end - start] & (self.allowed[start:end] if self.allowed is not None else True)
        own = slice(self.lo - start, hi - start)
        return CropChunk(self.lo, hi, start, self.crops[:end - start], mask,
                         np.where(mask[own, None], self.boxes[own], np.nan).astype(np.float32))

    def _advance(self, hi: int) -> None:  # drop the rows no later chunk needs
        shift = max(0, hi - self.before) - self.start
        if shift > 0:
            cap = self.cap
            for buf, blank in ((self.crops, 0), (self.found, False), (self.boxes, np.nan)):
                buf[:cap - shift] = buf[shift:]
                buf[cap - shift:] = blank
            self.start += shift
        self.lo = hi

    def reach(self, step: int) -> Iterator[CropChunk]:
        """The chunks that are final once ``step`` is being filled (no later frame serves the steps before it)."""
        while step >= self.lo + self.chunk + self.after:
            hi = self.lo + self.chunk
            yield self._emit(hi, hi + self.after + 1 if self.num_steps is None else self.num_steps)
            self._advance(hi)

    def put(self, step: int, crop: np.ndarray, box: np.ndarray) -> None:
        self.crops[step - self.start] = crop
        self.found[step - self.start] = True
        self.boxes[step - self.start] = box

    def finish(self, total: int) -> Iterator[CropChunk]:
        """The chunks left once the timeline is known to have ``total`` steps."""
        while self.lo < total:
            hi = min(total, self.lo + self.chunk)
            yield self._emit(hi, total)
            self._advance(hi)


def chunk_crops(steps: Iterable[FaceStep], size: int, chunk: int = 256, before: int = 0, after: int = 0,
                num_steps: int | None = None, allowed: np.ndarray | None = None,
                at_end: Callable[[], int | None] | None = None, quality: QualityLog | None = None,
                min_quality: float | None = None) -> Iterator[CropChunk]:
    """The face ``steps`` of one pass (:func:`~avaffect.features.faces.crops.iter_face_steps`, steps in increasing
    order from one frame to the next) as consecutive :class:`CropChunk` s of ``chunk`` steps with ``before`` /
    ``after`` steps of context (see :func:`iter_crop_chunks`). ``num_steps``: the timeline's length, or ``None``
    for an open-ended one (it ends after the last step seen); ``allowed``: where the recording allows a face
    (default: everywhere); ``at_end`` is called once the steps are exhausted, before the last chunks, and may
    return the open-ended timeline's length (a live source whose last frames were dropped: they are steps too).
    ``quality``: each crop's :func:`~avaffect.features.faces.quality.face_quality` logged there; ``min_quality``: a
    crop below it is not used (its steps have no face)."""
    buf = CropChunker(size, chunk, before, after, num_steps=num_steps, allowed=allowed)
    last = -1  # the last step seen
    for item in steps:
        keep = True
        if item.crop is not None and (quality is not None or min_quality is not None):
            q = face_quality(item.crop, item.box, item.angle, item.score, item.yaw)
            if quality is not None:
                quality.add(item.steps, q)
            if min_quality is not None and q.face_quality < min_quality:
                keep = False
                if quality is not None:
                    quality.masked += len(item.steps)
        for s in item.steps:  # sorted, increasing from one frame to the next (the timeline is sorted)
            s = last = int(s)
            yield from buf.reach(s)
            if item.crop is not None and keep:
                buf.put(s, item.crop, item.box)
    length = at_end() if at_end is not None else None
    yield from buf.finish(num_steps if num_steps is not None else length if length is not None else last + 1)


def iter_face_feature_chunks(rec: Recording, extractor: Extractor, chunk: int = 256, *, depth: int = 16,
                             stats: StreamStats | None = None,
                             frame_sink: Callable[[float, np.ndarray], None] | None = None,
                             quality: QualityLog | None = None, min_quality: float | None = None
                             ) -> Iterator[FeatureChunk]:
    """Consecutive :class:`FeatureChunk` s covering ``rec``'s whole timeline, in order: the crops of
    :func:`iter_crop_chunks` (the extractor's face pipeline, :meth:`~Extractor.crop_request`, and its
    :meth:`~Extractor.crop_context`) described by :meth:`~Extractor.features_in_context`. ``chunk``: steps per
    chunk (and per batch of the extractor); ``depth``: decoded frames buffered ahead; ``frame_sink(t, rgb)``, when
    given, sees every decoded frame in order (predict's overlay, drawn from this one decode)."""
    pipeline = extractor.crop_request(rec)
    if pipeline is None or not can_stream(rec, extractor):
        raise ConfigError(f"{rec.name}: extractor {extractor.name} cannot stream this recording (see "
                          "avaffect.features.face_stream.can_stream)")
    before, after = extractor.crop_context()
    st = stats if stats is not None else StreamStats()
    yield from describe_chunks(iter_crop_chunks(rec, pipeline, chunk, before, after, depth=depth, stats=st,
                                                frame_sink=frame_sink, quality=quality, min_quality=min_quality),
                               extractor, st,
                               np.asarray(rec.face_mask, dtype=bool))


def describe_chunks(chunks: Iterable[CropChunk], extractor: Extractor, stats: StreamStats,
                    allowed: np.ndarray | None = None) -> Iterator[FeatureChunk]:
    """Each :class:`CropChunk` described by ``extractor`` (:meth:`~Extractor.features_in_context`), the seconds
    summed into ``stats.features``; ``allowed``: where the recording allows a face (default: everywhere)."""
    for c in chunks:
        t0 = time.perf_counter()
        own = c.own
        feats = np.asarray(extractor.features_in_context(c.crops, c.mask, own.start, own.stop), dtype=np.float32)
        stats.features += time.perf_counter() - t0
        ok = allowed[c.lo:c.hi] if allowed is not None else np.ones(c.hi - c.lo, bool)
        yield FeatureChunk(c.lo, c.hi, feats, face_mask_from_features(ok, feats), c.boxes)


def _tee(frames: Iterator[tuple[float, np.ndarray]], sink: Callable[[float, np.ndarray], None]
         ) -> Iterator[tuple[float, np.ndarray]]:
    for t, rgb in frames:
        sink(t, rgb)
        yield t, rgb


def streamed_features(rec: Recording, extractor: Extractor, chunk: int = 256) -> np.ndarray:
    """``[T, dim]`` features of ``rec`` through :func:`iter_face_feature_chunks`: what the face extractors'
    ``extract`` does on a video, so that extraction holds one chunk of crops instead of the whole video's."""
    out = np.zeros((rec.num_steps, extractor.dim), dtype=np.float32)
    for c in iter_face_feature_chunks(rec, extractor, chunk):
        out[c.lo:c.hi] = c.features
    return out


def face_features(rec: Recording, extractor: Extractor, source: str = "auto") -> np.ndarray:
    """``extract`` of an extractor that describes single face crops: a video streams through
    :func:`streamed_features`, one chunk of crops in memory; a recording read from its crops folder (or one that
    cannot stream) has the crops of :func:`~avaffect.features.faces.crops.face_crops` described at once."""
    if can_stream(rec, extractor):
        return streamed_features(rec, extractor)
    crops, mask = face_crops(rec, extractor.face_pipeline(), source)
    return extractor.features_from_crops(crops, mask)
