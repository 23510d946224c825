"""Media decoding with PyAV (bundled FFmpeg): video frames with their stream timestamps, 16 kHz mono audio.

Time origin
-----------
All times returned here share one origin per file: the earliest start time of the file's audio and
video streams (clamped at 0; a negative start is encoder priming that the decoder drops). Video
frame times are ``pts * time_base - origin`` (taken from the stream, never ``index / fps``) and
audio sample 0 sits at the origin (padded with zeros or trimmed when the audio stream starts
later or earlier). So a video frame at time ``t`` and audio sample ``round(t * sample_rate)`` are
simultaneous, even when the container starts its video a few milliseconds after its audio
(common in FLV). For a typical mp4 the origin is 0 and the first frame sits at 0.

Every failure raises :class:`~avaffect.errors.MediaError` naming the file and saying what to do;
a file without audio raises :class:`~avaffect.errors.NoAudioStreamError`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avaffect.errors import MediaError, NoAudioStreamError

__all__ = [
    "MediaInfo",
    "probe",
    "read_video",
    "frame_rgb",
    "iter_video_frames",
    "frame_time",
    "counted_decode_errors",
    "prefetch",
    "read_audio",
    "iter_audio",
    "AudioPlacer",
    "DECODE_FIX",
    "NO_AUDIO_FIX",
    "NO_VIDEO_FIX",
]

DECODE_FIX = "check the file plays with ffprobe/ffplay or re-encode it with ffmpeg"
NO_AUDIO_FIX = (
    "this model needs audio; use a video-only model or provide the audio file "
    "(the recording's audio path / --audio)"
)
NO_VIDEO_FIX = "this step needs a video track; use an audio-only model or provide the video file"


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds.

    ``num_frames`` comes from the container when it stores a frame count, otherwise it is
    estimated as ``round(video duration * fps)``; ``read_video`` gives the exact count.
    ``start_time`` is the time origin (seconds, see the module docstring).
    """

    path: Path
    has_video: bool
    has_audio: bool
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    audio_sample_rate: int
    start_time: float = 0.0
    rotation: float = 0.0  # display-matrix rotation (degrees); width/height are the displayed frame's


def _open(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "cannot decode the file: it does not exist", "check the path")
    if path.is_dir():
        raise MediaError(path, "cannot decode the file: it is a folder", "pass a media file")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(path, f"cannot decode the file: {exc}", DECODE_FIX) from exc


def _stream_start(stream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def _origin(container) -> float:
    """The shared time origin (seconds): earliest audio/video stream start, clamped at 0."""
    starts = [
        s
        for s in (_stream_start(st) for st in (*container.streams.video, *container.streams.audio))
        if s is not None
    ]
    if not starts:
        return 0.0
    return max(0.0, min(starts))


def _first_frame_rotation(container, stream) -> float:
    """The display-matrix rotation of the first decodable frame (0 when there is none)."""
    try:
        for frame in container.decode(stream):
            return float(frame.rotation or 0.0)
    except (av.FFmpegError, ValueError):
        return 0.0
    return 0.0


def _rate(stream) -> float:
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, attr, None)
        if rate:
            return float(rate)
    return 0.0


def upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame as a player shows it: turned by the stream's display-matrix ``rotation`` (degrees,
    counter-clockwise, as FFmpeg reports it; a phone filming in portrait stores -90 / 90)."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


# The colour conversion of :func:`frame_rgb`: the YUV 4:2:0 frames of nearly every H.264 video, with the BT.601
# limited-range matrix swscale also assumes for them, go through OpenCV's SIMD converter (0.23 ms against swscale's
# 0.48 ms of CPU for a 640 x 360 frame, measured once on the 2-core build machine; values within 3 levels of
# swscale's, mean 0.9, tests/test_media.py). Every other format (odd sizes, full range, BT.709 or other matrices,
# 10-bit, 4:2:2/4:4:4) goes through swscale, as before.
_FAST_YUV_SPACES = (2, 5, 6)  # AVCOL_SPC: unspecified, BT470BG, SMPTE170M (both BT.601)
_FAST_YUV_RANGES = (0, 1)  # AVCOL_RANGE: unspecified, MPEG (limited)


