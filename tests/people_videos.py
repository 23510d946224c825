"""Videos of several people made from real and rendered faces, with the truth of who is where on every frame.

A scene is a function ``frame index -> [(source, x, y, w, h), ...]``: which source video is pasted where (its
frames resized to w x h). The sources loop when they are shorter than the scene. The audio is one source's own,
looped. ``Truth`` tells, for any point of any frame, which source is shown there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from avaffect.media import iter_video_frames, read_audio

Placement = tuple[int, int, int, int, int]  # source, x, y, w, h


@dataclass
class Truth:
    """Where each source is on each frame."""

    placements: list[list[Placement]]

    def source_at(self, frame: int, x: float, y: float) -> int | None:
        """The source shown at point (x, y) of ``frame`` (the last pasted wins), or ``None``."""
        found = None
        for src, px, py, w, h in self.placements[frame]:
            if px <= x < px + w and py <= y < py + h:
                found = src
        return found

    def visible(self, frame: int) -> set[int]:
        return {p[0] for p in self.placements[frame]}


def load_frames(path: Path) -> list[np.ndarray]:
    return [rgb for _, rgb in iter_video_frames(path)]


def compose(out: Path, sources: list[Path], scene: Callable[[int], list[Placement]], n_frames: int,
            size: tuple[int, int] = (640, 360), fps: int = 30, audio_from: int = 0,
            offsets: tuple[int, ...] = ()) -> Truth:
    """Write ``out`` (H.264 + AAC mp4) and return the truth of its frames. ``offsets``: frames each source starts
    into its own video (its loop shifted), so that two clips do not move in step."""
    frames = [load_frames(p) for p in sources]
    width, height = size
    placements = []
    with av.open(str(out), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"crf": "20", "preset": "ultrafast"}
        sr = 16000
        a = c.add_stream("aac", rate=sr)
        a.layout = "mono"
        for i in range(n_frames):
            canvas = np.full((height, width, 3), 40, np.uint8)
            layout = scene(i)
            for src, x, y, w, h in layout:
                shift = offsets[src] if src < len(offsets) else 0
                img = frames[src][(i + shift) % len(frames[src])]
                canvas[y:y + h, x:x + w] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            placements.append(layout)
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        wav = read_audio(sources[audio_from], sr)
        need = int(n_frames / fps * sr)
        wav = np.resize(wav, need).astype(np.float32)
        pts = 0
        for k in range(0, need, 1024):
            chunk = wav[None, k:k + 1024]
            af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = sr, pts, Fraction(1, sr)
            pts += chunk.shape[1]
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return Truth(placements)


def side_by_side_swap(n: int, width: int = 640, height: int = 360) -> Callable[[int], list[Placement]]:
    """Source 0 on the left, source 1 on the right; from a third to two thirds of the video the right one is
    shown larger (and the left one smaller)."""
    def scene(i: int) -> list[Placement]:
        big = n // 3 <= i < 2 * n // 3
        lw, rw = (200, 300) if big else (280, 240)
        return [(0, 10, (height - lw * 3 // 4) // 2, lw, lw * 3 // 4),
                (1, width - rw - 10, (height - rw * 3 // 4) // 2, rw, rw * 3 // 4)]
    return scene


def hard_cuts(n: int, order: tuple[int, ...] = (0, 1, 0), width: int = 640, height: int = 360,
              ) -> Callable[[int], list[Placement]]:
    """One source full frame at a time, hard cuts between equal shots in ``order``."""
    def scene(i: int) -> list[Placement]:
        shot = min(len(order) - 1, i * len(order) // n)
        return [(order[shot], 0, 0, width, height)]
    return scene


def leave_and_return(n: int, width: int = 640, height: int = 360) -> Callable[[int], list[Placement]]:
    """Source 0 on the left all along; source 1 on the right, gone for the middle third."""
    def scene(i: int) -> list[Placement]:
        out = [(0, 20, 60, 280, 210)]
        if not n // 3 <= i < 2 * n // 3:
            out.append((1, width - 300, 60, 280, 210))
        return out
    return scene


def crossing(n: int) -> Callable[[int], list[Placement]]:
    """Source 0 walks from left to right in front of source 1, who walks from right to left behind it: source 1 is
    hidden while they cross, then comes back."""
    def scene(i: int) -> list[Placement]:
        f = i / max(1, n - 1)
        return [(1, int(390 - f * 380), 80, 240, 180), (0, int(10 + f * 380), 60, 240, 180)]
    return scene


def side_by_side(width: int = 640, height: int = 360) -> Callable[[int], list[Placement]]:
    """Source 0 on the left, source 1 on the right, equal sizes, all along."""
    return lambda i: [(0, 10, 60, 300, 225), (1, width - 310, 60, 300, 225)]


def purity(boxes: np.ndarray, truth: Truth, frame_of_step: np.ndarray) -> list[tuple[int | None, float, int]]:
    """Per person trace (``boxes [P, T, 4]``): ``(the source it mostly follows, the fraction of its on-screen
    steps on that source, its on-screen steps)``."""
    out = []
    for b in boxes:
        seen = []
        for t in np.flatnonzero(np.isfinite(b[:, 0])):
            cx, cy = (b[t, 0] + b[t, 2]) / 2, (b[t, 1] + b[t, 3]) / 2
            seen.append(truth.source_at(int(frame_of_step[t]), cx, cy))
        if not seen:
            out.append((None, 0.0, 0))
            continue
        values, counts = np.unique([-1 if s is None else s for s in seen], return_counts=True)
        best = int(np.argmax(counts))
        out.append((None if values[best] < 0 else int(values[best]), counts[best] / len(seen), len(seen)))
    return out
