"""Live sources: a capture device, a network stream, a container on stdin, or a file read at its own pace, decoded
by PyAV (FFmpeg) in a background thread as the data arrives.

One container, one clock: the video frames and the audio of a live source come from the same container, and their
times follow :mod:`avaffect.media`'s rule (``pts * time_base`` minus the container's origin, audio sample 0 at the
origin), so a file read live gives exactly the frames, times and waveform that ``predict`` reads from it. A camera
and a microphone that FFmpeg opens as two inputs (``v4l2`` + ``alsa``) are muxed into one container first, e.g.::

    ffmpeg -f v4l2 -i /dev/video0 -f alsa -i default -c:v libx264 -preset ultrafast -tune zerolatency \\
           -c:a aac -f matroska - | avaffect live CKPT -

Reported, never a hang or a traceback: a source that cannot be opened (:class:`~avaffect.errors.MediaError` with
the fix), packets that fail to decode (counted, skipped), frames whose time goes backwards (counted, skipped), a
source that stalls (no packet for ``stall_timeout`` seconds: the stream is ended there, with the reason), and the
end of the stream.
"""

from __future__ import annotations

import collections
import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avaffect.errors import MediaError
from avaffect.media import AudioPlacer, _origin, _rate, frame_time, pts_seconds

__all__ = ["DEVICE_FORMATS", "NETWORK_SCHEMES", "LiveFrame", "LiveStats", "LiveSource", "describe_source",
           "stream_file"]

#: FFmpeg input formats of capture devices, written ``FORMAT:DEVICE`` (``v4l2:/dev/video0``, ``avfoundation:0:0``,
#: ``dshow:video=Integrated Camera``; ``lavfi:testsrc2=rate=30`` for FFmpeg's test sources)
DEVICE_FORMATS = ("v4l2", "alsa", "pulse", "avfoundation", "dshow", "gdigrab", "x11grab", "kmsgrab", "lavfi")
#: URL schemes opened as network streams (FFmpeg's read timeout applies: a silent server ends the stream)
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp", "http", "https", "hls")

OPEN_FIX = ("check the source: a file path, '-' for a container on stdin, a URL (rtsp://, udp://, srt://, http://, "
            "...) or FORMAT:DEVICE for a capture device (v4l2:/dev/video0; see `avaffect live --help`)")


@dataclass
class LiveFrame:
    """One decoded video frame: ``t`` seconds on the source's clock (``media``'s origin), the frame itself
    (converted to RGB by the consumer: frames it drops are never converted), and ``arrived``, the
    ``time.monotonic()`` at which it was decoded (for a file read with ``realtime``, when it was due)."""

    t: float
    frame: av.VideoFrame
    arrived: float


@dataclass
class LiveStats:
    """What the reader saw: packets and frames, decode errors, frames out of time order, and why it ended."""

    video_frames: int = 0
    audio_seconds: float = 0.0
    decode_errors: int = 0
    out_of_order: int = 0
    buffer_dropped: int = 0
    ended: str = ""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"video_frames": self.video_frames, "audio_seconds": round(self.audio_seconds, 3),
                "decode_errors": self.decode_errors, "out_of_order": self.out_of_order,
                "buffer_dropped": self.buffer_dropped, "ended": self.ended, "errors": self.errors[:10]}


def describe_source(source: str) -> tuple[str, str | None, str]:
    """``(what to open, FFmpeg input format or None, kind)`` of a SOURCE argument; kind is ``stdin``, ``device``,
    ``network`` or ``file``."""
    if source == "-":
        return source, None, "stdin"
    head, sep, rest = source.partition(":")
    if sep and head in DEVICE_FORMATS:
        return rest, head, "device"
    if sep and head.lower() in NETWORK_SCHEMES and rest.startswith("//"):
        return source, None, "network"
    return source, None, "file"


