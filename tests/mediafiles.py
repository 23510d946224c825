"""Small media and annotation files for tests and benchmarks (one writer of each kind for every module): tiny
videos (with or without audio, odd sizes, variable frame rates, edit lists, rotation), wav / mp3, face-crop jpgs,
Aff-Wild2 / manifest / RECOLA label layouts, and ways to damage a file."""

from __future__ import annotations

import csv
import math
import struct
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SR = 16000
ANN = Path("annotations") / "VA_Estimation_Challenge"


# ------------------------------------------------------------------------------------------------------- media


def write_test_video(path: Path, n_frames: int, fps: int = 25, audio: bool = True, width: int = 64,
                     height: int = 48, tone_hz: float = 440.0, *, codec: str = "mpeg4", pix_fmt: str = "yuv420p",
                     pts_ms: list[int] | None = None, audio_seconds: float | None = None, level: float = 0.5,
                     static: bool = False, audio_bit_rate: int | None = None) -> Path:
    """A video of ``n_frames`` grey frames whose level steps with the frame index (one level when ``static``) and,
    with ``audio``, a mono AAC track at 16 kHz (a sine at ``tone_hz`` of amplitude ``level``) lasting as long as
    the video (or ``audio_seconds``). ``pts_ms``: the frames' times in milliseconds (a variable frame rate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        if pts_ms is not None:
            vs.codec_context.time_base = vs.time_base = Fraction(1, 1000)
        astream = c.add_stream("aac", rate=SR, layout="mono") if audio else None
        if astream is not None and audio_bit_rate:
            astream.bit_rate = audio_bit_rate
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 100 if static else (i * 8) % 256,
                                                       np.uint8), format="rgb24")
            frame.pts = i
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if astream is not None:
            seconds = (pts_ms[-1] / 1000 + 1 / fps) if pts_ms is not None else n_frames / fps
            write_tone(c, astream, audio_seconds if audio_seconds is not None else seconds, tone_hz, level)
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


def write_hollow_mp4(path: Path) -> Path:
    """An mp4 container with a video stream's header and not a single frame."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    return path


def rotate_mp4(src: Path, dst: Path) -> Path:
    """``src`` with its video track header's display matrix set to a 90 degree turn (a phone held upright)."""
    data = bytearray(src.read_bytes())
    turned = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    patched, at = False, data.find(b"tkhd")
    while at >= 0:
        matrix = at - 4 + (52 if data[at + 4] == 1 else 40) + 8  # the box's size field, then its header fields
        if all(struct.unpack(">II", data[matrix + 36: matrix + 44])):  # the video track (audio has 0 x 0)
            data[matrix: matrix + 36] = turned
            patched = True
        at = data.find(b"tkhd", at + 1)
    if not patched:
        raise RuntimeError(f"{src}: no video track header found")
    dst.write_bytes(bytes(data))
    return dst


def write_wav(path: Path, seconds: float, silent: bool = False) -> Path:
    """A mono 16-bit wav at ``SR`` (a 220 Hz sine, or zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * SR)
    x = np.zeros(n) if silent else 0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / SR)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


def write_mp3(path: Path, seconds: float) -> Path:
    """A mono mp3 (a 440 Hz sine): an audio-only file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        write_tone(c, c.add_stream("mp3", rate=SR, layout="mono"), seconds, level=0.3, chunk=1152)
    return path


def write_jpgs(folder: Path, indices) -> None:
    """Face-crop files ``00001.jpg`` ... for the 0-based ``indices``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))
    for i in indices:
        (folder / f"{i + 1:05d}.jpg").write_bytes(buf.tobytes())


def decoded_times(path: Path) -> list[float] | None:
    """Times of the frames PyAV decodes from the first video stream (None when it cannot be decoded)."""
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            return [float(f.pts * f.time_base) if f.pts is not None else math.nan for f in c.decode(stream)]
    except Exception:  # noqa: BLE001 - anything undecodable
        return None


def decoded_frames(path: Path) -> int:
    """How many frames PyAV decodes from the first video stream."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


# ------------------------------------------------------------------------------------------------------- damage


