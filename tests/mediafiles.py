"""Small media files written with PyAV for tests (one writer for every test module)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SR = 16000


def write_test_video(path: Path, n_frames: int, fps: int = 25, audio: bool = True, width: int = 64,
                     height: int = 48, tone_hz: float = 440.0) -> Path:
    """An mpeg4 video of ``n_frames`` grey frames whose level steps with the frame index, and, with
    ``audio``, a mono AAC track at 16 kHz (a sine at ``tone_hz``) lasting as long as the video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        astream = c.add_stream("aac", rate=SR, layout="mono") if audio else None
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), (i * 8) % 256, np.uint8), format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if astream is not None:
            write_tone(c, astream, n_frames / fps, tone_hz, 0.5)
    return path


def write_tone(container, astream, seconds: float, tone_hz: float = 440.0, level: float = 0.5,
               chunk: int = 1024) -> None:
    """Encode and mux a mono sine of ``seconds`` at ``SR`` into ``astream`` in frames of ``chunk`` samples (mp3
    takes 1152), flushing it."""
    n = int(round(seconds * SR))
    x = (level * np.sin(2 * np.pi * tone_hz * np.arange(n) / SR)).astype(np.float32)
    for s in range(0, n, chunk):
        af = av.AudioFrame.from_ndarray(x[None, s: s + chunk], format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = SR, s, Fraction(1, SR)
        for p in astream.encode(af):
            container.mux(p)
    for p in astream.encode(None):
        container.mux(p)


def write_primed_mp4(path: Path, n_shown: int, primed: int = 3, fps: int = 24, audio: bool = True,
                     start_frame: int = 0) -> Path:
    """An H.264 mp4 with B-frames whose first ``primed`` frames carry negative timestamps (encoder priming):
    the mp4 muxer writes an edit list that cuts them, so a player shows ``n_shown`` frames. Frame ``k`` shown
    has the grey level ``8 * (k + primed)``. ``start_frame`` shifts the shown frames' timestamps (a video
    that starts after its audio). Needs libx264 (the caller skips without it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tb = Fraction(1, fps)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.codec_context.options = {"bf": "2", "g": "12"}
        astream = c.add_stream("aac", rate=SR, layout="mono") if audio else None
        for i in range(-primed, n_shown):
            level = (8 * (i + primed)) % 256
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i + start_frame, tb
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if astream is not None:
            write_tone(c, astream, (n_shown + start_frame) / fps, 440.0, 0.3)
    return path
