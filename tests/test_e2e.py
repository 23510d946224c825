"""End-to-end training (issue 12): packed inputs, augmentation, gradual unfreezing, a real run killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from avaffect.cli.main import main
from avaffect.config import AugmentConfig, make_config
from avaffect.data.datasets import load_dataset
from avaffect.features.e2e_inputs import InputCache
from avaffect.features.extractors import get_extractor
from avaffect.features.faces.crops import face_crops
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.features.run_features import RecordingFeatures
from avaffect.media import read_audio
from avaffect.models.checkpoint import read_checkpoint_meta
from avaffect.models.wrapper import AVRegressor
from avaffect.training.datamodule import WindowDataModule
from avaffect.training.e2e import (
    CropGeometry,
    CropWindowDataset,
    EndToEndModule,
    augment_crops,
    build_end_to_end,
)

VIDEO = {"name": "resnet18_face", "params": {"crop_size": 36, "input_size": 32, "resize": "center_crop",
                                             "allow_random": True, "missing_face": "black_frame", "device": "cpu"}}
AUDIO = {"name": "spec_resnet18", "params": {"n_mels": 32, "segment_frames": 32, "sample_rate": 16000,
                                             "fft_size": 512, "allow_random": True, "device": "cpu"}}
CONFIG = {
    "model": {"name": "concat", "params": {"hidden": 32, "head_hidden": 16}},
    "features": {"video": VIDEO, "audio": AUDIO},
    "training": {"window": 30, "hop": 30, "batch_size": 4, "max_epochs": 5, "lr": 0.003, "patience": 10,
                 "accelerator": "cpu"},
    "end_to_end": {"enabled": True,
                   "video": {"unfreeze": {"layer4": 1, "layer3": 2}, "lr_scale": {"layer4": 0.1, "layer3": 0.1}},
                   "audio": {"unfreeze": {"layer4": 1, "layer3": 2}, "lr_scale": {"layer4": 0.1, "layer3": 0.1}}},
}


def _extractors():
    return get_extractor(VIDEO["name"], **VIDEO["params"]), get_extractor(AUDIO["name"], **AUDIO["params"])


def test_augmentation_is_the_crop_and_flip_a_loop_computes():
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 255, (6, 12, 12, 3), dtype=np.uint8)
    geometry = CropGeometry(12, 8, "center_crop")
    for per in ("frame", "window"):
        aug = AugmentConfig(random_crop=True, hflip=True, per=per)
        out = augment_crops(crops, geometry, aug, np.random.default_rng(7))
        draw = np.random.default_rng(7)  # the same draws, in the order augment_crops makes them
        n = len(crops) if per == "frame" else 1
        oy, ox, flip = draw.integers(0, 5, n), draw.integers(0, 5, n), draw.random(n) < 0.5
        for i in range(len(crops)):
            k = i if per == "frame" else 0
            want = crops[i, oy[k]:oy[k] + 8, ox[k]:ox[k] + 8]
            np.testing.assert_array_equal(out[i], want[:, ::-1] if flip[k] else want)
    plain = augment_crops(crops, geometry, AugmentConfig(random_crop=False, hflip=False), np.random.default_rng(0))
    np.testing.assert_array_equal(plain, crops[:, 2:10, 2:10])  # no augmentation: the validation centre crop


def test_packed_inputs_are_what_the_extractors_compute(synth_root, tmp_path):
    video, audio = _extractors()
    rec = load_dataset("synthetic", synth_root)[0]
    cache = InputCache(tmp_path / "inputs", video, audio)
    cache.ensure([rec])
    assert cache.is_done(rec)
    packed = cache.load(rec)
    assert isinstance(packed.crops, np.memmap) and packed.crops.dtype == np.uint8
    crops, mask = face_crops(rec, FacePipeline(crop_size=36))
    np.testing.assert_array_equal(packed.face_mask, mask)
    np.testing.assert_array_equal(packed.crops[mask], crops[mask])
    assert not packed.crops[~mask].any()  # black frames where there is no face
    plan = audio.segment_plan(read_audio(rec.audio_path or rec.video_path, sample_rate=16000), rec.times)
    np.testing.assert_array_equal(packed.first, plan.first)
    np.testing.assert_allclose(packed.frames, plan.frames)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "inputs").rglob("*.npy")}
    cache.ensure([rec])  # resumable: nothing rebuilt
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "inputs").rglob("*.npy")} == stamp


def test_gradual_unfreezing_changes_a_group_only_from_its_epoch(synth_root, tmp_path):
    """Before its epoch a layer group's weights and batch-norm statistics stay as they were; from it, they move.
    A group the schedule never names never moves."""
    cfg = make_config(CONFIG)
    video, audio = _extractors()
    recs = [r for r in load_dataset("synthetic", synth_root)]
    train = [r for r in recs if r.split == "train"][:2]
    cache = InputCache(tmp_path / "inputs", video, audio)
    cache.ensure(train)
    data = CropWindowDataset([cache.load(r) for r in train], [r.labels for r in train],
                             [r.face_mask for r in train], 30, 30, CropGeometry.of(video), cfg.end_to_end.augment)
    L.seed_everything(0, verbose=False)
    model = build_end_to_end(cfg.end_to_end, video, audio, AVRegressor("concat", 512, 512, {"hidden": 8}))
    val = [RecordingFeatures(r.name, np.zeros((r.num_steps, 0)), np.zeros((r.num_steps, 0)), r.labels,
                             r.face_mask, r.times) for r in train]
    module = EndToEndModule(model, cfg.training, cfg.end_to_end, val)
    snapshots: list[dict[str, torch.Tensor]] = []

    class Snap(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append({k: v.detach().clone() for k, v in pl_module.model.video.net.state_dict().items()})

    snapshots.append({k: v.detach().clone() for k, v in model.video.net.state_dict().items()})
    trainer = L.Trainer(max_epochs=3, limit_train_batches=2, accelerator="cpu",
                        callbacks=[Snap()], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, WindowDataModule(data, data, 30, 30, 4))

    def moved(group: str, epoch: int) -> bool:
        keys = [k for k in snapshots[0] if k.startswith(group) and not k.endswith("num_batches_tracked")]
        assert keys
        return any(not torch.equal(snapshots[epoch][k], snapshots[epoch + 1][k]) for k in keys)

    assert not moved("layer4", 0) and moved("layer4", 1) and moved("layer4", 2)
    assert not moved("layer3", 0) and not moved("layer3", 1) and moved("layer3", 2)
    assert not any(moved(g, e) for g in ("conv1", "bn1", "layer1", "layer2") for e in range(3))


def _epochs(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics_per_epoch.csv")


def test_end_to_end_trains_resumes_after_a_kill_and_exports_its_backbones(synth_root, tmp_path):
    """A real run (random-init backbones): killed during its second epoch, resumed to the same final epoch
    count; validation P_VA rises above its first epoch; the exported backbones + head (the checkpoint predict
    and evaluate load) score exactly what the fine-tuned model scored at its best epoch."""
    (tmp_path / "e2e.yaml").write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "run"
    args = ["train", str(synth_root), "--config", str(tmp_path / "e2e.yaml"), "--out", str(run), "-q",
            "--set", f"features.store={tmp_path / 'store'}"]
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from avaffect.cli.main import main; "
                             "sys.exit(main(sys.argv[1:]))", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    time.sleep(1.0)  # into the second epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists()

    assert main(args) == 0  # resumes from last.ckpt
    epochs = _epochs(run)
    assert epochs["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert read_checkpoint_meta(run / "model.safetensors")["extra"]["epochs_trained"] == 5
    p_va = epochs["val/p_va"].to_numpy()
    # 4 training recordings, random-init backbones. Epoch 0 trains the head on the frozen backbones (BatchNorm in
    # eval mode, with the untrained running statistics); at epoch 1 layer4 is released, its BatchNorm switches to
    # batch statistics and the features move, so the loss jumps. From there training must bring it down. (Whether
    # validation P_VA beats epoch 0 within 5 epochs depends on the CPU's float kernels: it did on one machine and
    # not on another, so it is not asserted.)
    loss = epochs["train/loss"].to_numpy()
    assert np.isfinite(loss).all() and np.isfinite(p_va).all() and loss[-1] < loss[1]
    overall = json.loads((run / "metrics.json").read_text())["overall"]
    assert overall["p_va"] == pytest.approx(p_va.max(), abs=2e-4)
    spec = read_checkpoint_meta(run / "model.safetensors")["preprocessing"]
    for record in (spec.audio_extractor, spec.video_extractor):
        assert record.params["weights"].startswith("backbones/") and (run / record.params["weights"]).is_file()


def test_stages_start_on_a_validation_plateau():
    from avaffect.training.schedules import StageSchedule

    s = StageSchedule(last=2, patience=2)
    scores = [0.1, 0.2, 0.15, 0.1, 0.05, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0]
    released = [e for e, x in enumerate(scores) if s.update(x, e)]
    # stage 1 after epochs 2-3 fail to beat 0.2; its best starts afresh (0.05, then 0.3); stage 2 after epochs
    # 6-7; no stage 3 (last = 2) however long the plateau
    assert released == [3, 7] and s.stage == 2 and s.start_epoch == 8
    again = StageSchedule(2, 2)
    again.load_state_dict(s.state_dict())
    assert again.state_dict() == s.state_dict()


def test_a_new_stage_releases_its_groups_and_restarts_the_learning_rates():
    from types import SimpleNamespace

    cfg = make_config({**CONFIG, "end_to_end": {
        "enabled": True, "release": "plateau", "release_patience": 1,
        "video": {"unfreeze": {"layer4": 0, "layer3": 1}, "lr_scale": {"layer3": 0.5}},
        "audio": {"unfreeze": {"layer4": 1}}}})
    video, audio = _extractors()
    model = build_end_to_end(cfg.end_to_end, video, audio, AVRegressor("concat", 512, 512, {"hidden": 8}))
    module = EndToEndModule(model, cfg.training, cfg.end_to_end, [])
    opt = module.configure_optimizers()
    stopper = SimpleNamespace(wait_count=3)
    schedulers = [SimpleNamespace(scheduler=opt["lr_scheduler"]["scheduler"])]
    module._trainer = SimpleNamespace(optimizers=[opt["optimizer"]], early_stopping_callback=stopper,
                                      lr_scheduler_configs=schedulers, current_epoch=0)
    module.model.set_epoch(0, module.stages.stage)
    assert model.video.trainable_groups() == ["layer4"] and model.audio.trainable_groups() == []
    for g in opt["optimizer"].param_groups:
        g["lr"] *= 0.01  # the plateau scheduler lowered them meanwhile
    module.end_of_validation(0.3)
    module.end_of_validation(0.2)  # one epoch without a better score: stage 1
    assert module.stages.stage == 1 and stopper.wait_count == 0
    lrs = {g["name"]: g["lr"] for g in opt["optimizer"].param_groups}
    assert lrs["head"] == pytest.approx(0.003) and lrs["video.layer3"] == pytest.approx(0.0015)
    module.model.set_epoch(1, module.stages.stage)
    assert model.video.trainable_groups() == ["layer3", "layer4"] and model.audio.trainable_groups() == ["layer4"]
    assert all(p.requires_grad for p in model.video.net.layer3.parameters())
    assert not any(p.requires_grad for p in model.video.net.layer2.parameters())


def test_vggish_and_resnet50_backbones_train_end_to_end(synth_root, tmp_path):
    """The ABAW8 pair: VGGish examples (time-major) and ResNet-50 on 40 of 48; one backward pass reaches exactly
    the released groups."""
    cfg = make_config({**CONFIG, "features": {
        "video": {"name": "resnet50_face", "params": {"allow_random": True, "device": "cpu",
                                                      "missing_face": "black_frame"}},
        "audio": {"name": "vggish", "params": {"allow_random": True, "device": "cpu"}}},
        "end_to_end": {"enabled": True, "video": {"unfreeze": {"layer4": 0}},
                       "audio": {"unfreeze": {"embeddings": 0}}}})
    from avaffect.features.extractors.base import build_extractor

    video, audio = build_extractor(cfg.features.video), build_extractor(cfg.features.audio)
    rec = load_dataset("synthetic", synth_root)[0]
    cache = InputCache(tmp_path / "inputs", video, audio)
    cache.ensure([rec])
    data = CropWindowDataset([cache.load(rec)], [rec.labels], [rec.face_mask], 4, 4, CropGeometry.of(video),
                             cfg.end_to_end.augment)
    item = data[0]
    assert item["crops"].shape == (4, 40, 40, 3) and item["segments"].shape == (4, 1, 96, 64)
    model = build_end_to_end(cfg.end_to_end, video, audio, AVRegressor("concat", 128, 2048, {"hidden": 8}))
    batch = {k: v[None] for k, v in item.items()}
    out = model(batch["crops"], batch["segments"], batch["mask"], batch["allowed"])
    assert out.shape == (1, 4, 2)
    out.sum().backward()
    net = model.video.net
    assert net.layer4[0].conv1.weight.grad is not None and net.layer3[0].conv1.weight.grad is None
    assert model.audio.net.embeddings[0].weight.grad is not None and model.audio.net.features[0].weight.grad is None


@pytest.mark.parametrize("video_spec", [
    VIDEO,
    {"name": "r2plus1d18_clip", "params": {"arch": "r3d_18", "crop_size": 16, "input_size": 16, "clip_len": 3,
                                           "frame_stride": 2, "allow_random": True, "device": "cpu"}},
], ids=["resnet18_face", "r3d_18-clips"])
def test_the_validation_path_computes_what_the_frozen_extractor_computes(synth_root, tmp_path, video_spec):
    """A validation window through the end-to-end backbones = the extractor's own features at those steps (the
    features ``predict`` computes from the exported weights)."""
    from avaffect.features.extractors.base import build_extractor

    cfg = make_config({**CONFIG, "features": {"video": video_spec, "audio": AUDIO},
                       "end_to_end": {"enabled": True, "augment": {"random_crop": False, "per": "window"}}})
    video, audio = build_extractor(cfg.features.video), build_extractor(cfg.features.audio)
    rec = load_dataset("synthetic", synth_root)[0]
    cache = InputCache(tmp_path / "inputs", video, audio)
    cache.ensure([rec])
    packed = cache.load(rec)
    geometry = CropGeometry.of(video)
    clips = [video.clip_plan(rec.num_steps)] if geometry.clips else None
    data = CropWindowDataset([packed], [rec.labels], [rec.face_mask], 20, 20, geometry, None, clips)
    model = build_end_to_end(cfg.end_to_end, video, audio, AVRegressor("concat", 512, 512, {"hidden": 8})).eval()
    item = data[1]  # steps 20..39
    with torch.no_grad():
        v = model.video(item["crops"][None])[0].numpy()
        a = model.audio(item["segments"][None])[0].numpy()
    want_v = video.features_from_crops(np.asarray(packed.crops), packed.face_mask)[20:40]
    faces = packed.face_mask[20:40] if video.params.get("missing_face") != "black_frame" else np.ones(20, bool)
    np.testing.assert_allclose(v[faces], want_v[faces], rtol=1e-4, atol=1e-4)
    want_a = audio.features_from_waveform(read_audio(rec.audio_path or rec.video_path, sample_rate=16000),
                                          rec.times)[20:40]
    np.testing.assert_allclose(a, want_a, rtol=1e-4, atol=1e-4)


def test_bf16_mixed_precision_trains_a_step(synth_root, tmp_path):
    """``training.precision: bf16-mixed`` (autocast) through the whole end-to-end model, here on the CPU."""
    cfg = make_config(CONFIG)
    video, audio = _extractors()
    rec = [r for r in load_dataset("synthetic", synth_root) if r.split == "train"][0]
    cache = InputCache(tmp_path / "inputs", video, audio)
    cache.ensure([rec])
    data = CropWindowDataset([cache.load(rec)], [rec.labels], [rec.face_mask], 30, 30, CropGeometry.of(video),
                             cfg.end_to_end.augment)
    model = build_end_to_end(cfg.end_to_end, video, audio, AVRegressor("concat", 512, 512, {"hidden": 8}))
    val = [RecordingFeatures(rec.name, np.zeros((rec.num_steps, 0)), np.zeros((rec.num_steps, 0)), rec.labels,
                             rec.face_mask, rec.times)]
    module = EndToEndModule(model, cfg.training.model_copy(update={"precision": "bf16-mixed"}), cfg.end_to_end, val)
    before = {k: v.clone() for k, v in model.head.state_dict().items()}
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, accelerator="cpu",
                        precision="bf16-mixed", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, WindowDataModule(data, data, 30, 30, 4))
    after = model.head.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert np.isfinite(float(trainer.callback_metrics["val/p_va"]))


def test_packing_in_worker_processes_gives_the_same_files(synth_root, tmp_path):
    video, audio = _extractors()
    recs = load_dataset("synthetic", synth_root)[:3]
    InputCache(tmp_path / "one", video, audio).ensure(recs)
    InputCache(tmp_path / "two", video, audio).ensure(recs, workers=2)
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.npy"))
    assert one == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.npy")) and one
    for rel in one:
        np.testing.assert_array_equal(np.load(tmp_path / "one" / rel), np.load(tmp_path / "two" / rel))
