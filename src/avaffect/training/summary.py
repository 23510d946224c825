"""Summaries of multi-fold / multi-seed runs: ``summary.csv`` (one row per run) and ``summary.md`` (mean ±
population std of CCC valence, CCC arousal and P_VA per fold and over all runs; ``numpy.std``, ``ddof=0``,
0 for a single run)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.files import atomic_write_text

__all__ = ["SUMMARY_METRICS", "mean_std", "render_summary", "summarize", "write_summary"]

SUMMARY_METRICS = ("ccc_valence", "ccc_arousal", "p_va")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (``numpy.std``, ``ddof=0``) of the finite values."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std())


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of the metrics per fold and over all runs (row ``fold = "all"``)."""
    metrics = [m for m in SUMMARY_METRICS if m in runs.columns]
    rows = []
    groups = [(str(k), g) for k, g in runs.groupby("fold", sort=True)] + [("all", runs)]
    for fold, g in groups:
        row: dict = {"fold": fold, "runs": len(g)}
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std(g[m].to_numpy(dtype=np.float64))
        rows.append(row)
    return pd.DataFrame(rows)


def write_summary(out: str | Path, runs: pd.DataFrame) -> pd.DataFrame:
    """``summary.csv`` (one row per run) and ``summary.md`` (mean ± std per fold and overall)."""
    out = Path(out)
    atomic_write_text(out / "summary.csv", runs.to_csv(index=False, float_format="%.6f"))
    summary = summarize(runs)
    atomic_write_text(out / "summary.md", render_summary(summary))
    return summary


_LABELS = {"ccc_valence": "CCC valence", "ccc_arousal": "CCC arousal", "p_va": "P_VA"}


def render_summary(summary: pd.DataFrame) -> str:
    metrics = [m for m in SUMMARY_METRICS if f"{m}_mean" in summary.columns]
    lines = ["# Cross-validation / multi-seed summary", "",
             "Validation scores of each run's best model (mean ± population std over seeds; `all` = over every "
             "run). Each fold validates on its own recordings.", "",
             "| fold | runs | " + " | ".join(_LABELS[m] for m in metrics) + " |",
             "|---|---:|" + "---:|" * len(metrics)]
    for _, r in summary.iterrows():
        cells = [f"{r[f'{m}_mean']:.4f} ± {r[f'{m}_std']:.4f}" for m in metrics]
        lines.append(f"| {r['fold']} | {r['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


