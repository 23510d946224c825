"""A video's face features in chunks of timeline steps, with memory independent of the video's length.

:func:`iter_face_feature_chunks` runs one decode of the video (in a background thread, :func:`avaffect.media.prefetch`)
through the face pipeline frame by frame (:func:`avaffect.features.faces.crops.iter_face_steps`) and hands the
crops of every ``chunk`` steps to the video extractor (:meth:`Extractor.features_from_crops`, batched), so that
no more than one chunk of crops is ever held. The values equal the whole-recording path
(``extractor.extract(rec)`` after :func:`~avaffect.features.faces.load_face_crops`): same frames, same detector
and tracker, same crops, same features (up to the last float bit of a network's batched arithmetic).

Only extractors that describe single face crops stream (:meth:`Extractor.crop_request` is not ``None``:
``face_hog``, the face ResNets, ``vggface_face``); clip extractors need neighbouring frames, and a recording read
from its crops folder has no video to stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError, MediaError
from avaffect.features.extractors.base import Extractor, face_mask_from_features
from avaffect.features.faces.crops import cached_face_crops, face_crops, iter_face_steps
from avaffect.media import DECODE_FIX, iter_video_frames, prefetch

__all__ = ["FeatureChunk", "StreamStats", "can_stream", "iter_face_feature_chunks", "streamed_features",
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
    """Seconds per stage of one streamed video and the face pipeline's counters. ``decode`` runs in its own
    thread, overlapped with the rest; ``crop`` is everything else of the main thread's time besides detection and
    features: tracking, alignment, cutting, and waiting for decoded frames."""

    decode: float = 0.0
    detect: float = 0.0
    crop: float = 0.0
    features: float = 0.0
    total: float = 0.0
    faces: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {k: round(getattr(self, k), 3) for k in ("decode", "detect", "crop", "features", "total")}


def can_stream(rec: Recording, extractor: Extractor) -> bool:
    """Whether ``rec``'s video can stream through ``extractor`` (see the module docstring)."""
    if rec.video_path is None or rec.num_frames == 0:
        return False
    times = np.asarray(rec.times)
    return extractor.crop_request(rec) is not None and bool(np.all(np.diff(times) > 0))


def iter_face_feature_chunks(rec: Recording, extractor: Extractor, chunk: int = 256, *, depth: int = 16,
                             stats: StreamStats | None = None,
                             frame_sink: Callable[[float, np.ndarray], None] | None = None,
                             **face_params: Any) -> Iterator[FeatureChunk]:
    """Consecutive :class:`FeatureChunk` s covering ``rec``'s whole timeline, in order. ``chunk``: steps per
    chunk (and per batch of the extractor); ``depth``: decoded frames buffered ahead; ``frame_sink(t, rgb)``, when
    given, sees every decoded frame in order (predict's overlay, drawn from this one decode); ``face_params``:
    keywords of the face pipeline (``detect_every``, ...), as given to
    :func:`~avaffect.features.faces.load_face_crops`."""
    request = extractor.crop_request(rec)
    if request is None or not can_stream(rec, extractor):
        raise ConfigError(f"{rec.name}: extractor {extractor.name} cannot stream this recording (see "
                          "avaffect.features.stream.can_stream)")
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1 step, got {chunk}")
    size, detector, params = request
    st = stats if stats is not None else StreamStats()
    t_start = time.perf_counter()
    decode: dict[str, float] = {}
    frames = prefetch(iter_video_frames(rec.video_path), depth, decode)
    source = frames if frame_sink is None else _tee(frames, frame_sink)
    steps_iter = iter_face_steps(source, detector, size, rec.times, stats=st.faces, **{**params, **face_params})
    num_steps = rec.num_frames
    allowed = np.asarray(rec.face_mask, dtype=bool)
    lo = 0
    crops = np.zeros((chunk, size, size, 3), dtype=np.uint8)
    mask = np.zeros(chunk, dtype=bool)
    boxes = np.full((chunk, 4), np.nan, dtype=np.float32)

    def emit(hi: int) -> FeatureChunk:
        n = hi - lo
        t0 = time.perf_counter()
        detected = mask[:n] & allowed[lo:hi]
        feats = np.asarray(extractor.features_from_crops(crops[:n], detected), dtype=np.float32)
        st.features += time.perf_counter() - t0
        return FeatureChunk(lo, hi, feats, face_mask_from_features(allowed[lo:hi], feats),
                            np.where(detected[:, None], boxes[:n], np.nan).astype(np.float32))

    def reset() -> None:
        crops[:] = 0
        mask[:] = False
        boxes[:] = np.nan

    try:
        for item in steps_iter:
            for s in item.steps:  # sorted, increasing from one frame to the next (the timeline is sorted)
                s = int(s)
                while s >= lo + chunk:  # every step before s is final: no later frame serves it
                    yield emit(lo + chunk)
                    lo += chunk
                    reset()
                if item.crop is not None:
                    crops[s - lo] = item.crop
                    mask[s - lo] = True
                    boxes[s - lo] = item.box
        if st.faces.get("frames_decoded", 0) == 0:
            raise MediaError(rec.video_path, "cannot decode the video: no frame could be decoded", DECODE_FIX)
        while lo < num_steps:
            hi = min(num_steps, lo + chunk)
            yield emit(hi)
            lo = hi
            reset()
    finally:
        frames.close()
        st.decode = decode.get("produce_seconds", 0.0)
        st.detect = st.faces.get("detect_seconds", 0.0)
        st.total = time.perf_counter() - t_start
        st.crop = max(0.0, st.total - st.detect - st.features)


def _tee(frames: Iterator[tuple[float, np.ndarray]], sink: Callable[[float, np.ndarray], None]
         ) -> Iterator[tuple[float, np.ndarray]]:
    for t, rgb in frames:
        sink(t, rgb)
        yield t, rgb


def streamed_features(rec: Recording, extractor: Extractor, chunk: int = 256) -> np.ndarray:
    """``[T, dim]`` features of ``rec`` through :func:`iter_face_feature_chunks`: what the face extractors'
    ``extract`` does on a video, so that extraction holds one chunk of crops instead of the whole video's."""
    out = np.zeros((rec.num_frames, extractor.dim), dtype=np.float32)
    for c in iter_face_feature_chunks(rec, extractor, chunk):
        out[c.lo:c.hi] = c.features
    return out


def face_features(rec: Recording, extractor: Extractor, size: int, detector: str, source: str = "auto",
                  **params: Any) -> np.ndarray:
    """``extract`` of an extractor that describes single face crops (``size`` px crops from ``detector``,
    face-pipeline keywords ``params``): a video streams through :func:`streamed_features`, one chunk of crops in
    memory, unless the recording already holds its crops (predict's whole-video path and overlay detect once and
    share them); otherwise — and for a recording read from its crops folder — the crops of
    :func:`~avaffect.features.faces.crops.face_crops` are described at once."""
    if can_stream(rec, extractor) and cached_face_crops(rec, size, detector, source, **params) is None:
        return streamed_features(rec, extractor)
    crops, mask = face_crops(rec, size, detector, source, **params)
    return extractor.features_from_crops(crops, mask)
