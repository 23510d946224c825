"""One line per epoch when training is not watched on a terminal (logs, CI, cluster jobs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import lightning as L

from avaffect.progress import format_seconds

__all__ = ["EpochLines", "StepTimes"]


class EpochLines(L.Callback):
    """After each epoch: ``label: epoch n/max, train loss, the monitored validation score (best so far), time per
    epoch, and an ETA`` for the remaining epochs at most (early stopping may end sooner)."""

    def __init__(self, label: str, monitor: str, stream: TextIO | None = None) -> None:
        self.label, self.monitor = label, monitor
        self.stream = stream if stream is not None else sys.stderr
        self.best: float | None = None
        self.start: float | None = None
        self.first_epoch: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.monotonic()
        self.first_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.global_rank != 0 or self.start is None:
            return
        m = trainer.callback_metrics
        epoch = trainer.current_epoch + 1
        parts = [f"{self.label}: epoch {epoch}/{trainer.max_epochs}"]
        if "train/loss" in m:
            parts.append(f"loss {float(m['train/loss']):.4f}")
        if self.monitor in m:
            score = float(m[self.monitor])
            self.best = score if self.best is None else max(self.best, score)
            parts.append(f"{self.monitor.split('/', 1)[-1]} {score:.4f} (best {self.best:.4f})")
        done = epoch - (self.first_epoch or 0)
        per = (time.monotonic() - self.start) / max(1, done)
        parts.append(f"{format_seconds(per)}/epoch")
        left = (trainer.max_epochs or epoch) - epoch
        if left > 0:
            parts.append(f"ETA at most {format_seconds(left * per)}")
        print(", ".join(parts), file=self.stream, flush=True)


class StepTimes(L.Callback):
    """Where the time of a fit goes: training steps (count and time from batch start to batch end, the loader's
    wait excluded), the time spent waiting for batches, and validation runs, their stitching and scoring included
(``as_dict`` for ``timings.json``)."""

    def __init__(self) -> None:
        self.steps, self.step_s, self.wait_s, self.val_s, self.val_epochs = 0, 0.0, 0.0, 0.0, 0
        self._t: float | None = None
        self._end: float | None = None
        self._val: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._end = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()
        if self._end is not None:
            self.wait_s += self._t - self._end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end = time.perf_counter()
        if self._t is not None:
            self.steps += 1
            self.step_s += self._end - self._t

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:  # after the module's stitching and scoring
        if self._val is not None:
            self.val_s += time.perf_counter() - self._val
            self.val_epochs += 1
        self._end = None  # the wait for the next epoch's first batch starts at its epoch start

    def as_dict(self) -> dict:
        return {"train_steps": self.steps, "train_step_s": round(self.step_s, 3),
                "train_steps_per_s": round(self.steps / self.step_s, 3) if self.step_s else None,
                "batch_wait_s": round(self.wait_s, 3), "validation_epochs": self.val_epochs,
                "validation_s": round(self.val_s, 3)}
