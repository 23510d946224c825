"""Synthetic data through the Aff-Wild2 reader, feature alignment, bad input, and a training smoke run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from avaffect.config import make_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.layout import AFFWILD2_ANNOTATION_DIR as ANNOTATION_DIR
from avaffect.errors import AvaffectError, DataError, MediaError
from avaffect.evaluation.inference import predict_recording
from avaffect.media import iter_video_frames, probe, read_audio, video_frame_times
from avaffect.models.checkpoint import load_checkpoint
from avaffect.training.run import train


def test_reader_reads_the_synthetic_writer(synth_root):
    recs = {r.name: r for r in load_affwild2(synth_root)}
    assert sorted(r.split for r in recs.values()).count("train") == 4
    assert [r.split for r in recs.values()].count("validation") == 2
    assert [r.split for r in recs.values()].count("test") == 1
    saw_gap = False
    for r in recs.values():
        latent = np.load(synth_root / "latent" / f"{r.name}.npz")
        info = probe(r.video_path)
        assert r.num_steps == info.num_frames == len(latent["valence"])
        np.testing.assert_array_equal(r.face_mask, latent["face_present"])
        if r.split == "validation":  # the timeline is the stream's timestamps
            decoded = np.array([t for t, _ in iter_video_frames(r.video_path)])
            np.testing.assert_allclose(r.times, decoded, atol=1e-9)
        if r.split == "test":
            assert not r.has_labels
            continue
        ann_rows = (r.annotation_path.read_text().splitlines()[1:])
        gaps = np.array([row.startswith("-5") for row in ann_rows])
        np.testing.assert_array_equal(gaps, ~r.label_mask)  # -5 rows become NaN, nothing else does
        saw_gap |= gaps.any()
        np.testing.assert_allclose(r.labels[r.label_mask, 0], latent["valence"][r.label_mask], atol=1e-3)
        audio = read_audio(r.audio_path)
        assert abs(len(audio) / 16000 - info.duration) <= 1 / r.fps  # audio within one frame of the video
    assert saw_gap


def test_packet_timestamps_match_decoded_frames_on_crema_d(crema_d):
    for clip in sorted(crema_d.glob("*.flv"))[:2]:
        decoded = np.array([t for t, _ in iter_video_frames(clip)])
        np.testing.assert_allclose(video_frame_times(clip), decoded, atol=1e-6)


def test_audio_features_are_aligned_by_time(synth_root, tmp_path):
    """Silent (missing-voice) segments of the synthetic audio show up at the same timeline steps."""
    cfg = make_config({"data": {"root": str(synth_root)}, "features": {"store": str(tmp_path / "store")}})
    recs = [r for r in load_affwild2(synth_root) if r.split != "test"]
    pipeline = cfg.feature_pipeline()
    pipeline.ensure(recs, progress=False)
    checked = 0
    for r in recs:
        feats = pipeline.load(r)
        latent = np.load(synth_root / "latent" / f"{r.name}.npz")
        silent = latent["voice_weak"] == 1
        energy = feats.audio[:, 2 * 64]  # log-energy mean (after the 64 mel means and 64 stds)
        # steps well inside a silent run (0.5 s margin for the centred 0.5 s window)
        inner = silent & (np.convolve(silent, np.ones(31), "same") >= 31)
        if inner.sum() >= 5 and (~silent).sum() >= 5:
            assert energy[inner].mean() < energy[~silent].mean() - 1.0, r.name
            checked += 1
        # visual features are zero exactly where there is no face
        np.testing.assert_array_equal(np.abs(feats.video).sum(1) == 0, ~r.face_mask)
    assert checked >= 1, "the tiny dataset should contain a silent segment"


def _ann(root, name):
    for split in ("Train_Set", "Validation_Set"):
        p = root / ANNOTATION_DIR / split / f"{name}.txt"
        if p.is_file():
            return p
    raise AssertionError(name)


def test_annotation_longer_or_shorter_than_video_is_an_error(synth_copy):
    name = sorted(p.stem for p in (synth_copy / ANNOTATION_DIR / "Train_Set").glob("*.txt"))[0]
    ann = _ann(synth_copy, name)
    lines = ann.read_text().splitlines()
    ann.write_text("\n".join(lines + ["0.1,0.1"]) + "\n")
    with pytest.raises(DataError, match="annotation rows but the video") as e:
        load_affwild2(synth_copy)
    assert name in str(e.value) and "one row per video frame" in str(e.value)
    # within a tolerance, the extra row is dropped
    recs = {r.name: r for r in load_affwild2(synth_copy, length_tolerance=1)}
    assert recs[name].num_steps == len(lines) - 1
    ann.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(DataError, match="annotation rows"):
        load_affwild2(synth_copy)


def test_unreadable_video_is_an_error_naming_the_file(synth_copy):
    video = sorted((synth_copy / "videos").glob("*.mp4"))[0]
    video.write_bytes(video.read_bytes()[:2000])
    with pytest.raises(MediaError) as e:
        load_affwild2(synth_copy)
    assert video.name in str(e.value)


def test_missing_audio_track_fails_extraction_with_a_clear_message(synth_copy, tmp_path):
    import av

    video = sorted((synth_copy / "videos").glob("*.mp4"))[0]
    src = tmp_path / "src.mp4"
    shutil.copy(video, src)
    with av.open(str(src)) as inp, av.open(str(video), "w") as out:  # remux the video stream only
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
    cfg = make_config({"data": {"root": str(synth_copy)}, "features": {"store": str(tmp_path / "store")}})
    recs = [r for r in load_affwild2(synth_copy) if r.split != "test"]
    with pytest.raises(AvaffectError) as e:
        cfg.feature_pipeline().ensure(recs, progress=False)
    assert video.stem in str(e.value) and "no audio" in str(e.value).lower()


@pytest.mark.slow
def test_training_smoke_run(synth_root, tmp_path):
    cfg = make_config({
        "data": {"root": str(synth_root)},
        "features": {"store": str(tmp_path / "store")},
        "model": {"name": "rjca", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "batch_size": 4, "max_epochs": 2, "accelerator": "cpu"},
    })
    run = tmp_path / "run"
    res = train(cfg, run, progress=False)
    for f in ("config.yaml", "environment.json", "metrics_per_epoch.csv", "model.safetensors", "metrics.json",
              "checkpoints/last.ckpt"):
        assert (run / f).is_file(), f
    epochs = pd.read_csv(run / "metrics_per_epoch.csv")
    assert len(epochs) == 2 and {"val/p_va", "train/loss"} <= set(epochs.columns)
    saved = json.loads((run / "metrics.json").read_text())
    assert set(saved["per_recording"]) == {r.name for r in load_affwild2(synth_root) if r.split == "validation"}
    assert np.isfinite(res.metrics["p_va"])
    # the exported checkpoint rebuilds the model and reproduces the saved predictions
    model, meta = load_checkpoint(res.checkpoint)
    assert meta["preprocessing"].window == 60 and meta["model"]["name"] == "rjca"
    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    f = cfg.feature_pipeline().load_all([rec], progress=False)[0]
    pred = predict_recording(model, f.audio, f.video, f.face_mask, 60, 30)
    csv = pd.read_csv(run / "predictions" / "validation" / f"{rec.name}.csv")
    assert list(csv.columns) == ["frame", "time", "valence", "arousal", "label_valence", "label_arousal"]
    np.testing.assert_allclose(csv[["valence", "arousal"]].to_numpy(), pred, atol=1e-5)
    assert np.all(np.abs(pred) <= 1)
    # a finished run is not trained again
    again = train(cfg, run, progress=False)
    assert again.metrics == res.metrics


@pytest.mark.slow
def test_one_model_per_target(synth_root, tmp_path):
    """ABAW8 style: a K = 1 model for arousal alone, selected on the arousal CCC."""
    cfg = make_config({
        "data": {"root": str(synth_root)},
        "features": {"store": str(tmp_path / "store")},
        "model": {"name": "concat", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "max_epochs": 1, "targets": ["arousal"], "accelerator": "cpu"},
    })
    res = train(cfg, tmp_path / "run", progress=False)
    assert "ccc_arousal" in res.metrics and "ccc_valence" not in res.metrics and "p_va" not in res.metrics
    name = next(iter(res.per_recording))
    csv = pd.read_csv(tmp_path / "run" / "predictions" / "validation" / f"{name}.csv")
    assert list(csv.columns) == ["frame", "time", "arousal", "label_arousal"]
    rec = next(r for r in load_affwild2(synth_root) if r.name == name)
    np.testing.assert_allclose(csv["label_arousal"], rec.labels[:, 1], atol=1e-6, equal_nan=True)


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_last_checkpoint(synth_root, tmp_path):
    """A run killed after its first epoch (no model.safetensors / metrics.json yet) picks up at epoch 2."""
    raw = {
        "data": {"root": str(synth_root)},
        "features": {"store": str(tmp_path / "store")},
        "model": {"name": "concat", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "max_epochs": 1, "accelerator": "cpu"},
    }
    run = tmp_path / "run"
    train(make_config(raw), run, progress=False)
    (run / "metrics.json").unlink()  # as if killed before the end of the run
    (run / "model.safetensors").unlink()
    import torch

    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    raw["training"]["max_epochs"] = 3
    res = train(make_config(raw), run, progress=False)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    epochs = pd.read_csv(run / "metrics_per_epoch.csv")
    assert epochs["epoch"].tolist() == [0, 1, 2]  # epoch 0 not trained again, the log continues
    assert (run / "model.safetensors").is_file() and np.isfinite(res.metrics["p_va"])


def test_a_run_directory_refuses_another_configuration(synth_root, tmp_path):
    from avaffect.training.run import _check_same_run

    raw = {"data": {"root": str(synth_root)}, "model": {"name": "concat"}, "training": {"max_epochs": 1}}
    run = tmp_path / "run"
    run.mkdir()
    from avaffect.config import dump_config

    (run / "config.yaml").write_text(dump_config(make_config(raw)))
    _check_same_run(run, make_config(raw, {"model": {"name": "rjca"}}), finished=False)  # nothing trained yet
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    _check_same_run(run, make_config(raw), finished=True)  # same config: fine
    _check_same_run(run, make_config(raw, {"training": {"max_epochs": 5}}), finished=False)  # resume further
    with pytest.raises(AvaffectError, match="training"):
        _check_same_run(run, make_config(raw, {"training": {"max_epochs": 5}}), finished=True)
    with pytest.raises(AvaffectError, match="model"):
        _check_same_run(run, make_config(raw, {"model": {"name": "rjca"}}), finished=False)
    # a run written by an earlier version, before a section or key existed, is still the same run
    import yaml

    older = yaml.safe_load(dump_config(make_config(raw)))
    del older["end_to_end"], older["training"]["strategy"]
    (run / "config.yaml").write_text(yaml.safe_dump(older))
    _check_same_run(run, make_config(raw), finished=True)


def test_all_zero_visual_vectors_mark_steps_without_a_face(tmp_path):
    """Readers that find faces only at extraction time (raw videos) give an all-True face mask; the
    pipeline must learn the mask from the visual extractor's all-zero vectors."""
    from avaffect.data.recording import Recording
    from avaffect.features.run_features import FeaturePipeline
    from avaffect.features.store import FeatureStore

    cfg = make_config({"features": {"store": str(tmp_path / "store")}})
    pipeline = FeaturePipeline.from_specs(cfg.features.audio, cfg.features.video, tmp_path / "store")
    rec = Recording(name="clip", times=np.arange(5) / 25.0, labels=np.zeros((5, 2)), face_mask=np.ones(5, bool))
    video = np.ones((5, pipeline.video.dim), np.float32)
    video[[1, 3]] = 0.0
    store = FeatureStore(tmp_path / "store")
    store.save(pipeline.audio, rec, np.ones((5, pipeline.audio.dim), np.float32))
    store.save(pipeline.video, rec, video)
    f = pipeline.load(rec)
    np.testing.assert_array_equal(f.face_mask, [True, False, True, False, True])
    rec.face_mask[0] = False  # and the recording's own mask still counts
    np.testing.assert_array_equal(pipeline.load(rec).face_mask, [False, False, True, False, True])