def frame_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded video frame as ``rgb uint8 [H, W, 3]`` (before :func:`upright`); see ``_FAST_YUV_SPACES``."""
    if (frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0
            and frame.colorspace in _FAST_YUV_SPACES and frame.color_range in _FAST_YUV_RANGES):
        import cv2  # lazy: `avaffect --help` imports this module and no OpenCV (tests/test_cli.py)

        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def probe(path: str | Path) -> MediaInfo:
    """Read the streams' headers (no full decode)."""
    path = Path(path)
    container = _open(path)
    try:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if container.duration is not None:
            duration = float(container.duration) / av.time_base
        else:
            duration = 0.0
        fps = width = height = num_frames = 0
        rotation = 0.0
        if video is not None:
            fps = _rate(video)
            width = int(video.codec_context.width or 0)
            height = int(video.codec_context.height or 0)
            rotation = _first_frame_rotation(container, video)
            if int(round(rotation / 90.0)) % 2:  # shown sideways: the displayed frame is height x width
                width, height = height, width
            num_frames = int(video.frames or 0)
            vdur = duration
            if video.duration is not None and video.time_base is not None:
                vdur = float(video.duration * video.time_base)
            if num_frames <= 0 and fps > 0:
                num_frames = int(round(vdur * fps))
        sample_rate = int(audio.codec_context.sample_rate or 0) if audio is not None else 0
        return MediaInfo(
            path=path,
            has_video=video is not None,
            has_audio=audio is not None,
            num_frames=num_frames,
            fps=float(fps),
            duration=duration,
            width=width,
            height=height,
            audio_sample_rate=sample_rate,
            start_time=_origin(container),
            rotation=rotation if video is not None else 0.0,
        )
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(path, f"cannot decode the file: {exc}", DECODE_FIX) from exc
    finally:
        container.close()


def video_frame_times(path: str | Path) -> np.ndarray:
    """Presentation times (seconds, float64 ``[N]``) of every video frame a player shows, read by demuxing the
    packets (no decoding, so cheap even for long videos). Times are relative to the file's origin, as in
    :func:`iter_video_frames`; packets without a timestamp get the nominal ``1/fps`` spacing.

    Packets the container's edit list cuts (an mp4's encoder-priming frames, flagged *discard* by the demuxer,
    with negative timestamps) are not frames: the decoder drops them, so the count equals what decoding
    yields and the first time is the first shown frame's."""
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(path, "has no video stream", NO_VIDEO_FIX)
        stream = container.streams.video[0]
        origin = _origin(container)
        time_base = stream.time_base or Fraction(1, 1)
        pts = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:  # the flush packet; frames the edit list cuts
                    continue
                pts.append(packet.pts)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(path, f"cannot read the video packets: {exc}", DECODE_FIX) from exc
        if not pts:
            raise MediaError(path, "cannot decode the video: it holds no frame", DECODE_FIX)
        if any(p is None for p in pts):
            fps = _rate(stream) or 25.0
            return np.arange(len(pts), dtype=np.float64) / fps
        return np.sort(np.asarray([pts_seconds(p, time_base) for p in pts])) - origin
    finally:
        container.close()


@contextmanager
def counted_decode_errors(report: dict) -> Iterator[None]:
    """Count FFmpeg's decoding errors of this thread inside the block into ``report["decode_errors"]`` (the
    messages it logs at error level and conceals: a damaged H.264 slice, a VP6 coefficient stream cut short, a
    container packet that does not match; the first few kept in ``report["decode_messages"]``). FFmpeg conceals
    such damage and decoding goes on, so without this a damaged file decodes silently. Outside the blocks FFmpeg's
    messages stay off, as before."""
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)
    logging.getLogger("libav").setLevel(logging.CRITICAL + 1)  # uncaptured ones (other threads) stay quiet
    report.setdefault("decode_errors", 0)
    report.setdefault("decode_messages", [])
    with av.logging.Capture(local=True) as logs:
        try:
            yield
        finally:
            errors = [m for level, _, m in logs if level <= av.logging.ERROR]
            report["decode_errors"] += len(errors)
            report["decode_messages"] = (report["decode_messages"] + [m.strip() for m in errors])[:5]


