"""One line per epoch when training is not watched on a terminal (logs, CI, cluster jobs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import lightning as L

from avaffect.progress import format_seconds

__all__ = ["EpochLines"]


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