class LiveSource:
    """A live source read in a background thread (module docstring). ``realtime``: a file is delivered at its own
    frame rate, as if it were live (the other kinds arrive at their own pace anyway). ``sample_rate``: the audio's
    rate (mono float32). ``buffer_s``: at most this many seconds of decoded frames wait for the consumer; older
    ones are dropped by the reader (``buffer_dropped``), so a consumer that stops never makes memory grow. A file
    read without ``realtime`` is not live: the reader then waits for the consumer (:attr:`paced_by_consumer`).

    Use: :meth:`open` (raises :class:`~avaffect.errors.MediaError`), then :meth:`next_frame` and :meth:`take_audio`
    from the consumer's thread, :meth:`stop` from anywhere (e.g. a signal handler)."""

    END = object()
    FILE_DEPTH = 32  # frames decoded ahead of the consumer for a file read as fast as it can go

    def __init__(self, source: str, *, realtime: bool = False, sample_rate: int = 16000, stall_timeout: float = 10.0,
                 buffer_s: float = 10.0, options: dict[str, str] | None = None) -> None:
        self.source, self.realtime, self.sample_rate = source, realtime, int(sample_rate)
        self.stall_timeout, self.buffer_s = float(stall_timeout), float(buffer_s)
        self.options = dict(options or {})
        self.target, self.format, self.kind = describe_source(source)
        # a file without realtime is not live: the reader waits for the consumer instead of dropping frames
        self.paced_by_consumer = self.kind == "file" and not realtime
        self.stats = LiveStats()
        self.container = None
        self.fps = 0.0
        self.has_audio = self.has_video = False
        self.width = self.height = 0
        self._frames: collections.deque[LiveFrame] = collections.deque()
        self._audio: list[np.ndarray] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._done = False
        self._last_data = time.monotonic()
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return "stdin" if self.kind == "stdin" else self.source

    def open(self) -> LiveSource:
        """Open the source and start reading."""
        if self.kind == "file":
            path = Path(self.target)
            if not path.exists():
                raise MediaError(path, "cannot open the source: no such file", OPEN_FIX)
            if path.is_dir():
                raise MediaError(path, "cannot open the source: it is a folder", OPEN_FIX)
        options = dict(self.options)
        if self.kind == "network":  # FFmpeg's own read timeout (microseconds): a silent server ends the read
            options.setdefault("rw_timeout", str(int(self.stall_timeout * 1e6)))
            if self.target.startswith("rtsp"):
                options.setdefault("timeout", str(int(self.stall_timeout * 1e6)))
        try:
            if self.kind == "stdin":  # FFmpeg reads fd 0 itself: no Python file (whose lock a blocked read would
                # hold at exit) between the pipe and the demuxer
                self.container = av.open("pipe:0", mode="r", options=options)
            else:
                self.container = av.open(self.target, mode="r", format=self.format, options=options)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(Path(self.label), f"cannot open the live source: {exc}", OPEN_FIX) from None
        c = self.container
        if not c.streams.video:
            c.close()
            raise MediaError(Path(self.label), "the source has no video stream",
                             "live needs a video stream with the face in it (for a device, check FORMAT:DEVICE)")
        video = c.streams.video[0]
        self.has_video, self.has_audio = True, bool(c.streams.audio)
        self.fps = _rate(video) or 25.0
        self.width, self.height = int(video.codec_context.width or 0), int(video.codec_context.height or 0)
        self._thread = threading.Thread(target=self._read, name="avaffect-live-source", daemon=True)
        self._thread.start()
        return self

    # ------------------------------------------------------------------------------------------------ the reader

    def _read(self) -> None:
        c = self.container
        video = c.streams.video[0]
        audio = c.streams.audio[0] if self.has_audio else None
        origin = _origin(c)
        vbase = video.time_base or Fraction(1, 1)
        placer = AudioPlacer(origin, self.sample_rate) if audio is not None else None
        last_t: float | None = None
        clock0: float | None = None  # realtime: monotonic time of media time t0
        t0 = 0.0
        reason = "the stream ended"
        streams = [s for s in (video, audio) if s is not None]
        try:
            for packet in c.demux(streams):
                if self._stop.is_set():
                    reason = "stopped"
                    break
                self._last_data = time.monotonic()  # (an empty packet at the end flushes the decoder's last frames)
                if self.realtime and packet.pts is not None and packet.time_base is not None:
                    pt = pts_seconds(packet.pts, packet.time_base) - origin
                    if clock0 is None:
                        clock0, t0 = time.monotonic(), pt
                    delay = clock0 + (pt - t0) - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        reason = "stopped"
                        break
                try:
                    frames = packet.decode()
                except (av.FFmpegError, ValueError) as exc:
                    self.stats.decode_errors += 1
                    if len(self.stats.errors) < 10:
                        self.stats.errors.append(str(exc))
                    continue
                if packet.stream is video:
                    for frame in frames:
                        t = frame_time(frame, vbase, origin, last_t, self.fps)
                        if last_t is not None and t <= last_t:
                            self.stats.out_of_order += 1
                            continue
                        last_t = t
                        self._push_frame(LiveFrame(t, frame, time.monotonic()))
                elif placer is not None:
                    for frame in frames:
                        self._push_audio(placer.feed(frame))
            else:
                if placer is not None:
                    self._push_audio(placer.feed(None))
        except (av.FFmpegError, OSError, ValueError) as exc:
            reason = f"the source failed: {exc}"
        finally:
            with self._lock:
                if not self.stats.ended:
                    self.stats.ended = reason
                self._done = True
                self._lock.notify_all()

    def _push_frame(self, item: LiveFrame) -> None:
        with self._lock:
            while self.paced_by_consumer and len(self._frames) >= self.FILE_DEPTH and not self._stop.is_set():
                self._lock.wait(0.1)  # a file read as fast as it can go: wait for the consumer, drop nothing
            self._frames.append(item)
            self.stats.video_frames += 1
            while len(self._frames) > 1 and item.arrived - self._frames[0].arrived > self.buffer_s:
                self._frames.popleft()
                self.stats.buffer_dropped += 1
            self._lock.notify_all()

    def _push_audio(self, pieces: list[np.ndarray]) -> None:
        if pieces:
            with self._lock:
                self._audio.extend(pieces)
                self.stats.audio_seconds += sum(len(p) for p in pieces) / self.sample_rate

    # ------------------------------------------------------------------------------------------- the consumer

    def next_frame(self, timeout: float) -> LiveFrame | object | None:
        """The next frame; ``None`` when none came within ``timeout`` seconds; :attr:`END` once the stream has
        ended (or stalled: no data for ``stall_timeout`` seconds, ``stats.ended`` says so) and every frame was
        taken."""
        with self._lock:
            if not self._frames and not self._done:
                self._lock.wait(timeout)
            if self._frames:
                item = self._frames.popleft()
                self._lock.notify_all()
                return item
            if self._done or self._stop.is_set():  # ended, or stopped (the reader may sit in a blocking read)
                return self.END
            if time.monotonic() - self._last_data > self.stall_timeout:
                self.stats.ended = f"the source stalled: no data for {self.stall_timeout:g} s"
                self._done = True
                self._stop.set()
                return self.END
            return None

    def take_audio(self) -> list[np.ndarray]:
        """The audio pieces received since the last call."""
        with self._lock:
            out, self._audio = self._audio, []
            return out

    def stop(self) -> None:
        """Stop reading (the frames already decoded are still handed out)."""
        with self._lock:
            if not self.stats.ended:
                self.stats.ended = "stopped"
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if self._thread is not None and not self._thread.is_alive() and self.container is not None:
            self.container.close()