def frame_time(frame: av.VideoFrame, time_base: Fraction, origin: float, previous: float | None, fps: float) -> float:
    """A decoded frame's time on the file's clock (module docstring): ``pts * time_base - origin``; a frame without
    a timestamp comes ``1 / fps`` after the previous one (the first at 0)."""
    if frame.pts is None:
        return (previous + 1.0 / fps) if previous is not None else 0.0
    return pts_seconds(frame.pts, time_base) - origin


def pts_seconds(pts: int, time_base: Fraction) -> float:
    """``float(pts * time_base)``, the same float (an integer true division is correctly rounded, as is the
    conversion of the ``Fraction``) at a tenth of the cost: no ``Fraction`` built per frame."""
    return (pts * time_base.numerator) / time_base.denominator


def iter_video_frames(path: str | Path, threads: bool = True, report: dict | None = None
                      ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time_seconds, rgb uint8 [H, W, 3])`` per decoded frame, in presentation order.

    Memory stays at one frame, so this is the way to walk long videos. Times come from each
    frame's ``pts * time_base`` relative to the file's origin (module docstring). ``threads``: FFmpeg's own
    decoding threads (frame and slice threads, as many as cores); ``False``: one thread decodes (a caller whose own
    threads keep the cores busy). ``report``: FFmpeg's concealed decoding errors counted into it
    (:func:`counted_decode_errors`) when the decoding ends or stops.
    """
    if report is not None:
        with counted_decode_errors(report):
            yield from iter_video_frames(path, threads)
        return
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(path, "has no video stream", NO_VIDEO_FIX)
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        else:  # PyAV's default is slice threads, as many as cores: 1.2-1.4x the CPU time on H.264 (640 x 360)
            stream.codec_context.thread_count = 1
        origin = _origin(container)
        time_base = stream.time_base or Fraction(1, 1)
        fps = _rate(stream) or 25.0
        last: float | None = None
        try:
            for frame in container.decode(stream):
                t = last = frame_time(frame, time_base, origin, last, fps)
                yield t, upright(frame_rgb(frame), frame.rotation)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(path, f"cannot decode the video: {exc}", DECODE_FIX) from exc
    finally:
        container.close()


def prefetch(items: Iterable, depth: int = 8, stats: dict | None = None) -> Iterator:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer: decoding (PyAV
    releases the GIL) overlaps with the work done on the frames. An exception in the producer is raised in the
    consumer; closing the consumer stops the producer. ``stats``, when given, sums the seconds the producer spent
    making items (``produce_seconds``: e.g. decoding, not the time it waited on a full queue; and
    ``produce_cpu_seconds``, its thread's CPU time) and the seconds the consumer waited for them
    (``wait_seconds``): which side bounds the pair."""
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()
    done = object()
    st = stats if stats is not None else {}
    for key in ("produce_seconds", "produce_cpu_seconds", "wait_seconds"):
        st.setdefault(key, 0.0)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        cpu0 = time.thread_time()
        try:
            it = iter(items)
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                st["produce_seconds"] += time.perf_counter() - t0
                st["produce_cpu_seconds"] = time.thread_time() - cpu0
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None and stop.is_set():
                close()

    worker = threading.Thread(target=produce, name="avaffect-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            t0 = time.perf_counter()
            ok, item = q.get()
            st["wait_seconds"] += time.perf_counter() - t0
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5.0)


