"""Learning-rate warm-up factors (``training.warmup``), applied per optimisation step on top of the
plateau scheduler: the factor multiplies whatever LR ReduceLROnPlateau has set."""

from __future__ import annotations

from avaffect.config import WarmupConfig

__all__ = ["warmup_factor", "StageSchedule"]


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


class StageSchedule:
    """Stages released on a validation plateau (``end_to_end.release: plateau``): stage 0 from the start; the
    next when ``patience`` epochs in a row did not beat the best score of the current stage; never past
    ``last``. :meth:`update` takes each epoch's score and says whether a new stage starts with the next epoch.
    Its state is plain numbers (saved in Lightning checkpoints, read back with ``weights_only``)."""

    def __init__(self, last: int, patience: int) -> None:
        self.last, self.patience = int(last), int(patience)
        self.stage, self.best, self.bad, self.start_epoch = 0, float("-inf"), 0, 0

    def update(self, score: float, epoch: int) -> bool:
        if score > self.best:
            self.best, self.bad = score, 0
            return False
        self.bad += 1
        if self.bad < self.patience or self.stage >= self.last:
            return False
        self.stage, self.best, self.bad, self.start_epoch = self.stage + 1, float("-inf"), 0, epoch + 1
        return True

    def state_dict(self) -> dict:
        return {"stage": self.stage, "best": self.best, "bad": self.bad, "start_epoch": self.start_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.stage, self.best = int(state["stage"]), float(state["best"])
        self.bad, self.start_epoch = int(state["bad"]), int(state["start_epoch"])