class _Planted:
    """Unpickling this runs code: it must never happen when a run is resumed."""

    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/avaffect-planted-pickle-ran",))


@pytest.mark.parametrize("kind", ["planted_pickle", "truncated"])
def test_a_planted_or_damaged_last_checkpoint_is_never_unpickled_and_never_blocks(synth_root, tmp_path, kind):
    import pickle
    from pathlib import Path

    marker = Path("/tmp/avaffect-planted-pickle-ran")
    marker.unlink(missing_ok=True)
    raw = {"data": {"root": str(synth_root)}, "features": {"store": str(tmp_path / "store")},
           "model": {"name": "concat", "params": {"hidden": 8, "head_hidden": 8}},
           "training": {"window": 60, "hop": 30, "max_epochs": 1, "accelerator": "cpu"}}
    run = tmp_path / "run"
    train(make_config(raw), run, progress=False)
    (run / "metrics.json").unlink()
    (run / "model.safetensors").unlink()
    last = run / "checkpoints" / "last.ckpt"
    if kind == "planted_pickle":
        last.write_bytes(pickle.dumps({"state_dict": _Planted()}))
        for best in (run / "checkpoints").glob("best-*.ckpt"):
            best.write_bytes(pickle.dumps({"state_dict": _Planted()}))
    else:
        last.write_bytes(last.read_bytes()[:200])  # a full disk while Lightning wrote it
    res = train(make_config(raw), run, progress=False)
    assert not marker.exists(), "a pickle from the run folder was executed"
    assert (run / "checkpoints" / "last.ckpt.damaged").is_file() and np.isfinite(res.metrics["p_va"])


