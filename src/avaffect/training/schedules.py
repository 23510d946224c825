"""Learning-rate warm-up factors (``training.warmup``), applied per optimisation step on top of the
plateau scheduler: the factor multiplies whatever LR ReduceLROnPlateau has set."""

from __future__ import annotations

from avaffect.config import WarmupConfig

__all__ = ["warmup_factor"]


def warmup_factor(cfg: WarmupConfig, epoch: int, batch: int, batches_per_epoch: int) -> float:
    """The LR factor of step ``batch`` (0-based) of ``epoch`` (0-based).

    ``linear``: ``start + (1 - start) * s / S`` with ``s`` the global step and ``S = epochs * batches_per_epoch``,
    1 from step ``S`` on. ``repetitive``: the same ramp over each of the first ``epochs`` epochs, restarting at
    every epoch's first step; 1 afterwards. ``none``: 1."""
    n = max(1, batches_per_epoch)
    start = cfg.start_factor
    if cfg.kind == "none" or epoch >= cfg.epochs:
        return 1.0
    if cfg.kind == "linear":
        return start + (1.0 - start) * min(1.0, (epoch * n + batch) / (cfg.epochs * n))
    if cfg.kind == "repetitive":
        return start + (1.0 - start) * min(1.0, batch / n)
    raise ValueError(f"unknown warm-up kind {cfg.kind!r}")
