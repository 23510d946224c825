"""Files a run writes: per-recording prediction CSVs, metrics JSON, plots, the Markdown report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def predictions_frame(times: np.ndarray, pred: np.ndarray, labels: np.ndarray | None = None,
                      targets=("valence", "arousal")) -> pd.DataFrame:
    """``frame,time,<targets>,label_<targets>`` (frame is 0-based; labels NaN where not annotated)."""
    df = pd.DataFrame({"frame": np.arange(len(times)), "time": np.round(times, 6)})
    for k, t in enumerate(targets[: pred.shape[1]]):
        df[t] = pred[:, k]
    if labels is not None:
        for k, t in enumerate(targets[: pred.shape[1]]):
            df[f"label_{t}"] = labels[:, k]
    return df


def write_predictions_csv(path: str | Path, times, pred, labels=None, targets=("valence", "arousal")) -> Path:
    frame = predictions_frame(times, pred, labels, targets)
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.6f"))


def plot_recordings(path: str | Path, items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                    title: str = "") -> Path:
    """Prediction vs label over time, one row per recording: items are ``(name, times, pred, labels)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(items), 2, figsize=(11, 2.2 * len(items)), squeeze=False, sharey=True)
    for row, (name, times, pred, labels) in enumerate(items):
        for k, target in enumerate(("valence", "arousal")):
            ax = axes[row, k]
            ax.plot(times, labels[:, k], color="black", lw=1.2, label="label")
            ax.plot(times, pred[:, k], color="tab:red", lw=1.0, label="prediction")
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"{name} — {target}", fontsize=9)
            if row == len(items) - 1:
                ax.set_xlabel("time (s)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
