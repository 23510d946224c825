"""Windows of length L with hop, and stitching of window predictions back onto a recording (docs/design.md §2).

Window starts are ``0, hop, 2*hop, ...`` while the window fits, and the last window is aligned to the
end of the recording (start ``T - L``) so every step is covered. A recording shorter than L gives one
window starting at 0, padded at the end with mask 0. Stitching averages, per step, the predictions of
every window that covers it (padded steps never contribute).
"""

from __future__ import annotations

import numpy as np


def window_starts(num_steps: int, length: int, hop: int) -> np.ndarray:
    """Start indices of the windows over ``num_steps`` steps (end-aligned last window)."""
    if length <= 0 or hop <= 0:
        raise ValueError(f"window length and hop must be positive, got L={length}, hop={hop}")
    if num_steps <= 0:
        return np.zeros(0, dtype=np.int64)
    if num_steps <= length:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, num_steps - length + 1, hop))
    if starts[-1] != num_steps - length:
        starts.append(num_steps - length)
    return np.asarray(starts, dtype=np.int64)


def cut_window(array: np.ndarray, start: int, length: int, pad_value: float = 0.0) -> np.ndarray:
    """``array[start:start+length]`` along axis 0, padded with ``pad_value`` to ``length`` steps."""
    piece = np.asarray(array[start:start + length])
    if len(piece) == length:
        return piece
    pad = np.full((length - len(piece),) + piece.shape[1:], pad_value, dtype=piece.dtype)
    return np.concatenate([piece, pad], axis=0)


def window_mask(num_steps: int, start: int, length: int) -> np.ndarray:
    """[length] bool: which steps of the window lie inside the recording."""
    return np.arange(start, start + length) < num_steps


class Stitcher:
    """:func:`stitch` one batch of windows at a time: per-step sums (float64) and window counts of one recording, so
    that predictions need not be kept until the last window arrives. Windows added in the same order give the same
    result as :func:`stitch`, to the bit (it is the same computation)."""

    def __init__(self, num_steps: int, k: int) -> None:
        self.num_steps = int(num_steps)
        self.total = np.zeros((self.num_steps, k))
        self.count = np.zeros(self.num_steps)

    def add(self, window_preds: np.ndarray, starts: np.ndarray) -> Stitcher:
        """Add ``[W, L, K]`` (or ``[W, L]``) window predictions starting at ``starts``."""
        window_preds = np.asarray(window_preds, dtype=np.float64)
        if window_preds.ndim == 2:
            window_preds = window_preds[..., None]
        num_windows, length, _ = window_preds.shape
        if len(starts) != num_windows:
            raise ValueError(f"{num_windows} window predictions but {len(starts)} starts")
        for w, start in enumerate(starts):
            n = min(length, self.num_steps - int(start))
            self.total[start:start + n] += window_preds[w, :n]
            self.count[start:start + n] += 1
        return self

    def result(self) -> np.ndarray:
        """``[num_steps, K]``: the mean prediction per step; NaN where no window covers it."""
        out = np.full(self.total.shape, np.nan)
        covered = self.count > 0
        out[covered] = self.total[covered] / self.count[covered, None]
        return out


def stitch(window_preds: np.ndarray, starts: np.ndarray, num_steps: int) -> np.ndarray:
    """Average overlapping window predictions ``[W, L, K]`` onto ``[num_steps, K]``.

    Steps covered by no window (impossible with :func:`window_starts`) are NaN.
    """
    window_preds = np.asarray(window_preds, dtype=np.float64)
    k = window_preds.shape[2] if window_preds.ndim == 3 else 1
    return Stitcher(num_steps, k).add(window_preds, starts).result()
