"""Ensembling: several models' stitched full-recording predictions averaged (e.g. the fold models on the
test split; ``avaffect evaluate OUT`` does it end to end with :func:`avaffect.workflows.evaluate.evaluate_ensemble`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["ensemble_predictions"]


def ensemble_predictions(pred_sets: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Average several models' stitched ``{recording: [T, K]}`` predictions (every set must cover the same
    recordings with the same shapes)."""
    if not pred_sets:
        raise ValueError("nothing to ensemble")
    names = list(pred_sets[0])
    for i, s in enumerate(pred_sets[1:], 1):
        if set(s) != set(names):
            raise ValueError(f"prediction set {i} covers other recordings than set 0")
    out = {}
    for n in names:
        arrays = [np.asarray(s[n], dtype=np.float64) for s in pred_sets]
        if any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError(f"{n}: prediction shapes differ across models: {[a.shape for a in arrays]}")
        out[n] = np.mean(arrays, axis=0).astype(np.float32)
    return out