def stream_file(src: str | Path, dst, realtime: bool = True, stop_after: float | None = None,
                hold: threading.Event | None = None, on_start: Callable[[float], None] | None = None) -> None:
    """Write ``src``'s audio and video packets (no re-encoding) to ``dst`` (a path, an FFmpeg URL such as
    ``udp://127.0.0.1:5000``, or a writable binary file such as a subprocess's stdin) as a live Matroska stream: in
    time order across the streams (a file may store seconds of audio ahead of its video), each packet flushed, in
    short clusters, and with ``realtime`` at the pace of its own timestamps. What ``ffmpeg -re -i FILE -c copy -f
    matroska -live 1 -cluster_time_limit 100 -flush_packets 1 -`` does; the tests and
    ``benchmarks/live_latency.py`` feed ``avaffect live`` with it. ``stop_after``: stop writing after that many
    media seconds, leaving ``dst`` open (a stalled source) until ``hold`` is set; ``on_start(monotonic)``: called
    with the clock time that media time 0 is paced to."""
    inp = av.open(str(src))
    stalled = False
    out = av.open(str(dst) if isinstance(dst, Path) else dst, "w", format="matroska", buffer_size=4096,
                  options={"live": "1", "cluster_time_limit": "100", "flush_packets": "1"})
    try:
        streams = (*inp.streams.video, *inp.streams.audio)
        omap = {s.index: out.add_stream_from_template(s) for s in streams}
        per_stream: dict[int, list] = {s.index: [] for s in streams}
        for packet in inp.demux():
            if packet.size and packet.stream.index in per_stream:  # (not the demuxer's flush packets)
                per_stream[packet.stream.index].append(packet)
        origin = _origin(inp)

        def at(packet) -> float:
            ts = packet.dts if packet.dts is not None else packet.pts
            return pts_seconds(ts, packet.time_base) - origin if ts is not None else 0.0

        start = time.monotonic()
        if on_start is not None:
            on_start(start)
        for packet in heapq.merge(*per_stream.values(), key=at):
            t = at(packet)
            if stop_after is not None and t > stop_after:
                stalled = True
                if hold is not None:
                    hold.wait(60)
                return
            if realtime:
                time.sleep(max(0.0, start + t - time.monotonic()))
            packet.stream = omap[packet.stream.index]
            out.mux(packet)
    finally:
        if not stalled:
            out.close()
        inp.close()
