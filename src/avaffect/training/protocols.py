"""Experimental protocols (docs/design.md §6–7): every (fold, seed) run of a configuration, and their summary.

The folds themselves are :mod:`avaffect.data.folds`; the summary files :mod:`avaffect.training.summary`; fold
ensembling :mod:`avaffect.evaluation.ensemble`.

**Runs.** :func:`run_protocol` trains every requested (fold, seed) into ``OUT/fold{k}/seed{s}/`` with
:func:`avaffect.training.run.train` (each run resumable; finished runs are reused). A run's exact split
is stored in ``split.json`` next to its config and checked when the run is reused; ``avaffect evaluate``
reads it back. ``OUT/summary.csv`` (one row per run) and ``OUT/summary.md`` (mean ± std of CCC valence,
CCC arousal and P_VA per fold and over all runs) are rewritten after every run. The standard deviation is
the population one (``numpy.std``, ``ddof=0``), 0 for a single run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.config import RunConfig, make_config
from avaffect.data.folds import SPLIT_FILE, Fold, assign_fold, make_folds, read_split
from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError
from avaffect.files import write_json
from avaffect.training.recipes import pretrain_then_fuse
from avaffect.training.run import METRICS_FILE, MODEL_FILE, RunResult, train
from avaffect.training.summary import SUMMARY_METRICS, write_summary

log = logging.getLogger(__name__)


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
        raise ConfigError(f"--folds {spec!r}: folds are 0..{num_folds - 1} (protocol.num_folds = {num_folds}); use "
                          f"--folds all, numbers in 0..{num_folds - 1}, or raise --num-folds")
    return sorted(set(folds))


def seed_list(num_seeds: int, base_seed: int = 0) -> list[int]:
    """The seeds of a multi-seed run: ``base_seed, base_seed + 1, ...``."""
    if num_seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {num_seeds}")
    return [base_seed + i for i in range(num_seeds)]


def train_one(cfg: RunConfig, run_dir: str | Path, recordings: list[Recording] | None = None,
              progress: bool = True) -> RunResult:
    """One run with the recipe of ``cfg.protocol.recipe``; returns its :class:`~avaffect.training.run.RunResult`."""
    if cfg.protocol.recipe == "pretrain_then_fuse":
        return pretrain_then_fuse(cfg, run_dir, recordings, progress).fusion
    return train(cfg, run_dir, recordings, progress)


def run_config(cfg: RunConfig, fold: int, seed: int) -> RunConfig:
    """``cfg`` for one (fold, seed) run: ``protocol.fold`` and ``training.seed`` set."""
    return make_config(cfg.model_dump(mode="json"), {"protocol": {"fold": fold}, "training": {"seed": seed}},
                       source=f"fold {fold} seed {seed}")


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
    out = Path(out)
    fold_ids = parse_folds(folds, cfg.protocol.num_folds)
    seed_ids = seed_list(seeds, cfg.training.seed) if isinstance(seeds, int) else [int(s) for s in seeds]
    if recordings is None:
        recordings = cfg.load_recordings()
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


def find_runs(protocol_dir: str | Path) -> list[Path]:
    """Finished runs ``fold*/seed*/`` (with ``model.safetensors``) under a protocol output folder."""
    protocol_dir = Path(protocol_dir)
    return sorted(p.parent for p in protocol_dir.glob(f"fold*/seed*/{MODEL_FILE}"))


def select_runs(runs: Sequence[Path], cfg: RunConfig) -> list[Path]:
    """The runs whose models predict the test split: all of them (``protocol.test_selection = average``), or the
    ``best_k`` by their own validation score (the monitored metric in each run's ``metrics.json``; ABAW6 uses
    "the best folds"). Ties keep the fold/seed order."""
    runs = list(runs)
    if cfg.protocol.test_selection == "average":
        return runs
    key = cfg.training.monitor_key()

    def score(run: Path) -> float:
        value = json.loads((run / METRICS_FILE).read_text())["overall"].get(key)
        return float(value) if value is not None and np.isfinite(value) else -np.inf

    ranked = sorted(runs, key=score, reverse=True)  # stable: ties keep their order
    return [r for r in runs if r in ranked[: cfg.protocol.best_k]]
