"""Post-processing of full-recording predictions (docs/design.md §3), every step fitted on the validation split only.

For each target ``k`` the fitted chain is, in this order (each step may be the identity):

1. **label-delay shift** by ``d_k`` frames: annotators react late, so the label at ``t`` reflects the
   stimulus at ``t - d``; the predictions are delayed to match: ``q[t] = p[t - d]``. The first ``d``
   steps repeat ``p[0]`` (for ``d < 0``, predictions are advanced and the last steps repeat ``p[T-1]``).
2. **smoothing**: centred moving average over ``w_k`` frames,
   ``q[t] = mean(p[t - (w-1)//2 .. t + w//2])`` with the edges padded by repeating the end values
   (``w = 1`` is the identity; an even ``w`` reaches one step further forward than back).
3. **bias/scale correction** (AVEC style): ``q = a_k p + b_k`` with ``a_k = std(y) / std(p)`` and
   ``b_k = mean(y) - a_k mean(p)``, the moments taken over the valid validation frames (population
   moments), so the corrected validation predictions have the label mean and standard deviation.
4. **clip** to ``[-1, 1]``.

Shift and smoothing act within each recording, never across the boundary between two recordings.
:meth:`PostProcessor.fit` searches ``(d_k, w_k)`` jointly over ``min_delay..max_delay`` x the window grid;
for each pair the bias/scale ``(a_k, b_k)`` is the moment match of the shifted and smoothed validation
predictions, used always (``scale: always``), never (``never``) or where it scores higher (``auto``).
The chain with the highest validation CCC of the target wins (protocol ``global`` or ``per_recording``,
as the run scores; candidates scored after clipping when clipping is on); ties go to the smaller
``|d|``, then the smaller ``w``, then no bias/scale. (CCC punishes a scale or bias mismatch, so choosing
the delay without the correction that follows would pick a different, worse delay.) ``to_dict`` /
``from_dict`` store what was fitted (JSON-able), and ``apply`` is a pure function of that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from avaffect.config import PostprocessConfig
from avaffect.data.recording import TARGETS
from avaffect.evaluation.metrics import ccc

FORMAT = "avaffect-postprocess-1"


# ---------------------------------------------------------------------------------------- the operations


def shift(x: np.ndarray, d: int) -> np.ndarray:
    """Delay a series by ``d`` steps along axis 0 (``out[t] = x[t - d]``), edges repeat the end value."""
    x = np.asarray(x)
    n = len(x)
    if d == 0 or n == 0:
        return x.copy()
    out = np.empty_like(x)
    if d > 0:
        k = min(d, n)
        out[:k] = x[0]
        out[k:] = x[:n - k]
    else:
        k = min(-d, n)
        out[n - k:] = x[n - 1]
        out[:n - k] = x[k:]
    return out


def smooth(x: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average over ``w`` steps along axis 0, edges padded with the end values."""
    x = np.asarray(x, dtype=np.float64)
    if w < 1:
        raise ValueError(f"smoothing window must be >= 1, got {w}")
    if w == 1 or len(x) == 0:
        return x.copy()
    before, after = (w - 1) // 2, w // 2
    pad = [(before, after)] + [(0, 0)] * (x.ndim - 1)
    padded = np.pad(x, pad, mode="edge")
    c = np.cumsum(padded, axis=0)
    c = np.concatenate([np.zeros((1,) + x.shape[1:]), c], axis=0)
    return (c[w:] - c[:-w]) / w


def _as_dict(preds) -> tuple[dict[str, np.ndarray], bool]:
    if isinstance(preds, Mapping):
        return {k: np.asarray(v, dtype=np.float64) for k, v in preds.items()}, True
    return {"_": np.asarray(preds, dtype=np.float64)}, False


def _2d(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def _score(preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], protocol: str) -> float:
    """CCC of one target's series (dicts of 1-D arrays) under ``protocol``."""
    names = list(labels)
    if protocol == "global":
        return ccc(np.concatenate([preds[n] for n in names]), np.concatenate([labels[n] for n in names]))
    scores = [ccc(preds[n], labels[n]) for n in names]
    scores = [s for s in scores if np.isfinite(s)]
    return float(np.mean(scores)) if scores else float("nan")


# ---------------------------------------------------------------------------------------- the fitted chain


