"""Files a run writes: per-recording prediction CSVs, metrics JSON, plots, the Markdown report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avaffect.data.recording import TARGETS
from avaffect.files import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd


def predictions_frame(times: np.ndarray, pred: np.ndarray, labels: np.ndarray | None = None,
                      targets=TARGETS) -> pd.DataFrame:
    """``frame,time,<targets>,label_<targets>`` (frame is 0-based; labels NaN where not annotated)."""
    import pandas as pd  # lazy: 0.4 s that predict's plots do not need

    df = pd.DataFrame({"frame": np.arange(len(times)), "time": np.round(times, 6)})
    for k, t in enumerate(targets[: pred.shape[1]]):
        df[t] = pred[:, k]
    if labels is not None:
        for k, t in enumerate(targets[: pred.shape[1]]):
            df[f"label_{t}"] = labels[:, k]
    return df


def write_predictions_csv(path: str | Path, times, pred, labels=None, targets=TARGETS) -> Path:
    frame = predictions_frame(times, pred, labels, targets)
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.6f"))


def _figure(**kwargs):
    """A matplotlib ``Figure`` on its own Agg canvas: no pyplot, no global state (figures never need closing,
    threads and notebooks are not disturbed). matplotlib is imported here, when a plot is drawn (it is slow to
    import)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path, dpi: int) -> Path:
    """Lay out ``fig`` and write it to ``path`` (its folder made)."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_recordings(path: str | Path, items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                    title: str = "") -> Path:
    """Prediction vs label over time, one row per recording: items are ``(name, times, pred, labels)``."""
    fig = _figure(figsize=(11, 2.2 * len(items)))
    axes = fig.subplots(len(items), 2, squeeze=False, sharey=True)
    for row, (name, times, pred, labels) in enumerate(items):
        for k, target in enumerate(TARGETS):
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
    return _save(fig, path, dpi=90)


def plot_people(path: str | Path, title: str, times: np.ndarray,
                traces: list[tuple[str, np.ndarray, np.ndarray]], targets: Sequence[str] = TARGETS) -> Path:
    """One panel per target, one line per person: ``traces`` are ``(label, values [T, K], on screen [T])``; a
    person's line is drawn where they are on screen only (a faint line elsewhere: the model's value without
    their face)."""
    fig = _figure(figsize=(11, 2.4 * len(targets) + 0.4))
    axes = fig.subplots(len(targets), 1, squeeze=False, sharex=True)
    from matplotlib import rcParams

    colors = rcParams["axes.prop_cycle"].by_key()["color"]  # the style's colours (read, not changed)
    for k, t in enumerate(targets):
        ax = axes[k, 0]
        for i, (label, values, on) in enumerate(traces):
            v = np.asarray(values, np.float64).reshape(len(times), -1)[:, k]
            color = colors[i % len(colors)]
            ax.plot(times, v, color=color, lw=0.6, alpha=0.25)
            ax.plot(times, np.where(np.asarray(on, bool), v, np.nan), color=color, lw=1.2, label=label)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(t)
        if k == 0:
            ax.set_title(title, fontsize=10)
            if traces:
                ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    return _save(fig, path, dpi=80)


def plot_recording(path: str | Path, name: str, times: np.ndarray, pred: np.ndarray, labels: np.ndarray | None,
                   targets: Sequence[str] = TARGETS, face_mask: np.ndarray | None = None,
                   band: np.ndarray | None = None, contributions: dict[str, np.ndarray] | None = None,
                   gates: dict[str, np.ndarray] | None = None) -> Path:
    """Prediction (and label) over time per target and, with both targets, the 2-D valence-arousal path;
    steps without a face (``face_mask`` False) are shaded. ``band`` ``[T, K]``: a spread drawn around the
    prediction (an ensemble's); ``contributions`` ``{modality: [T, K]}``: one more row under the traces with each
    modality's contribution (``predict --explain``); ``gates`` ``{gate: [T]}``: one more row with each gate's weight
    of its last candidate (the attended features, the last iterate; a gated model's ``--explain``)."""
    pred = np.asarray(pred).reshape(len(times), -1)
    both = tuple(targets) == TARGETS
    rows = len(targets) + (1 if contributions else 0) + (1 if gates else 0)
    fig = _figure(figsize=(12 if both else 9, 2.4 * rows + 0.4))
    grid = fig.add_gridspec(rows, 2 if both else 1, width_ratios=[2.2, 1] if both else None)
    for k, t in enumerate(targets):
        ax = fig.add_subplot(grid[k, 0])
        if labels is not None:
            ax.plot(times, labels[:, k], color="black", lw=1.2, label="label")
        ax.plot(times, pred[:, k], color="tab:red", lw=1.0, label="prediction")
        if band is not None:
            b = np.asarray(band, np.float64).reshape(len(times), -1)[:, k]
            ax.fill_between(times, pred[:, k] - b, pred[:, k] + b, color="tab:red", alpha=0.2, lw=0,
                            label="ensemble spread (± std)")
        if face_mask is not None and not np.all(face_mask):
            ax.fill_between(times, -1.05, 1.05, where=~np.asarray(face_mask, bool), color="0.5", alpha=0.2,
                            step="mid", label="no face")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(t)
        if k == 0:
            ax.set_title(name, fontsize=10)
            ax.legend(loc="upper right", fontsize=8)
        if k == len(targets) - 1 and not contributions:
            ax.set_xlabel("time (s)")
    if contributions:
        ax = fig.add_subplot(grid[len(targets), 0])
        styles = {"voice": "tab:blue", "face": "tab:green"}
        for m, c in contributions.items():
            c = np.asarray(c, np.float64).reshape(len(times), -1)
            for k, t in enumerate(targets):
                ax.plot(times, c[:, k], color=styles.get(m, None), lw=1.0, ls="-" if k == 0 else "--",
                        label=f"{t}: {m}")
        ax.axhline(0, color="0.7", lw=0.6)
        ax.set_ylabel("contribution")
        ax.set_title("what moved each value: the value minus the value without that modality (occlusion)",
                     fontsize=9)
        ax.legend(loc="upper right", fontsize=7, ncol=2)
        if not gates:
            ax.set_xlabel("time (s)")
    if gates:
        ax = fig.add_subplot(grid[rows - 1, 0])
        for g, w in gates.items():
            ax.plot(times, np.asarray(w, np.float64), lw=1.0, label=g)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("gate weight")
        ax.set_title("each gate's weight of its last candidate (attended features / last iterate)", fontsize=9)
        ax.legend(loc="upper right", fontsize=7, ncol=2)
        ax.set_xlabel("time (s)")
    if both:
        ax = fig.add_subplot(grid[:len(targets), 1])
        from matplotlib.patches import Circle

        ax.add_patch(Circle((0, 0), 1, fill=False, color="0.7", lw=0.8))
        ax.axhline(0, color="0.8", lw=0.6)
        ax.axvline(0, color="0.8", lw=0.6)
        if labels is not None:
            ax.plot(labels[:, 0], labels[:, 1], color="black", lw=0.8, alpha=0.7, label="label")
        sc = ax.scatter(pred[:, 0], pred[:, 1], c=times, cmap="viridis", s=3, label="prediction")
        fig.colorbar(sc, ax=ax, label="time (s)", fraction=0.046)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_xlabel("valence")
        ax.set_ylabel("arousal")
        ax.set_title("valence-arousal trajectory", fontsize=10)
    return _save(fig, path, dpi=80)
