"""End-to-end training (issue 12): backbones fine-tuned with the fusion model from packed crops and spectrograms.

The data path cuts windows from the memory-mapped packed inputs (:mod:`avaffect.features.e2e_inputs`): one slice per
window for the crops, one vectorised gather for the spectrogram segments, augmentation by index arithmetic — no
per-frame Python loop — in DataLoader worker processes, uint8 crops to the device (a quarter of float32's bytes),
normalised there. Validation windows take the centre crop with the extractor's own function, so the exported
backbones (:func:`export_backbones`) compute, in ``predict``, what the model was validated on.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset

from avaffect.config import AugmentConfig, EndToEndConfig, TrainingConfig
from avaffect.data.windows import cut_window, window_mask, window_starts
from avaffect.features.backbones.base import TorchExtractor, network_segments
from avaffect.features.backbones.resnet import prepare_crops
from avaffect.features.e2e_inputs import PackedInputs
from avaffect.features.extractors.base import ExtractorSpec
from avaffect.files import atomic_path, sha256_file
from avaffect.models.e2e import EndToEndRegressor, FrameBackbone, clip_preparer, float_preparer, image_preparer
from avaffect.models.wrapper import AVRegressor
from avaffect.training.module import AffectRegressionModule
from avaffect.training.schedules import StageSchedule

log = logging.getLogger(__name__)

__all__ = ["CropWindowDataset", "EndToEndModule", "build_end_to_end", "export_backbones", "fit_head_normalization",
           "BACKBONE_DIR"]

BACKBONE_DIR = "backbones"  # RUN/backbones/<modality>-<extractor>-<sha8>.safetensors: the fine-tuned weights


@dataclass(frozen=True)
class CropGeometry:
    """How a ``crop_size`` crop becomes an ``input_size`` network input: ``resize`` as the extractor's
    ``prepare_crops`` (centre crop or resize) at validation; at training, optionally a random square and a flip.
    ``clips``: the backbone takes a clip of crops per step (its extractor's ``clip_plan``)."""

    crop_size: int
    input_size: int
    resize: str
    clips: bool = False

    @classmethod
    def of(cls, video: TorchExtractor) -> CropGeometry:
        p = video.params
        clips = hasattr(video, "clip_plan")  # the clip extractor always resizes its crops
        return cls(int(p["crop_size"]), int(p["input_size"]), "resize" if clips else str(p["resize"]), clips)


def augment_crops(crops: np.ndarray, geometry: CropGeometry, augment: AugmentConfig,
                  rng: np.random.Generator) -> np.ndarray:
    """Random ``input_size`` squares and horizontal flips of uint8 crops ``[L, S, S, 3]`` (per frame or one draw
    per window), by fancy indexing: one gather, no loop."""
    n, s = len(crops), crops.shape[1]
    size = geometry.input_size if augment.random_crop else s
    draws = n if augment.per == "frame" else 1
    oy = rng.integers(0, s - size + 1, draws) if size < s else np.zeros(draws, np.int64)
    ox = rng.integers(0, s - size + 1, draws) if size < s else np.zeros(draws, np.int64)
    flip = rng.random(draws) < 0.5 if augment.hflip else np.zeros(draws, bool)
    if draws == 1:
        oy, ox, flip = (np.repeat(a, n) for a in (oy, ox, flip))
    cols = np.arange(size)
    cols = np.where(flip[:, None], size - 1 - cols[None, :], cols[None, :])  # [n, size]
    rows = oy[:, None] + np.arange(size)[None, :]
    cols = ox[:, None] + cols
    out = crops[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if size != geometry.input_size:  # no random crop: bring the (flipped) crop to the network's size
        out = prepare_crops(np.ascontiguousarray(out), geometry.input_size, geometry.resize)
    return out


class CropWindowDataset(Dataset):
    """Windows of packed end-to-end inputs: ``crops`` uint8 ``[L, s, s, 3]``, ``segments`` float32
    ``[L, 1, ...]``, ``labels`` (NaN outside annotations), ``mask``, ``face_mask``, ``allowed`` (the
    recording's own face mask), ``rec``, ``start``. ``train``: augmented crops, else the validation crop."""

    def __init__(self, inputs: list[PackedInputs], labels: list[np.ndarray], allowed: list[np.ndarray],
                 length: int, hop: int, geometry: CropGeometry, augment: AugmentConfig | None = None,
                 clip_plans: list[np.ndarray] | None = None) -> None:
        self.inputs, self.labels, self.allowed = inputs, labels, allowed
        self.length, self.geometry, self.augment = length, geometry, augment
        if geometry.clips and clip_plans is None:
            raise ValueError("a clip backbone needs each recording's clip plan")
        self.clip_plans = clip_plans  # per recording [T, k] step indices (-1: blank), for clip backbones
        self.index = [(i, int(s)) for i, r in enumerate(inputs) for s in window_starts(len(r), length, hop)]

    def __len__(self) -> int:
        return len(self.index)

    def without_augmentation(self) -> CropWindowDataset:
        """The same windows (sharing the packed inputs) with the validation crop instead of augmentation."""
        view = copy.copy(self)
        view.augment = None
        return view

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        i, s = self.index[j]
        r, n = self.inputs[i], self.length
        if self.clip_plans is not None:  # [L, k] crops per window: the clips of its steps, blank where -1
            idx = cut_window(self.clip_plans[i], s, n, pad_value=-1)
            crops = np.zeros((*idx.shape, *r.crops.shape[1:]), np.uint8)
            crops[idx >= 0] = r.crops[idx[idx >= 0]]
            shape = idx.shape
            crops = crops.reshape(-1, *r.crops.shape[1:])
        else:
            shape = None
            crops = cut_window(r.crops, s, n)  # one read of the memory map
        if self.augment is not None:
            # a fresh draw per item from torch's generator (seeded per worker by Lightning's seed_everything)
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            crops = augment_crops(crops, self.geometry, self.augment, rng)
        else:
            crops = prepare_crops(crops, self.geometry.input_size, self.geometry.resize)
        if shape is not None:
            crops = crops.reshape(*shape, *crops.shape[1:])
        first = cut_window(r.first, s, n, pad_value=0)
        segments = network_segments(r.frames, first, r.segment_length, r.pad, r.time_major)
        return {
            "crops": torch.from_numpy(np.ascontiguousarray(crops)),
            "segments": torch.from_numpy(segments),
            "labels": torch.as_tensor(cut_window(self.labels[i], s, n, np.nan), dtype=torch.float32),
            "mask": torch.as_tensor(window_mask(len(r), s, n)),
            "face_mask": torch.as_tensor(cut_window(r.face_mask, s, n, False)),
            "allowed": torch.as_tensor(cut_window(self.allowed[i], s, n, False)),
            "rec": torch.tensor(i),
            "start": torch.tensor(s),
        }


def _backbone(extractor: TorchExtractor, tuning, prepare, channels_last: bool, compile_: bool) -> FrameBackbone:
    net = extractor.fresh_network()  # the weight file, or (allow_random) the extractor's own random weights
    backbone = FrameBackbone(net, extractor.dim, prepare, tuning.unfreeze, tuning.chunk, channels_last)
    if compile_:
        backbone.compile_network()
    return backbone


def build_end_to_end(e2e: EndToEndConfig, video: TorchExtractor, audio: TorchExtractor, head: AVRegressor
                     ) -> EndToEndRegressor:
    """The end-to-end model of a run: the extractors' networks (their weights, or random init) + ``head``."""
    prepare = (clip_preparer(video.params["normalize"]) if hasattr(video, "clip_plan")
               else image_preparer(video.params["normalize"], int(video.params["input_size"])))
    v = _backbone(video, e2e.video, prepare, e2e.channels_last and not hasattr(video, "clip_plan"), e2e.compile)
    a = _backbone(audio, e2e.audio, float_preparer, e2e.channels_last, e2e.compile)
    return EndToEndRegressor(v, a, head, black_frames=video.params.get("missing_face") == "black_frame")


def head_face_mask(model: EndToEndRegressor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The steps whose visual vector the head keeps: with black frames the recording's own face mask (a black
    crop's features count, as the exported extractor's do), else the steps with a face found."""
    return batch["allowed"] if model.black_frames else batch["face_mask"]


@torch.no_grad()
def fit_head_normalization(model: EndToEndRegressor, data: CropWindowDataset, max_windows: int = 64,
                           batch_size: int = 8) -> None:
    """Fit the head's input statistics on the *initial* backbones' features of up to ``max_windows`` training
    windows (evenly spaced), as cached-feature training fits them on its frozen features: the head starts from
    standardised inputs whatever the backbones' scale. The statistics then stay fixed while the backbones
    train (the head adapts to the drift); they are saved with the head, so the exported model applies them."""
    picks = np.unique(np.linspace(0, len(data) - 1, min(max_windows, len(data))).astype(int))
    was = model.training
    model.eval()
    audio, video = [], []
    for lo in range(0, len(picks), batch_size):
        items = [data[int(j)] for j in picks[lo:lo + batch_size]]
        batch = {k: torch.stack([it[k] for it in items]) for k in ("crops", "segments", "mask", "face_mask",
                                                                   "allowed")}
        keep = batch["mask"]
        faces = head_face_mask(model, batch) & keep
        audio.append(model.audio(batch["segments"])[keep].numpy())
        video.append(model.video(batch["crops"])[faces].numpy())
    model.train(was)
    model.head.set_normalization(np.concatenate(audio), np.concatenate(video))


class EndToEndModule(AffectRegressionModule):
    """:class:`AffectRegressionModule` on crop/spectrogram windows: per-layer-group learning rates
    (``end_to_end.*.lr_scale``) and gradual unfreezing at each epoch start — by epoch, or by stage
    (``release: plateau``: a :class:`StageSchedule` on the validation score; a new stage restarts every group's
    learning rate, the warm-up and the plateau scheduler, as ABAW8 does for each new layer group)."""

    def __init__(self, model: EndToEndRegressor, cfg: TrainingConfig, e2e: EndToEndConfig, val_recordings,
                 protocol: str = "global", targets=("valence", "arousal")) -> None:
        super().__init__(model, cfg, val_recordings, protocol, tuple(targets))
        self.e2e = e2e
        self.stages = None
        if e2e.release == "plateau":
            last = max([*e2e.video.unfreeze.values(), *e2e.audio.unfreeze.values(), 0])
            self.stages = StageSchedule(last, e2e.release_patience)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["crops"], batch["segments"], batch["mask"], head_face_mask(self.model, batch))

    def configure_optimizers(self):
        groups = self.model.param_groups(self.cfg.lr, self.e2e.video.lr_scale, self.e2e.audio.lr_scale)
        return self._optimizer(groups)

    def on_train_epoch_start(self) -> None:
        self.model.set_epoch(self.current_epoch, None if self.stages is None else self.stages.stage)

    def warmup_origin(self) -> int:
        return 0 if self.stages is None else self.stages.start_epoch

    def end_of_validation(self, score: float) -> None:
        super().end_of_validation(score)
        if self.stages is not None and self.stages.update(score, self.current_epoch):
            self.restart_learning_rates()
            log.info("epoch %d: no better validation score for %d epochs: stage %d starts (groups %s), learning "
                     "rates restarted", self.current_epoch, self.stages.patience, self.stages.stage,
                     ", ".join(self.model.video.trainable_groups(self.stages.stage)
                               + self.model.audio.trainable_groups(self.stages.stage)))

    def restart_learning_rates(self) -> None:
        for opt in self.trainer.optimizers:
            for g in opt.param_groups:
                g["lr"], g["warmup_factor"] = g["base_lr"], 1.0
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                config.scheduler._reset()  # its best score and bad-epoch count start again
        stopper = self.trainer.early_stopping_callback
        if stopper is not None:
            stopper.wait_count = 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.stages is not None:
            checkpoint["stages"] = self.stages.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.stages is not None and "stages" in checkpoint:
            self.stages.load_state_dict(checkpoint["stages"])


def export_backbones(model: EndToEndRegressor, video: ExtractorSpec, audio: ExtractorSpec, run_dir: Path
                     ) -> tuple[ExtractorSpec, ExtractorSpec]:
    """Write the fine-tuned backbone weights under ``RUN/backbones/`` (file named by content hash, so every
    fine-tune gets its own feature-store id) and return the extractor specs that load them: ``weights`` is the
    path relative to the run folder (``predict`` resolves it beside the checkpoint) and ``allow_random`` off."""
    out = []
    for modality, spec, backbone in (("video", video, model.video), ("audio", audio, model.audio)):
        state = {k: v.detach().cpu().contiguous() for k, v in backbone.net.state_dict().items()}
        folder = run_dir / BACKBONE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        tmp_name = folder / f"{modality}-{spec.name}.safetensors"
        with atomic_path(tmp_name) as tmp:
            save_file(state, str(tmp))
        final = folder / f"{modality}-{spec.name}-{sha256_file(tmp_name)[:8]}.safetensors"
        tmp_name.replace(final)
        params = {**spec.params, "weights": f"{BACKBONE_DIR}/{final.name}", "allow_random": False}
        out.append(ExtractorSpec(name=spec.name, params=params))
    return out[0], out[1]
