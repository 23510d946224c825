"""Windows of length L with hop, and stitching of window predictions back onto a recording (SPEC §2).

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


def stitch(window_preds: np.ndarray, starts: np.ndarray, num_steps: int) -> np.ndarray:
    """Average overlapping window predictions ``[W, L, K]`` onto ``[num_steps, K]``.

    Steps covered by no window (impossible with :func:`window_starts`) are NaN.
    """
    window_preds = np.asarray(window_preds, dtype=np.float64)
    if window_preds.ndim == 2:
        window_preds = window_preds[..., None]
    num_windows, length, k = window_preds.shape
    if len(starts) != num_windows:
        raise ValueError(f"{num_windows} window predictions but {len(starts)} starts")
    total = np.zeros((num_steps, k))
    count = np.zeros(num_steps)
    for w, start in enumerate(starts):
        n = min(length, num_steps - int(start))
        total[start:start + n] += window_preds[w, :n]
        count[start:start + n] += 1
    out = np.full((num_steps, k), np.nan)
    covered = count > 0
    out[covered] = total[covered] / count[covered, None]
    return out