def test_a_resumed_run_reproduces_the_uninterrupted_one(synth_root, tmp_path):
    """Killed after epoch 1 and resumed to epoch 3, a run ends with the same weights and scores as one trained
    3 epochs straight (RNG state is saved in last.ckpt and restored)."""
    import torch
    from safetensors.torch import load_file

    raw = {"data": {"root": str(synth_root)}, "features": {"store": str(tmp_path / "store")},
           "model": {"name": "concat", "params": {"hidden": 8, "head_hidden": 8, "dropout": 0.3}},
           "training": {"window": 60, "hop": 30, "max_epochs": 3, "accelerator": "cpu", "patience": 10}}
    straight = train(make_config(raw), tmp_path / "straight", progress=False)
    short = {**raw, "training": {**raw["training"], "max_epochs": 1}}
    train(make_config(short), tmp_path / "resumed", progress=False)
    (tmp_path / "resumed" / "metrics.json").unlink()  # as if killed right after epoch 1
    (tmp_path / "resumed" / "model.safetensors").unlink()
    resumed = train(make_config(raw), tmp_path / "resumed", progress=False)
    assert resumed.metrics == straight.metrics
    a, b = load_file(str(straight.checkpoint)), load_file(str(resumed.checkpoint))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lightning_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    """A failure while last.ckpt is written (a full disk) leaves the previous file whole and no temp file."""
    import torch

    from avaffect.training.run import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)

    def disk_full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_log_cut_short_by_ctrl_c_still_gives_the_epoch_table(tmp_path):
    """Lightning adds a column by rewriting its CSV; a Ctrl-C between the longer row and the rewrite leaves a row
    wider than its header (fault case K31). The resumed run must still collapse the logs, not crash."""
    from avaffect.training.run import _write_epoch_metrics

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics-part0.csv").write_text("epoch,step,val/ccc_arousal,val/p_va\n0,2,0.02,0.014\n0,2,1.97,,\n")
    (logs / "metrics.csv").write_text("epoch,step,train/loss,val/ccc_arousal,val/p_va\n1,5,,0.05,0.03\n"
                                      "1,5,1.87,,\n9,9,1,2\n")
    _write_epoch_metrics(tmp_path)
    df = pd.read_csv(tmp_path / "metrics_per_epoch.csv")
    assert df.columns.tolist() == ["epoch", "train/loss", "val/ccc_arousal", "val/p_va"]
    assert df["epoch"].tolist() == [0, 1]  # the row that fits no header is left out
    assert df["train/loss"].tolist() == [1.97, 1.87] and df["val/p_va"].tolist() == [0.014, 0.03]
