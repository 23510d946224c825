"""Cross-validation folds over a dataset's recordings, and the split file a run keeps (docs/design.md §6–7).

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

A run made on a fold keeps its exact split in ``split.json`` (:func:`read_split`), so evaluation sees the
recordings the run saw.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError

__all__ = ["EXCLUDED", "SPLIT_FILE", "Fold", "assign_fold", "make_folds", "read_split"]

SPLIT_FILE = "split.json"
EXCLUDED = "excluded"  # split given to pooled recordings a fold neither trains nor validates on (none today)


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


def read_split(run_dir: str | Path) -> Fold | None:
    path = Path(run_dir) / SPLIT_FILE
    return Fold.from_dict(json.loads(path.read_text())) if path.is_file() else None


