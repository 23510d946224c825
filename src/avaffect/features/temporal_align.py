"""Resample feature rows with their own frame times onto a recording's timeline (docs/design.md §2).

Every extractor states the time of each of its rows (100 Hz log-mel frames, 0.96 s VGGish
patches, ...) and is aligned by those times, never by index.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONTEXTS", "window_bounds", "align_to_timeline"]

CONTEXTS = ("causal", "forward", "centered")


def window_bounds(timeline: np.ndarray, window: float, context: str) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive ``(lo, hi)`` bounds of each step's window.

    ``causal``: ``[t - window, t]`` (the window ends at the step); ``forward``: ``[t, t + window]``;
    ``centered``: ``[t - window/2, t + window/2]``.
    """
    t = np.asarray(timeline, dtype=np.float64)
    if window < 0:
        raise ValueError(f"window must be >= 0 seconds, got {window}")
    if context == "causal":
        return t - window, t
    if context == "forward":
        return t, t + window
    if context == "centered":
        return t - window / 2.0, t + window / 2.0
    raise ValueError(f"unknown context {context!r}; use one of {', '.join(CONTEXTS)}")


ALIGN_COLUMNS = 16  # columns per prefix-sum pass of align_to_timeline (its memory: F x 16 doubles, not F x d)


def align_to_timeline(
    values: np.ndarray,
    value_times: np.ndarray,
    timeline: np.ndarray,
    window: float,
    context: str = "centered",
) -> np.ndarray:
    """Average the rows of ``values [F, d]`` whose time falls in each timeline step's window.

    Returns ``[T, d]`` float64. A step whose window holds no row takes the row nearest in time
    (on a tie, the earlier one). Vectorised: prefix sums plus ``searchsorted``, O(F d + T d).
    ``value_times`` need not be sorted. 1-D ``values`` are treated as ``[F, 1]`` and give ``[T, 1]``.
    """
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim == 1:
        vals = vals[:, None]
    vt = np.asarray(value_times, dtype=np.float64).reshape(-1)
    tl = np.asarray(timeline, dtype=np.float64).reshape(-1)
    if vals.ndim != 2 or len(vals) != len(vt):
        raise ValueError(f"values {vals.shape} and value_times {vt.shape} do not match")
    if len(vt) == 0:
        raise ValueError("no feature rows to align (the media is shorter than one analysis frame?)")
    if len(tl) == 0:
        return np.zeros((0, vals.shape[1]), dtype=np.float64)
    if np.any(np.diff(vt) < 0):
        order = np.argsort(vt, kind="stable")
        vt, vals = vt[order], vals[order]

    lo, hi = window_bounds(tl, window, context)
    left = np.searchsorted(vt, lo, side="left")  # first row with time >= lo
    right = np.searchsorted(vt, hi, side="right")  # first row with time > hi
    counts = right - left

    safe = np.maximum(counts, 1)[:, None]
    out = np.empty((len(tl), vals.shape[1]), dtype=np.float64)
    prefix = np.zeros((len(vals) + 1, min(ALIGN_COLUMNS, vals.shape[1])), dtype=np.float64)
    for c in range(0, vals.shape[1], ALIGN_COLUMNS):  # a few columns at a time: the prefix sums stay small
        block = vals[:, c:c + ALIGN_COLUMNS]
        pre = prefix[:, :block.shape[1]]
        np.cumsum(block, axis=0, out=pre[1:])
        out[:, c:c + block.shape[1]] = (pre[right] - pre[left]) / safe

    empty = counts <= 0
    if np.any(empty):
        t = tl[empty]
        idx = np.searchsorted(vt, t, side="left")
        after = np.clip(idx, 0, len(vt) - 1)
        before = np.clip(idx - 1, 0, len(vt) - 1)
        take_before = np.abs(t - vt[before]) <= np.abs(vt[after] - t)
        out[empty] = vals[np.where(take_before, before, after)]
    return out