def write_random_bytes(path: Path, n: int = 4096, seed: int = 0) -> Path:
    """``n`` random bytes (a file that is no media, whatever its name says)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def truncate(path: Path, fraction: float) -> Path:
    """Keep the first ``fraction`` of the file's bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def overwrite_middle(path: Path, n: int = 600, seed: int = 1) -> Path:
    """Overwrite ``n`` bytes in the middle of the file with random ones."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid: mid + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def pad_to_size(path: Path, size: int) -> bool:
    """Append an mp4 ``free`` box so that ``path`` has exactly ``size`` bytes (False when it is already too big)."""
    missing = size - path.stat().st_size
    if missing < 8:
        return missing == 0
    with open(path, "ab") as fh:
        fh.write(struct.pack(">I", missing) + b"free" + bytes(missing - 8))
    return True


# ------------------------------------------------------------------------------------------------------- labels


def ann_text(n: int, row=None) -> str:
    """An Aff-Wild2 ``valence,arousal`` annotation of ``n`` rows; ``row(i)`` may replace row ``i``'s text."""
    lines = []
    for i in range(n):
        text = row(i) if row is not None else None
        lines.append(text if text is not None else f"{0.5 * math.sin(i / 5):.3f},{0.4 * math.cos(i / 7):.3f}")
    return "valence,arousal\n" + "\n".join(lines) + "\n"


def time_labels(times: list[float]) -> str:
    """A ``time,valence,arousal`` label file, one row per time."""
    return "time,valence,arousal\n" + "".join(f"{t:.3f},0.1,0.2\n" for t in times)


def aff_root(folder: Path, a_text: str | None = None, frames: int = 20, b: bool = True,
             videos: bool = True) -> Path:
    """A tiny Aff-Wild2 layout ``folder/aff``: train recording ``a`` and (``b``) validation recording ``b``, with
    ``frames``-frame videos (``videos``)."""
    root = folder / "aff"
    for split in ("Train_Set", "Validation_Set"):
        (root / ANN / split).mkdir(parents=True)
    (root / ANN / "Train_Set" / "a.txt").write_text(a_text if a_text is not None else ann_text(frames))
    names = ["a", "b"] if b else ["a"]
    if b:
        (root / ANN / "Validation_Set" / "b.txt").write_text(ann_text(frames))
    for name in names if videos else []:
        write_test_video(root / "videos" / f"{name}.mp4", frames)
    return root


def write_manifest(root: Path, rows: list[list[str]]) -> Path:
    """``root/manifest.csv`` holding ``rows`` (the header first); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root


def manifest_root(folder: Path, rows: list[str] | None = None,
                  header: str = "recording,video,audio,labels,split,subject",
                  labels: dict[str, str] | None = None, frames: int = 30) -> Path:
    """``folder/man/manifest.csv`` with clips c1 (train) and c2 (validation): ``frames``-frame videos and frame
    labels (``labels``: other label texts by clip), ``rows``: other manifest rows under ``header``."""
    root = folder / "man"
    for name in ("c1", "c2"):
        write_test_video(root / "videos" / f"{name}.mp4", frames)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for name, text in (labels if labels is not None else {"c1": ann_text(frames), "c2": ann_text(frames)}).items():
        (root / "labels" / f"{name}.csv").write_text(text)
    rows = rows if rows is not None else ["c1,videos/c1.mp4,,labels/c1.csv,train,s1",
                                          "c2,videos/c2.mp4,,labels/c2.csv,validation,s2"]
    (root / "manifest.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root


def arff(name: str, values: list[str], times: list[float] | None = None, step: float = 0.04) -> str:
    """A RECOLA gold-standard arff of ``values`` (at ``times``, else every ``step`` seconds)."""
    times = times if times is not None else [i * step for i in range(len(values))]
    lines = ["@relation GoldStandard", "@attribute Instance_name string", "@attribute frameTime numeric",
             "@attribute GoldStandard numeric", "@data"]
    lines += [f"'{name}',{t:.2f},{v}" for t, v in zip(times, values)]
    return "\n".join(lines) + "\n"


def recola_root(folder: Path, n: int = 51) -> Path:
    """A tiny RECOLA layout ``folder/recola``: recordings train_1 and dev_1 (wav, silent video, ``n`` gold rows)."""
    root = folder / "recola"
    for name in ("train_1", "dev_1"):
        write_wav(root / "recordings_audio" / f"{name}.wav", (n - 1) * 0.04)
        write_test_video(root / "recordings_video" / f"{name}.mp4", n - 1, width=32, height=32, audio=False)
        for dim in ("valence", "arousal"):
            p = root / "ratings_gold_standard" / dim / f"{name}.arff"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(arff(name, [f"{0.3 * math.sin(i / 4):.4f}" for i in range(n)]))
    return root


def reencode_video_only(src: Path, dst: Path, transform=None, fps: int = 25) -> Path:
    """``src``'s frames re-encoded as H.264 in ``dst`` with no audio track, each frame through ``transform``
    (``rgb -> rgb``) first when given."""
    from avaffect.media import iter_video_frames

    out = av.open(str(dst), "w")
    stream = None
    for _, rgb in iter_video_frames(src):
        if stream is None:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
        frame = transform(rgb) if transform is not None else rgb
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
    out.mux(stream.encode(None))
    out.close()
    return dst
