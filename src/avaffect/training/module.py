"""The Lightning module: the training loss on windows, validation on stitched full recordings (docs/design.md §7).

Optimisation follows ``training``: Adam/AdamW/SGD with weight decay, ReduceLROnPlateau on the validation score
(factor, patience, ``lr_min``), an optional warm-up factor per step (:mod:`avaffect.training.schedules`), and
optionally ``reload_best``: an epoch that ends worse than the best so far is undone (the best weights are
reloaded; the optimiser keeps its state)."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch

from avaffect.config import ModalityDropout, TrainingConfig
from avaffect.data.recording import TARGETS
from avaffect.data.windows import Stitcher
from avaffect.evaluation.metrics import score_recordings
from avaffect.features.run_features import RecordingFeatures
from avaffect.models.wrapper import AVRegressor
from avaffect.training.losses import regression_loss
from avaffect.training.schedules import warmup_factor


def rng_state() -> dict:
    """The random states training draws from (torch, NumPy, Python), as tensors and plain values (a checkpoint
    holding them still loads with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy": [int(pos), int(has_gauss), float(gauss)], "python": torch.tensor(internal, dtype=torch.int64),
            "python_meta": [int(version), gauss_next]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, gauss_next = state["python_meta"]
    random.setstate((version, tuple(int(x) for x in state["python"].tolist()), gauss_next))


def drop_modalities(batch: dict[str, torch.Tensor], audio_mean: torch.Tensor, p: ModalityDropout
                    ) -> dict[str, torch.Tensor]:
    """``training.modality_dropout``: a copy of ``batch`` in which each window has lost its voice with probability
    ``p.voice`` (``audio`` := ``audio_mean`` on every step, what a video without an audio track gets) or else its
    face with probability ``p.face`` (``face_mask`` := False). Drawn from torch's CPU generator, whose state a
    checkpoint carries, so a resumed run drops the same windows as an uninterrupted one."""
    if not p.enabled:
        return batch
    u = torch.rand(batch["audio"].shape[0]).to(batch["audio"].device)
    voice = (u < p.voice)[:, None, None]
    face = ((u >= p.voice) & (u < p.voice + p.face))[:, None]
    return {**batch, "audio": torch.where(voice, audio_mean.to(batch["audio"].dtype), batch["audio"]),
            "face_mask": batch["face_mask"] & ~face}


class AffectRegressionModule(L.LightningModule):
    """Trains an :class:`AVRegressor` with ``training.loss``; logs ``val/ccc_<target>`` and ``val/p_va``
    computed with the chosen protocol on validation recordings reassembled from their windows."""

    def __init__(self, model: AVRegressor, cfg: TrainingConfig, val_recordings: list[RecordingFeatures],
                 protocol: str = "global", targets: tuple[str, ...] = TARGETS) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.val_recordings = val_recordings
        self.protocol = protocol
        self.targets = targets
        self._val_buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # DDP: this rank's windows
        self._stitchers: dict[int, Stitcher] = {}  # one process: windows stitched as they arrive
        self.last_val_predictions: dict[str, np.ndarray] = {}
        self.best_score: float | None = None  # reload_best: the best validation score and its weights
        self._best_state: dict[str, torch.Tensor] | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["audio"], batch["video"], batch["mask"], batch["face_mask"])

    def _loss(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return regression_loss(pred.float(), batch["labels"], batch["mask"], self.cfg.loss, self.cfg.loss_reduction,
                               self.cfg.mse_weight)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self.cfg.warmup.kind == "none":
            return
        f = warmup_factor(self.cfg.warmup, self.current_epoch - self.warmup_origin(), batch_idx,
                          int(self.trainer.num_training_batches))
        for opt in self.trainer.optimizers:
            for g in opt.param_groups:
                base = g["lr"] / g.get("warmup_factor", 1.0)  # keeps what the plateau scheduler set meanwhile
                g["lr"], g["warmup_factor"] = base * f, f

    def warmup_origin(self) -> int:
        """The epoch the warm-up counts from (0; a later stage of end-to-end training restarts it)."""
        return 0

    def track_best(self, score: float) -> bool:
        """``reload_best``: remember the weights of a new best ``score``; after a worse epoch, reload the best
        weights. Returns True when weights were reloaded."""
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self._best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            return False
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
            return True
        return False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.cfg.reload_best and self._best_state is not None:  # tensors only: readable with weights_only
            checkpoint["reload_best"] = {"score": torch.tensor(self.best_score), "state": self._best_state}
        checkpoint["rng_state"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("reload_best")
        if saved is not None:
            self.best_score, self._best_state = float(saved["score"]), dict(saved["state"])
        if "rng_state" in checkpoint:  # a resumed run draws the same shuffles and dropout masks as an uninterrupted one
            set_rng_state(checkpoint["rng_state"])

    def on_train_epoch_start(self) -> None:
        # models whose behaviour depends on the epoch (e.g. DLSTM-ATT bypasses its embedding attention
        # for the first epochs) expose set_epoch(epoch)
        net = getattr(self.model, "net", self.model)
        if hasattr(net, "set_epoch"):
            net.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx):
        if self.cfg.modality_dropout.enabled:  # feature training only (the config refuses it end to end)
            batch = drop_modalities(batch, self.model.audio_mean, self.cfg.modality_dropout)
        loss = self._loss(self(batch), batch)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch["rec"]))
        return loss

    def validation_step(self, batch, batch_idx):
        pred = self(batch)
        self.log("val/loss", self._loss(pred, batch), on_step=False, on_epoch=True, batch_size=len(batch["rec"]))
        recs, starts, preds = (batch["rec"].cpu().numpy(), batch["start"].cpu().numpy(),
                               pred.detach().float().cpu().numpy())
        if self._distributed():
            self._val_buffer.append((recs, starts, preds))
        else:
            self._stitch(recs, starts, preds)

    def _distributed(self) -> bool:
        return self.trainer.world_size > 1 and torch.distributed.is_initialized()

    def _stitch(self, recs: np.ndarray, starts: np.ndarray, preds: np.ndarray) -> None:
        """Add windows to their recordings' running sums (in arrival order: the validation loader's, in order)."""
        for i in np.unique(recs):
            sel = recs == i
            if int(i) not in self._stitchers:
                self._stitchers[int(i)] = Stitcher(len(self.val_recordings[int(i)]), preds.shape[-1])
            self._stitchers[int(i)].add(preds[sel], starts[sel])

    def on_validation_epoch_end(self) -> None:
        buffer, self._val_buffer = self._val_buffer, []
        if self._distributed():
            # DDP: every rank saw some windows; stitch full recordings from all of them
            parts: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, buffer)
            buffer = [b for part in parts for b in part]
            if buffer:
                recs = np.concatenate([b[0] for b in buffer])
                starts = np.concatenate([b[1] for b in buffer])
                preds = np.concatenate([b[2] for b in buffer])
                # a window seen twice (DDP's sampler repeats windows to even out the ranks) counts once: a repeat
                # would weigh its steps double where windows overlap
                _, first = np.unique(np.stack([recs, starts], axis=1), axis=0, return_index=True)
                self._stitch(recs[first], starts[first], preds[first])
        stitchers, self._stitchers = self._stitchers, {}
        if not stitchers:
            return
        stitched, labels = {}, {}
        for i, r in enumerate(self.val_recordings):
            if i in stitchers:
                stitched[r.name] = stitchers[i].result()
                labels[r.name] = r.labels
        overall, _ = score_recordings(stitched, labels, self.protocol, self.targets)
        self.last_val_predictions = stitched
        for k in [f"ccc_{t}" for t in self.targets] + (["p_va"] if "p_va" in overall else []):
            value = overall[k] if np.isfinite(overall[k]) else -1.0  # nothing scorable: worst value
            self.log(f"val/{k}", float(value), prog_bar=k in ("p_va", "ccc_valence", "ccc_arousal"))
        if not self.trainer.sanity_checking:
            key = self.cfg.monitor_key()
            self.end_of_validation(float(overall[key]) if np.isfinite(overall[key]) else -1.0)

    def end_of_validation(self, score: float) -> None:
        """What an epoch's validation score drives besides logging (here: ``reload_best``)."""
        if self.cfg.reload_best:
            self.track_best(score)

    def configure_optimizers(self):
        return self._optimizer(self.model.parameters())

    def _optimizer(self, params):
        """``training.optimizer`` over ``params`` (tensors or parameter groups) with its plateau scheduler."""
        c = self.cfg
        if c.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        elif c.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=c.lr_factor,
                                                           patience=c.lr_patience, min_lr=c.lr_min)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": f"val/{self.cfg.monitor_key()}"}}
