"""The Lightning module: CCC loss on windows, validation on stitched full recordings (SPEC §7)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from avaffect.config import TrainingConfig
from avaffect.data.recording import TARGETS
from avaffect.data.windows import stitch
from avaffect.evaluation.metrics import score_recordings
from avaffect.features.pipeline import RecordingFeatures
from avaffect.models.wrapper import AVRegressor
from avaffect.training.losses import ccc_loss


class AffectRegressionModule(L.LightningModule):
    """Trains an :class:`AVRegressor` with the CCC loss; logs ``val/ccc_<target>`` and ``val/p_va``
    computed with the chosen protocol on validation recordings reassembled from their windows."""

    def __init__(self, model: AVRegressor, cfg: TrainingConfig, val_recordings: list[RecordingFeatures],
                 protocol: str = "global", targets: tuple[str, ...] = TARGETS) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.val_recordings = val_recordings
        self.protocol = protocol
        self.targets = targets
        self._val_buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.last_val_predictions: dict[str, np.ndarray] = {}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["audio"], batch["video"], batch["mask"], batch["face_mask"])

    def _loss(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return ccc_loss(pred.float(), batch["labels"], batch["mask"], reduction=self.cfg.loss_reduction)

    def on_train_epoch_start(self) -> None:
        # models whose behaviour depends on the epoch (e.g. DLSTM-ATT bypasses its embedding attention
        # for the first epochs) expose set_epoch(epoch)
        net = getattr(self.model, "net", self.model)
        if hasattr(net, "set_epoch"):
            net.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx):
        loss = self._loss(self(batch), batch)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch["rec"]))
        return loss

    def validation_step(self, batch, batch_idx):
        pred = self(batch)
        self.log("val/loss", self._loss(pred, batch), on_step=False, on_epoch=True, batch_size=len(batch["rec"]))
        self._val_buffer.append((batch["rec"].cpu().numpy(), batch["start"].cpu().numpy(),
                                 pred.detach().float().cpu().numpy()))

    def on_validation_epoch_end(self) -> None:
        buffer, self._val_buffer = self._val_buffer, []
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            # DDP: every rank saw some windows; stitch full recordings from all of them (a window that the
            # sampler repeated to even out the ranks is averaged with itself, which changes nothing)
            parts: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, buffer)
            buffer = [b for part in parts for b in part]
        if not buffer:
            return
        recs = np.concatenate([b[0] for b in buffer])
        starts = np.concatenate([b[1] for b in buffer])
        preds = np.concatenate([b[2] for b in buffer])
        stitched, labels = {}, {}
        for i, r in enumerate(self.val_recordings):
            sel = recs == i
            if not sel.any():
                continue
            stitched[r.name] = stitch(preds[sel], starts[sel], len(r))
            labels[r.name] = r.labels
        overall, _ = score_recordings(stitched, labels, self.protocol, self.targets)
        self.last_val_predictions = stitched
        for k in [f"ccc_{t}" for t in self.targets] + (["p_va"] if "p_va" in overall else []):
            value = overall[k] if np.isfinite(overall[k]) else -1.0  # nothing scorable: worst value
            self.log(f"val/{k}", float(value), prog_bar=k in ("p_va", "ccc_valence", "ccc_arousal"))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=self.cfg.lr_factor,
                                                           patience=self.cfg.lr_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": f"val/{self.cfg.monitor_key()}"}}