class PostProcessor:
    """Per-target delay shift → smoothing → bias/scale → clip, fitted on validation predictions.

    ``preds`` and ``labels`` are either ``{recording: [T, K]}`` dicts or one ``[T, K]`` array (one
    recording); columns follow ``targets``. A fresh processor is the identity apart from clipping.
    """

    def __init__(self, targets: Sequence[str] = TARGETS, config: PostprocessConfig | None = None) -> None:
        self.targets = list(targets)
        self.config = config or PostprocessConfig()
        if self.config.min_delay > self.config.max_delay:
            raise ValueError(f"min_delay {self.config.min_delay} > max_delay {self.config.max_delay}")
        if any(w < 1 for w in self.config.windows) or not self.config.windows:
            raise ValueError(f"smoothing windows must be >= 1, got {self.config.windows}")
        self.clip = self.config.clip
        self.delay = {t: 0 for t in self.targets}
        self.window = {t: 1 for t in self.targets}
        self.scale: dict[str, tuple[float, float] | None] = {t: None for t in self.targets}
        self.fitted = False
        self.scores: dict[str, dict[str, float]] = {}

    # --- one target's chain -----------------------------------------------------------------------------
    def _chain(self, x: np.ndarray, d: int, w: int, ab: tuple[float, float] | None, clip: bool) -> np.ndarray:
        y = smooth(shift(x, d), w)
        if ab is not None:
            y = ab[0] * y + ab[1]
        return np.clip(y, -1.0, 1.0) if clip else y

    def fit(self, preds, labels, protocol: str = "global") -> PostProcessor:
        """Choose delay, window and bias/scale per target on these (validation) predictions and labels."""
        P, _ = _as_dict(preds)
        Y, _ = _as_dict(labels)
        names = [n for n in Y if np.isfinite(Y[n]).any()]
        if not names:
            raise ValueError("post-processing needs labelled validation frames; none given")
        missing = [n for n in names if n not in P]
        if missing:
            raise ValueError(f"no prediction for recordings: {', '.join(missing[:5])}")
        cfg = self.config
        delays = sorted(range(cfg.min_delay, cfg.max_delay + 1), key=lambda d: (abs(d), d)) if cfg.delay else [0]
        windows = sorted(set(cfg.windows)) if cfg.smoothing else [1]
        self.scores = {}
        for k, t in enumerate(self.targets):
            p = {n: _2d(P[n])[:, k] for n in names}
            y = {n: _2d(Y[n])[:, k] for n in names}
            clip = self.clip

            yy = np.concatenate([y[n] for n in names])

            def score(d, w, ab, p=p, y=y, clip=clip):
                s = _score({n: self._chain(p[n], d, w, ab, clip) for n in names}, y, protocol)
                return s if np.isfinite(s) else -np.inf

            def moment_match(d, w, p=p, yy=yy):
                q = np.concatenate([smooth(shift(p[n], d), w) for n in names])
                ok = np.isfinite(q) & np.isfinite(yy)
                sq = q[ok].std()
                if not ok.any() or sq == 0:
                    return None
                a = float(yy[ok].std() / sq)
                return a, float(yy[ok].mean() - a * q[ok].mean())

            before = score(0, 1, None)
            best, best_key = None, None
            for i, (d, w) in enumerate((d, w) for d in delays for w in windows):  # preference order for ties
                fitted = moment_match(d, w) if cfg.scale != "never" else None
                options = [None] if fitted is None else {"auto": [None, fitted], "always": [fitted]}[cfg.scale]
                for j, ab in enumerate(options):
                    key = (score(d, w, ab), -i, -j)
                    if best_key is None or key > best_key:
                        best, best_key = (d, w, ab), key
            d, w, ab = best
            self.delay[t], self.window[t], self.scale[t] = int(d), int(w), ab
            self.scores[t] = {"before": float(before), "after": float(best_key[0])}
        self.fitted = True
        return self

    def apply(self, preds):
        """The fitted chain on new predictions (same type as given: dict or one array)."""
        P, was_dict = _as_dict(preds)
        out = {}
        for n, x in P.items():
            x2 = _2d(x)
            if x2.shape[1] != len(self.targets):
                raise ValueError(f"{n}: {x2.shape[1]} prediction columns but targets are {self.targets}")
            cols = [self._chain(x2[:, k], self.delay[t], self.window[t], self.scale[t], self.clip)
                    for k, t in enumerate(self.targets)]
            out[n] = np.stack(cols, axis=1).astype(np.float32).reshape(x.shape)
        return out if was_dict else out["_"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "targets": list(self.targets), "fitted": self.fitted, "clip": self.clip,
            "delay": dict(self.delay), "window": dict(self.window),
            "scale": {t: (None if v is None else {"a": v[0], "b": v[1]}) for t, v in self.scale.items()},
            "validation_ccc": self.scores, "config": self.config.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PostProcessor:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a post-processing record (format {d.get('format')!r})")
        pp = cls(d["targets"], PostprocessConfig(**d.get("config", {})))
        pp.clip = bool(d["clip"])
        pp.delay = {t: int(v) for t, v in d["delay"].items()}
        pp.window = {t: int(v) for t, v in d["window"].items()}
        pp.scale = {t: (None if v is None else (float(v["a"]), float(v["b"]))) for t, v in d["scale"].items()}
        pp.scores = dict(d.get("validation_ccc", {}))
        pp.fitted = bool(d.get("fitted", True))
        return pp

    def __repr__(self) -> str:
        return f"PostProcessor(delay={self.delay}, window={self.window}, scale={self.scale}, clip={self.clip})"
