"""What a gate does, measured: collapsed frames, how well its weights detect weak segments, what a linear
probe reads from fused features, and paired differences over seeds (``benchmarks/zoo.py --condition``)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def collapsed_fraction(weights: np.ndarray, threshold: float = 0.99) -> float:
    """Fraction of rows of ``weights [N, n]`` (n >= 2 candidates, rows summing to 1) whose largest weight exceeds
    ``threshold``: frames where the gate has, in effect, picked one candidate and passes (almost) no gradient to
    the others (softmax gradients vanish as a row saturates)."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1, np.shape(weights)[-1])
    if w.shape[-1] < 2 or not len(w):
        return float("nan")
    return float((w.max(axis=-1) > threshold).mean())


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (Mann-Whitney U / (n_pos n_neg), ties
    counted one half); NaN when one class is absent. 0.5: the scores carry no information about the labels."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = stats.rankdata(s)  # average ranks: ties count one half
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def separation(scores: np.ndarray, labels: np.ndarray) -> float:
    """``max(AUROC, 1 - AUROC)``: how well ``scores`` separate the labels, whichever way round (0.5 .. 1)."""
    a = auroc(scores, labels)
    return float(max(a, 1.0 - a)) if np.isfinite(a) else a


def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Predictions on ``x_test`` of a ridge regression ``y = x W + b`` fitted on the training rows (features
    standardised with the training mean and std; ``alpha`` on the standardised scale, the intercept unpenalised)."""
    x_train = np.asarray(x_train, dtype=np.float64)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    z = (x_train - mean) / std
    y = np.asarray(y_train, dtype=np.float64)
    y_mean = y.mean(0)
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y_mean))
    return ((np.asarray(x_test, dtype=np.float64) - mean) / std) @ w + y_mean


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a - b`` (paired by index, e.g. by seed) and its two-sided Student-t confidence interval
    ``(mean, low, high)``; the interval is NaN with fewer than two pairs."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return mean, mean - half, mean + half
