"""Every registered preset trains for a few steps with the real Lightning module on real features."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from avaffect.config import make_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.models import list_models
from avaffect.training.datamodule import WindowDataModule
from avaffect.training.module import AffectRegressionModule
from avaffect.training.run import build_model


@pytest.fixture(scope="module")
def features(synth_root, tmp_path_factory):
    cfg = make_config({"data": {"root": str(synth_root)},
                       "features": {"store": str(tmp_path_factory.mktemp("store"))}})
    recs = load_affwild2(synth_root, splits=("train", "validation"))
    pipeline = cfg.feature_pipeline()
    feats = {f.name: f for f in pipeline.load_all(recs, progress=False)}
    train = [feats[r.name] for r in recs if r.split == "train"]
    val = [feats[r.name] for r in recs if r.split == "validation"]
    return cfg, train, val


@pytest.mark.parametrize("name", list_models())
def test_preset_trains_a_few_steps(name, features):
    base, train, val = features
    cfg = make_config(base.model_dump(mode="json"), {
        "model": {"name": name}, "training": {"window": 40, "hop": 40, "batch_size": 4, "max_epochs": 1}})
    torch.manual_seed(0)
    model = build_model(cfg, train[0].audio.shape[1], train[0].video.shape[1])
    model.set_normalization(np.concatenate([f.audio for f in train]),
                            np.concatenate([f.video[f.face_mask] for f in train]))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    module = AffectRegressionModule(model, cfg.training, val)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    trainer.fit(module, datamodule=WindowDataModule(train, val, 40, 40, 4))
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert changed, f"{name}: no parameter changed after 3 training steps"
    assert np.isfinite(trainer.callback_metrics["val/p_va"].item())