def read_video(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode every frame: ``(frames uint8 [N, H, W, 3] RGB, times float64 [N] seconds)``.

    Loads the whole video in memory; use :func:`iter_video_frames` for long videos.
    """
    frames: list[np.ndarray] = []
    times: list[float] = []
    for t, rgb in iter_video_frames(path):
        frames.append(rgb)
        times.append(t)
    if not frames:
        raise MediaError(path, "cannot decode the video: no frame could be decoded", DECODE_FIX)
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def iter_audio(path: str | Path, sample_rate: int = 16000) -> Iterator[np.ndarray]:
    """The first audio stream as float32 mono pieces at ``sample_rate`` Hz, in order: their concatenation is
    :func:`read_audio`'s waveform (sample 0 at the file's time origin: a stream that starts later is preceded by
    zeros, one that starts earlier is trimmed). Memory stays at one piece, so long files stream through it. The
    container is opened (and a missing audio stream raised) at the call, not at the first piece."""
    path = Path(path)
    container = _open(path)
    if not container.streams.audio:
        container.close()
        raise NoAudioStreamError(path, "has no audio stream", NO_AUDIO_FIX)
    pieces = _audio_pieces(path, container, int(sample_rate))
    weakref.finalize(pieces, container.close)  # closed even if no piece is ever asked for
    return pieces


class AudioPlacer:
    """Decoded audio frames of one stream turned into float32 mono pieces at ``sample_rate``, placed on the file's
    time origin (module docstring): the first piece is preceded by zeros when the stream starts after the origin,
    or trimmed when it starts before. :func:`iter_audio` and the live sources (:mod:`avaffect.livemedia`) share it,
    so a file read live gives the same waveform."""

    def __init__(self, origin: float, sample_rate: int) -> None:
        self.origin, self.sample_rate = float(origin), int(sample_rate)
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
        self.first_time: float | None = None  # the first decoded frame's time: where sample 0 of the stream sits
        self.skip: int | None = None  # samples still to trim at the start (set when the first piece comes out)
        self.given = 0

    def feed(self, frame: av.AudioFrame | None) -> list[np.ndarray]:
        """The pieces one decoded frame gives (``None``: flush the resampler at the end)."""
        if frame is not None and self.first_time is None and frame.time is not None:
            self.first_time = float(frame.time)
        out = []
        for res in self.resampler.resample(frame):
            out.extend(self._place(res.to_ndarray().reshape(-1).astype(np.float32, copy=False)))
        return out

    def _place(self, piece: np.ndarray) -> list[np.ndarray]:
        out = []
        if self.skip is None:
            start = self.first_time if self.first_time is not None else self.origin
            offset = int(round((start - self.origin) * self.sample_rate))
            self.skip = max(0, -offset)
            if offset > 0:
                out.append(np.zeros(offset, dtype=np.float32))
        if self.skip:
            cut = min(self.skip, len(piece))
            piece, self.skip = piece[cut:], self.skip - cut
        if len(piece):
            self.given += len(piece)
            out.append(piece)
        return out

    @property
    def started(self) -> bool:
        """Whether any sample came out."""
        return self.skip is not None


def _audio_pieces(path: Path, container, sample_rate: int) -> Iterator[np.ndarray]:
    try:
        placer = AudioPlacer(_origin(container), sample_rate)
        try:
            for frame in container.decode(container.streams.audio[0]):
                yield from placer.feed(frame)
            yield from placer.feed(None)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(path, f"cannot decode the audio: {exc}", DECODE_FIX) from exc
        if not placer.started:
            raise MediaError(path, "cannot decode the audio: no audio sample could be decoded", DECODE_FIX)
    finally:
        container.close()


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream to float32 mono ``[N]`` at ``sample_rate`` Hz (:func:`iter_audio`'s pieces,
    joined).

    Sample 0 sits at the file's time origin (module docstring): a stream that starts later is
    padded with zeros at the front, one that starts earlier is trimmed.
    """
    return np.ascontiguousarray(np.concatenate(list(iter_audio(path, sample_rate))))
