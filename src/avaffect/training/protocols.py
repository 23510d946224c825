"""Experimental protocols (SPEC §6–7): k-fold cross-validation, multi-seed runs, fold ensembling.

**Folds.** :func:`make_folds` builds ``k`` folds over the annotated recordings of the train and
validation splits (ABAW8: ``k = 6``):

- fold 0 is the official split, unchanged;
- folds 1..k-1 re-partition train+validation: the pool is cut into ``k - 1`` disjoint validation parts
  and fold ``i`` validates on part ``i - 1`` and trains on everything else. Every pooled recording is
  validated exactly once across folds 1..k-1.
- Subject-independent (default): recordings are grouped by ``Recording.subject`` (Aff-Wild2: the base
  video name, so ``x_left`` / ``x_right`` stay together; a recording without a subject is its own
  group) and a group is never split, so no subject appears in two validation parts nor in the training
  and validation sets of one fold. (Fold 0's official validation set necessarily shares subjects with
  the parts of folds 1..k-1.)
- Deterministic by ``seed``: groups are shuffled with ``numpy.random.default_rng(seed)`` (from the
  name-sorted order) and dealt greedily to the part with the fewest annotated frames so far (ties: the
  lowest part index), which balances the parts by frames.

**Runs.** :func:`run_protocol` trains every requested (fold, seed) into ``OUT/fold{k}/seed{s}/`` with
:func:`avaffect.training.run.train` (each run resumable; finished runs are reused). A run's exact split
is stored in ``split.json`` next to its config and checked when the run is reused; ``avaffect evaluate``
reads it back. ``OUT/summary.csv`` (one row per run) and ``OUT/summary.md`` (mean ± std of CCC valence,
CCC arousal and P_VA per fold and over all runs) are rewritten after every run. The standard deviation is
the population one (``numpy.std``, ``ddof=0``), 0 for a single run.

**Ensembling.** :func:`ensemble_predictions` averages stitched full-recording predictions of several
models (e.g. the fold models on the test split); ``avaffect evaluate OUT`` does it end to end
(:func:`avaffect.evaluation.evaluate.evaluate_ensemble`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.config import RunConfig, make_config
from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError
from avaffect.evaluation.reports import atomic_write_text, write_json

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
SUMMARY_METRICS = ("ccc_valence", "ccc_arousal", "p_va")
EXCLUDED = "excluded"  # split given to pooled recordings a fold neither trains nor validates on (none today)


# ------------------------------------------------------------------------------------------------ folds


@dataclass(frozen=True)
class Fold:
    """One fold: the names of its training and validation recordings."""

    index: int
    train: tuple[str, ...]
    validation: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"fold": self.index, "train": list(self.train), "validation": list(self.validation)}

    @classmethod
    def from_dict(cls, d: Mapping) -> Fold:
        return cls(int(d["fold"]), tuple(d["train"]), tuple(d["validation"]))


def _group_key(rec: Recording, subject_independent: bool) -> str:
    if subject_independent and rec.subject:
        return f"subject:{rec.subject}"
    return f"recording:{rec.name}"


def make_folds(recordings: Sequence[Recording], num_folds: int = 6, seed: int = 0, subject_independent: bool = True,
               train_split: str = "train", val_split: str = "validation") -> list[Fold]:
    """``num_folds`` folds over the annotated train+validation recordings (see the module docstring)."""
    pool = [r for r in recordings if r.split in (train_split, val_split) and r.has_labels]
    official = Fold(0, tuple(sorted(r.name for r in pool if r.split == train_split)),
                    tuple(sorted(r.name for r in pool if r.split == val_split)))
    if num_folds < 1:
        raise ConfigError(f"protocol.num_folds must be >= 1, got {num_folds}")
    if num_folds == 1:
        return [official]
    if num_folds == 2:
        raise ConfigError("protocol.num_folds = 2 leaves no training data in fold 1 (folds 1..k-1 re-partition "
                          "train+validation into k-1 parts); use 1 (official split only) or >= 3")
    parts_n = num_folds - 1
    groups: dict[str, list[Recording]] = {}
    for r in sorted(pool, key=lambda r: r.name):
        groups.setdefault(_group_key(r, subject_independent), []).append(r)
    if len(groups) < parts_n:
        what = "subjects" if subject_independent else "recordings"
        raise ConfigError(f"cannot make {num_folds} folds: train+validation hold {len(groups)} {what}, and folds "
                          f"1..{num_folds - 1} need at least {parts_n}; lower protocol.num_folds")
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    loads = np.zeros(parts_n, dtype=np.int64)
    parts: list[list[str]] = [[] for _ in range(parts_n)]
    for i in order:
        members = groups[keys[i]]
        p = int(np.argmin(loads))  # lightest part, lowest index on ties
        parts[p].extend(r.name for r in members)
        loads[p] += sum(int(r.label_mask.sum()) for r in members)
    all_names = {r.name for r in pool}
    folds = [official]
    for p, names in enumerate(parts):
        val = tuple(sorted(names))
        folds.append(Fold(p + 1, tuple(sorted(all_names - set(val))), val))
    return folds


def assign_fold(recordings: Sequence[Recording], fold: Fold, train_split: str = "train",
                val_split: str = "validation") -> list[Recording]:
    """Copies of ``recordings`` with ``split`` set by ``fold``: its training recordings → ``train_split``,
    its validation recordings → ``val_split``; other train/validation recordings → ``"excluded"``; the
    rest (test) unchanged. The inputs are not modified."""
    train, val = set(fold.train), set(fold.validation)
    unknown = (train | val) - {r.name for r in recordings}
    if unknown:
        raise AvaffectError(f"fold {fold.index} names recordings the dataset lacks: {', '.join(sorted(unknown)[:5])}"
                            " (was the dataset changed since the fold was made?)")
    out = []
    for r in recordings:
        if r.name in train:
            split = train_split
        elif r.name in val:
            split = val_split
        elif r.split in (train_split, val_split):
            split = EXCLUDED
        else:
            split = r.split
        out.append(dataclasses.replace(r, split=split))
    return out


def parse_folds(spec: str | Sequence[int] | None, num_folds: int) -> list[int]:
    """``"all"`` → ``0..num_folds-1``; ``"0,2"`` → ``[0, 2]``; ``None`` → ``[0]`` (the official split)."""
    if spec is None:
        return [0]
    if isinstance(spec, str):
        spec = spec.strip()
        if spec == "all":
            return list(range(num_folds))
        try:
            folds = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--folds: expected 'all' or a comma-separated list of fold numbers, got {spec!r}"
                              ) from None
    else:
        folds = [int(x) for x in spec]
    bad = [k for k in folds if not 0 <= k < num_folds]
    if bad or not folds:
        raise ConfigError(f"--folds {spec!r}: folds are 0..{num_folds - 1} (protocol.num_folds = {num_folds})")
    return sorted(set(folds))


def seed_list(num_seeds: int, base_seed: int = 0) -> list[int]:
    """The seeds of a multi-seed run: ``base_seed, base_seed + 1, ...``."""
    if num_seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {num_seeds}")
    return [base_seed + i for i in range(num_seeds)]


# ------------------------------------------------------------------------------------------------ runs


def train_one(cfg: RunConfig, run_dir: str | Path, recordings: list[Recording] | None = None,
              progress: bool = True):
    """One run with the recipe of ``cfg.protocol.recipe``; returns its :class:`~avaffect.training.run.RunResult`."""
    if cfg.protocol.recipe == "pretrain_then_fuse":
        from avaffect.training.recipes import pretrain_then_fuse

        return pretrain_then_fuse(cfg, run_dir, recordings, progress).fusion
    from avaffect.training.run import train

    return train(cfg, run_dir, recordings, progress)


def run_config(cfg: RunConfig, fold: int, seed: int) -> RunConfig:
    """``cfg`` for one (fold, seed) run: ``protocol.fold`` and ``training.seed`` set."""
    return make_config(cfg.model_dump(mode="json"), {"protocol": {"fold": fold}, "training": {"seed": seed}},
                       source=f"fold {fold} seed {seed}")


def read_split(run_dir: str | Path) -> Fold | None:
    path = Path(run_dir) / SPLIT_FILE
    return Fold.from_dict(json.loads(path.read_text())) if path.is_file() else None


def _write_split(run_dir: Path, fold: Fold) -> None:
    old = read_split(run_dir)
    if old is not None and old != fold:
        raise AvaffectError(f"{run_dir / SPLIT_FILE}: this run was made on another fold split than the dataset "
                            "gives now (recordings or protocol settings changed); use another --out or remove it")
    if old is None:
        write_json(run_dir / SPLIT_FILE, fold.to_dict())


@dataclass
class ProtocolResult:
    out: Path
    runs: pd.DataFrame  # one row per (fold, seed)
    summary: pd.DataFrame  # mean/std per fold and overall


def run_protocol(cfg: RunConfig, out: str | Path, folds: Sequence[int] | str | None = None,
                 seeds: Sequence[int] | int = 1, recordings: list[Recording] | None = None,
                 progress: bool = True) -> ProtocolResult:
    """Train every (fold, seed) into ``out/fold{k}/seed{s}`` and write ``summary.csv`` / ``summary.md``.

    ``folds``: fold numbers, ``"all"`` or ``"0,2"``; ``seeds``: a count (seeds ``training.seed + i``) or
    the explicit seeds.
    """
    from avaffect.data.datasets import load_dataset

    out = Path(out)
    fold_ids = parse_folds(folds, cfg.protocol.num_folds)
    seed_ids = seed_list(seeds, cfg.training.seed) if isinstance(seeds, int) else [int(s) for s in seeds]
    if recordings is None:
        recordings = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.length_tolerance)
    # fold 0 alone needs no partition (which a tiny dataset may not allow)
    all_folds = make_folds(recordings, cfg.protocol.num_folds if max(fold_ids) > 0 else 1, cfg.protocol.fold_seed,
                           cfg.protocol.subject_independent, cfg.data.train_split, cfg.data.val_split)
    out.mkdir(parents=True, exist_ok=True)
    if len(all_folds) > 1 or not (out / "folds.json").is_file():
        write_json(out / "folds.json", {"num_folds": len(all_folds), "fold_seed": cfg.protocol.fold_seed,
                                        "subject_independent": cfg.protocol.subject_independent,
                                        "folds": [f.to_dict() for f in all_folds]})
    rows = []
    for k in fold_ids:
        fold = all_folds[k]
        recs = assign_fold(recordings, fold, cfg.data.train_split, cfg.data.val_split)
        for s in seed_ids:
            run_dir = out / f"fold{k}" / f"seed{s}"
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_split(run_dir, fold)
            log.info("fold %d seed %d → %s", k, s, run_dir)
            res = train_one(run_config(cfg, k, s), run_dir, recs, progress)
            rows.append({"fold": k, "seed": s, **{m: res.metrics.get(m, np.nan) for m in _metric_keys(res.metrics)},
                         "run_dir": run_dir.relative_to(out).as_posix()})
            runs = pd.DataFrame(rows)
            write_summary(out, runs)
    runs = pd.DataFrame(rows)
    return ProtocolResult(out, runs, write_summary(out, runs))


def _metric_keys(metrics: Mapping[str, float]) -> list[str]:
    return [m for m in SUMMARY_METRICS if m in metrics]


# ------------------------------------------------------------------------------------------------ summary


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


# ------------------------------------------------------------------------------------------------ ensembling


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


def find_runs(protocol_dir: str | Path) -> list[Path]:
    """Finished runs ``fold*/seed*/`` (with ``model.safetensors``) under a protocol output folder."""
    protocol_dir = Path(protocol_dir)
    return sorted(p.parent for p in protocol_dir.glob("fold*/seed*/model.safetensors"))
