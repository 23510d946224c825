"""The training pieces the papers use: warm-up, minimum LR, reload-best, MSE / CCC+MSE losses."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from avaffect.config import ModalityDropout, TrainingConfig, WarmupConfig, make_config
from avaffect.errors import ConfigError
from avaffect.features.run_features import RecordingFeatures
from avaffect.models.wrapper import AVRegressor
from avaffect.training.datamodule import WindowDataModule
from avaffect.training.losses import ccc_loss, masked_mse, regression_loss
from avaffect.training.module import AffectRegressionModule, drop_modalities
from avaffect.training.schedules import warmup_factor


def _feats(n: int, seed: int) -> list[RecordingFeatures]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = 40
        labels = np.tanh(rng.normal(size=(t, 2))).astype(np.float32)
        out.append(RecordingFeatures(f"r{seed}{i}", rng.normal(size=(t, 3)).astype(np.float32),
                                     rng.normal(size=(t, 4)).astype(np.float32), labels, np.ones(t, bool),
                                     np.arange(t) / 25.0))
    return out


def _fit(training: dict, epochs: int = 3) -> tuple[AffectRegressionModule, list[float]]:
    cfg = TrainingConfig(**{"window": 10, "hop": 10, "batch_size": 4, "max_epochs": epochs, **training})
    torch.manual_seed(0)
    model = AVRegressor("concat", 3, 4, {"hidden": 4, "head_hidden": 4})
    module = AffectRegressionModule(model, cfg, _feats(2, 1))
    lrs: list[float] = []

    class Record(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            lrs.append(optimizer.param_groups[0]["lr"])

    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[Record()])
    trainer.fit(module, datamodule=WindowDataModule(_feats(4, 0), _feats(2, 1), 10, 10, 4))
    return module, lrs


def test_warmup_factors():
    linear = WarmupConfig(kind="linear", epochs=2, start_factor=0.1)
    assert warmup_factor(linear, 0, 0, 10) == pytest.approx(0.1)
    assert warmup_factor(linear, 1, 0, 10) == pytest.approx(0.55)
    assert warmup_factor(linear, 2, 0, 10) == 1.0
    rep = WarmupConfig(kind="repetitive", epochs=2, start_factor=0.2)
    assert [warmup_factor(rep, e, 0, 4) for e in (0, 1, 2)] == pytest.approx([0.2, 0.2, 1.0])
    assert warmup_factor(rep, 1, 2, 4) == pytest.approx(0.6)
    assert warmup_factor(WarmupConfig(), 0, 0, 4) == 1.0
    with pytest.raises(ValueError):
        WarmupConfig(kind="linear", epochs=0)


def test_warmup_lowers_the_first_steps_lr_then_reaches_the_base_lr():
    _, lrs = _fit({"lr": 1e-2, "warmup": {"kind": "linear", "epochs": 2, "start_factor": 0.1}})
    per_epoch = len(lrs) // 3
    assert lrs[0] == pytest.approx(1e-3) and lrs[0] < 1e-2
    assert all(a < b for a, b in zip(lrs[: 2 * per_epoch - 1], lrs[1: 2 * per_epoch]))
    assert lrs[2 * per_epoch:] == pytest.approx([1e-2] * per_epoch)


def test_no_warmup_means_the_base_lr_from_the_first_step():
    _, lrs = _fit({"lr": 1e-2})
    assert lrs == pytest.approx([1e-2] * len(lrs))


def test_lr_min_bounds_the_plateau_scheduler():
    module = AffectRegressionModule(AVRegressor("concat", 3, 4, {"hidden": 4, "head_hidden": 4}),
                                    TrainingConfig(lr=1e-3, lr_min=1e-5, lr_factor=0.1), [])
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert sched.min_lrs == [1e-5]
    for _ in range(20):
        sched.step(0.0)
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_reload_best_restores_the_best_epochs_weights():
    module = AffectRegressionModule(AVRegressor("concat", 3, 4, {"hidden": 4, "head_hidden": 4}),
                                    TrainingConfig(reload_best=True), [])

    def weights():
        return {k: v.clone() for k, v in module.model.state_dict().items()}

    def perturb():
        with torch.no_grad():
            for p in module.model.parameters():
                p.add_(1.0)

    assert not module.track_best(0.5)
    best = weights()
    perturb()
    assert module.track_best(0.3)  # worse: the epoch is undone
    for k, v in module.model.state_dict().items():
        torch.testing.assert_close(v, best[k])
    perturb()
    assert not module.track_best(0.7) and module.best_score == 0.7  # better: kept
    name, param = next(iter(module.model.named_parameters()))
    assert not torch.equal(param, best[name])


def test_reload_best_runs_at_the_end_of_each_validation(monkeypatch):
    seen = []
    monkeypatch.setattr(AffectRegressionModule, "track_best", lambda self, s: seen.append(s) or False)
    _fit({"reload_best": True}, epochs=2)
    assert len(seen) == 2 and all(np.isfinite(seen))
    seen.clear()
    _fit({}, epochs=2)
    assert seen == []


def test_mse_losses_against_numpy():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(2, 5, 2)).astype(np.float32)
    target = rng.normal(size=(2, 5, 2)).astype(np.float32)
    target[0, 1, 0] = np.nan
    mask = np.ones((2, 5), bool)
    mask[1, 4] = False
    valid = mask[..., None] & np.isfinite(target)
    expected = sum(np.mean(((pred - target)[..., k])[valid[..., k]] ** 2) for k in range(2))
    p, t, m = torch.as_tensor(pred), torch.as_tensor(target), torch.as_tensor(mask)
    assert masked_mse(p, t, m).item() == pytest.approx(expected, rel=1e-5)
    assert regression_loss(p, t, m, "mse").item() == pytest.approx(expected, rel=1e-5)
    both = regression_loss(p, t, m, "ccc+mse", mse_weight=0.5).item()
    assert both == pytest.approx(ccc_loss(p, t, m).item() + 0.5 * expected, rel=1e-5)


def test_the_configured_loss_is_the_one_trained():
    module, _ = _fit({"loss": "mse"}, epochs=1)
    batch = next(iter(torch.utils.data.DataLoader(
        WindowDataModule(_feats(1, 0), [], 10, 10).train_set, batch_size=2)))
    pred = module(batch)
    assert module._loss(pred, batch).item() == pytest.approx(masked_mse(pred, batch["labels"], batch["mask"]).item())
    assert make_config({"training": {"loss": "ccc+mse"}}).training.loss == "ccc+mse"


def test_modality_dropout_drops_one_modality_per_window_at_the_configured_rates():
    torch.manual_seed(1)
    n, length = 4000, 6
    batch = {"audio": torch.randn(n, length, 3), "video": torch.randn(n, length, 4),
             "face_mask": torch.ones(n, length, dtype=torch.bool), "labels": torch.randn(n, length, 2)}
    mean = torch.tensor([0.5, -1.0, 2.0])
    assert drop_modalities(batch, mean, ModalityDropout()) is batch  # off: untouched
    out = drop_modalities(batch, mean, ModalityDropout(voice=0.3, face=0.2))
    voice = (out["audio"] == mean).all(-1).all(-1)
    kept_voice = (out["audio"] == batch["audio"]).all(-1).all(-1)
    face = ~out["face_mask"].any(-1)
    assert bool((voice ^ kept_voice).all())  # a window's voice is dropped whole or kept whole
    assert bool((out["face_mask"].all(-1) | face).all())
    assert not bool((voice & face).any())  # never both
    assert abs(voice.float().mean().item() - 0.3) < 0.03 and abs(face.float().mean().item() - 0.2) < 0.03
    assert out["video"] is batch["video"] and out["labels"] is batch["labels"]
    # the batch a caller holds is not changed
    assert bool(batch["face_mask"].all()) and not bool((batch["audio"] == mean).all(-1).all(-1).any())


def test_training_steps_see_the_dropped_windows_and_validation_does_not(monkeypatch):
    seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    forward = AffectRegressionModule.forward

    def spy(self, batch):
        seen[self.training].append(batch["audio"].clone())
        return forward(self, batch)

    monkeypatch.setattr(AffectRegressionModule, "forward", spy)
    module, _ = _fit({"modality_dropout": {"voice": 1.0}}, epochs=1)
    mean = module.model.audio_mean
    assert seen[True] and all(bool((a == mean).all()) for a in seen[True])
    assert seen[False] and not any(bool((a == mean).all()) for a in seen[False])


def test_modality_dropout_is_validated():
    with pytest.raises(ValueError, match="at most 1"):
        TrainingConfig(modality_dropout={"voice": 0.7, "face": 0.5})
    with pytest.raises(ConfigError, match="end-to-end"):
        make_config({"training": {"modality_dropout": {"voice": 0.2}}, "end_to_end": {"enabled": True}})
