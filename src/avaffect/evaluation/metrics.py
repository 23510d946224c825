"""Metrics for dimensional emotion recognition (docs/design.md §3).

All moments are population (biased, ``ddof=0``) moments, as NumPy and the ABAW evaluation compute
them. Every function takes ``pred`` and ``target`` of the same shape (1-D series) and an optional
boolean ``mask``; steps where the mask is False or the target or prediction is not finite are ignored.

Conventions at the edges (documented, tested):

- no valid step: every metric returns NaN (there is nothing to score);
- CCC when the denominator is 0 (both series constant and equal): 0.0, as docs/design.md §3 fixes it — a
  constant prediction carries no concordance information, even when it happens to equal a constant
  target. Both constant with different means gives 0 from the formula itself.
- PCC with a zero variance on either side: 0.0 (no linear relationship can be measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from avaffect.data.recording import TARGETS


def _valid(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in length: {pred.shape[0]} vs {target.shape[0]}")
    keep = np.isfinite(pred) & np.isfinite(target)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.shape != pred.shape:
            raise ValueError(f"mask has {mask.shape[0]} steps, series have {pred.shape[0]}")
        keep &= mask
    return pred[keep], target[keep]


def ccc(pred, target, mask=None) -> float:
    """Concordance correlation coefficient (Lin 1989).

    ``CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)``, population moments.
    """
    x, y = _valid(pred, target, mask)
    if x.size == 0:
        return float("nan")
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = np.mean((x - mx) * (y - my))
    den = vx + vy + (mx - my) ** 2
    if den == 0.0:
        return 0.0  # both constant and equal: defined as 0 (docs/design.md §3)
    return float(2.0 * cov / den)


def pcc(pred, target, mask=None) -> float:
    """Pearson correlation ``cov(x, y) / (std(x) std(y))``; 0 when either series is constant."""
    x, y = _valid(pred, target, mask)
    if x.size == 0:
        return float("nan")
    sx, sy = x.std(), y.std()
    if sx == 0.0 or sy == 0.0:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def rmse(pred, target, mask=None) -> float:
    """Root mean squared error."""
    x, y = _valid(pred, target, mask)
    return float(np.sqrt(np.mean((x - y) ** 2))) if x.size else float("nan")


def mae(pred, target, mask=None) -> float:
    """Mean absolute error."""
    x, y = _valid(pred, target, mask)
    return float(np.mean(np.abs(x - y))) if x.size else float("nan")


def sagr(pred, target, mask=None) -> float:
    """Sign agreement: fraction of steps where prediction and target have the same sign (0 counts as +)."""
    x, y = _valid(pred, target, mask)
    return float(np.mean((x >= 0) == (y >= 0))) if x.size else float("nan")


METRICS = {"ccc": ccc, "pcc": pcc, "rmse": rmse, "mae": mae, "sagr": sagr}


def p_va(ccc_valence: float, ccc_arousal: float) -> float:
    """ABAW's VA score ``P_VA = (CCC_V + CCC_A) / 2``."""
    return 0.5 * (ccc_valence + ccc_arousal)


def score_arrays(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None,
                 targets: Sequence[str] = TARGETS) -> dict[str, float]:
    """All metrics for ``[N, K]`` predictions and targets; keys like ``ccc_valence``, plus ``p_va``."""
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    target = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    out: dict[str, float] = {}
    for k, name in enumerate(targets[: pred.shape[1]]):
        for metric, fn in METRICS.items():
            out[f"{metric}_{name}"] = fn(pred[:, k], target[:, k], mask)
    if "ccc_valence" in out and "ccc_arousal" in out:
        out["p_va"] = p_va(out["ccc_valence"], out["ccc_arousal"])
    return out


PROTOCOLS = ("global", "per_recording")


def score_recordings(preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                     protocol: str = "global", targets: Sequence[str] = TARGETS,
                     ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score full-recording predictions.

    ``preds`` and ``labels`` map recording name to ``[T, K]`` arrays (labels NaN where not annotated).
    ``global`` (the ABAW rule, default) concatenates every valid frame of every recording and scores
    once; ``per_recording`` (AVEC style) averages the per-recording scores (recordings without any
    valid frame are left out). Returns ``(overall, per_recording_scores)``; the per-recording scores
    are always computed.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    missing = sorted(set(labels) - set(preds))
    if missing:
        raise ValueError(f"no prediction for recordings: {', '.join(missing[:5])}")
    per: dict[str, dict[str, float]] = {}
    for name in labels:
        p, y = np.asarray(preds[name]), np.asarray(labels[name])
        if len(p) != len(y):
            raise ValueError(f"{name}: prediction has {len(p)} steps, labels have {len(y)}")
        per[name] = score_arrays(p, y, targets=targets)
    if protocol == "global":
        names = list(labels)
        p = np.concatenate([np.asarray(preds[n]).reshape(len(preds[n]), -1) for n in names])
        y = np.concatenate([np.asarray(labels[n]).reshape(len(labels[n]), -1) for n in names])
        overall = score_arrays(p, y, targets=targets)
    else:
        scored = [s for s in per.values() if not all(np.isnan(v) for v in s.values())]
        keys = scored[0].keys() if scored else []
        overall = {k: float(np.nanmean([s[k] for s in scored])) for k in keys}
    return overall, per
