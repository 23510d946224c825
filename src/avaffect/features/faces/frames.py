"""Frames onto a timeline: which decoded frame serves which timeline steps (the face pipeline and the people pass
process only those frames)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

__all__ = ["assign_frames"]


def assign_frames(
    frames: Iterable[tuple[float, np.ndarray]], times: np.ndarray | None, max_gap_frames: float
) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """Yield ``(frame_time, rgb, step indices)`` for each frame nearest to at least one step.

    With ``times=None`` every frame is its own step (indices 0, 1, ...). Steps farther than
    ``max_gap_frames`` frame intervals from their nearest frame are never yielded.
    """
    if times is None:
        for i, (t, rgb) in enumerate(frames):
            yield float(t), rgb, np.array([i])
        return
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    n = len(order)
    j = 0
    prev: tuple[float, np.ndarray] | None = None
    dt = math.inf

    def take(frame_t: float, bound: float, interval: float) -> np.ndarray:
        nonlocal j
        k = int(np.searchsorted(sorted_times, bound, side="right"))
        idx = np.arange(j, max(j, k))
        j = max(j, k)
        near = np.abs(sorted_times[idx] - frame_t) <= max_gap_frames * interval
        return order[idx[near]]

    for t, rgb in frames:
        t = float(t)
        if prev is not None:
            step = t - prev[0]
            if step > 0:
                dt = min(dt, step)  # the frame interval: the shortest seen, so a hole does not widen it
            steps = take(prev[0], (prev[0] + t) / 2.0, dt)
            if len(steps):
                yield prev[0], prev[1], steps
            if j >= n:
                return
        prev = (t, rgb)
    if prev is not None and j < n:
        steps = take(prev[0], math.inf, dt)
        if len(steps):
            yield prev[0], prev[1], steps
