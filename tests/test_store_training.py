"""Paper scale (issue 23): features read from the store on demand, statistics accumulated in chunks, validation
stitched as windows arrive, and training / evaluation from a feature store and the annotations alone (no media).

Each piece is checked against an independent computation: NumPy on the whole array for reads and statistics, a
per-step loop for stitching, the media-backed run for the store-only run."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from avaffect.config import make_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.layout import AFFWILD2_ANNOTATION_DIR
from avaffect.data.recording import Recording
from avaffect.data.timeline_index import TimelineIndex
from avaffect.data.windows import Stitcher, stitch, window_starts
from avaffect.errors import AvaffectError, DataError
from avaffect.features import run_features as pipeline_module
from avaffect.features.extractors.imported import ImportedAudio, ImportedVideo
from avaffect.features.run_features import FeaturePipeline, TrainingStatistics
from avaffect.features.statistics import RunningMoments
from avaffect.features.store import FeatureStore, StoredFeatures
from avaffect.training.datamodule import WindowDataset
from avaffect.training.run import train
from avaffect.workflows.evaluate import evaluate_run


def _rec(name: str, t: int, split: str = "train") -> Recording:
    return Recording(name, np.arange(t) / 30.0, np.zeros((t, 2)), np.ones(t, dtype=bool), split=split)


# ------------------------------------------------------------------------------------------------ reading


def test_stored_features_read_what_numpy_reads(tmp_path):
    store = FeatureStore(tmp_path)
    ex = ImportedVideo(dim=7)
    x = np.random.default_rng(0).standard_normal((53, 7)).astype(np.float32)
    store.save(ex, _rec("a/b", 53), x)
    f = store.open(ex, "a/b")
    assert isinstance(f, StoredFeatures) and f.shape == (53, 7) and len(f) == 53
    np.testing.assert_array_equal(np.asarray(f), x)
    for key in (slice(0, 10), slice(10, 60), slice(50, 53), slice(5, 5), slice(None, None, 3), slice(-4, None)):
        np.testing.assert_array_equal(f[key], x[key])
    np.testing.assert_array_equal(f[3], x[3])
    np.testing.assert_array_equal(f[-1], x[-1])
    np.testing.assert_array_equal(f[2:9, 1:3], x[2:9, 1:3])
    np.testing.assert_array_equal(f[x[:, 0] > 0], x[x[:, 0] > 0])
    with pytest.raises(IndexError):
        f[53]
    chunks = list(f.chunks(20))
    assert [s for s, _ in chunks] == [0, 20, 40]
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), x)
    again = pickle.loads(pickle.dumps(f))  # what a DataLoader worker gets
    np.testing.assert_array_equal(again[7:12], x[7:12])


def test_stored_features_are_read_not_mapped(tmp_path):
    """No memory map of the file stays in the process: what was read is the process's, the rest the page cache's."""
    store = FeatureStore(tmp_path)
    ex = ImportedAudio(dim=4)
    store.save(ex, _rec("r", 100), np.ones((100, 4), np.float32))
    f = store.open(ex, "r")
    f[0:50]
    np.asarray(f)
    maps = open("/proc/self/maps").read() if shutil.os.path.exists("/proc/self/maps") else ""
    assert str(f.path) not in maps


def test_a_truncated_or_foreign_feature_file_is_refused_with_the_fix(tmp_path):
    store = FeatureStore(tmp_path)
    ex = ImportedAudio(dim=4)
    path = store.save(ex, _rec("r", 100), np.ones((100, 4), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(DataError, match="truncated") as err:
        store.open(ex, "r")
    assert "avaffect extract" in str(err.value)
    np.save(path, np.ones((10, 4, 2), np.float32))
    with pytest.raises(DataError, match=r"not a \[T, d\] float"):
        store.open(ex, "r")


def test_loading_checks_every_value_and_names_the_file(tmp_path):
    store = FeatureStore(tmp_path / "store")
    audio, video = ImportedAudio(dim=3), ImportedVideo(dim=5)
    rec = _rec("r", 5000)
    store.save(audio, rec, np.ones((5000, 3), np.float32))
    v = np.ones((5000, 5), np.float32)
    store.save(video, rec, v)
    v[4500, 2] = np.nan  # past the first chunk: the check reads the whole file
    np.save(store.path(video, "r"), v)
    with pytest.raises(DataError, match="NaN") as err:
        FeaturePipeline(audio, video, store).load(rec)
    assert str(store.path(video, "r")) in str(err.value)


# ------------------------------------------------------------------------------------------------ statistics


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_chunked_statistics_equal_the_concatenated_ones(chunk):
    rng = np.random.default_rng(1)
    parts = [(rng.standard_normal((n, 33)) * rng.uniform(0.1, 50, 33) + rng.uniform(-100, 100, 33))
             .astype(np.float32) for n in (1, 250, 999, 3)]
    m = RunningMoments(33)
    for p in parts:
        for s in range(0, len(p), chunk):
            m.add(p[s:s + chunk])
    for p in parts:
        for s in range(0, len(p), chunk):
            m.add_deviation(p[s:s + chunk])
    whole = np.concatenate(parts).astype(np.float64)
    np.testing.assert_allclose(m.mean, whole.mean(0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(m.std(), whole.std(0), rtol=1e-12, atol=0)
    assert m.count == len(whole)
    # the same order of additions as NumPy's row-by-row reduction: equal to the bit
    assert np.array_equal(m.mean, whole.mean(0)) and np.array_equal(m.std(), whole.std(0))


def test_training_statistics_of_the_pipeline_equal_the_concatenated_ones(tmp_path, monkeypatch):
    """Audio over every step, video over face steps only (rows written all-zero = no face), over chunk borders."""
    monkeypatch.setattr(pipeline_module, "SCAN_ROWS", 64)
    store = FeatureStore(tmp_path)
    audio, video = ImportedAudio(dim=6), ImportedVideo(dim=9)
    rng = np.random.default_rng(2)
    recs, arrays = [], []
    for i, t in enumerate((130, 64, 7)):
        rec = _rec(f"r{i}", t)
        rec.face_mask[::5] = False  # the recording's own mask (no crop) as well as all-zero rows
        a = rng.standard_normal((t, 6)).astype(np.float32) * 3 + 1
        v = rng.standard_normal((t, 9)).astype(np.float32) - 2
        v[rng.random(t) < 0.2] = 0
        store.save(audio, rec, a)
        store.save(video, rec, v)
        recs.append(rec)
        arrays.append((a, v, rec.face_mask & np.any(v != 0, axis=1)))
    pipe = FeaturePipeline(audio, video, store)
    stats = TrainingStatistics.of(pipe)
    feats = [pipe.load(r, statistics=stats) for r in recs]
    stats.finish(feats)
    for f, (_, _, face) in zip(feats, arrays):
        np.testing.assert_array_equal(f.face_mask, face)
    a_all = np.concatenate([a for a, _, _ in arrays]).astype(np.float64)
    v_all = np.concatenate([v[face] for _, v, face in arrays]).astype(np.float64)
    np.testing.assert_allclose(stats.audio.mean, a_all.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.audio.std(), a_all.std(0), rtol=1e-12)
    np.testing.assert_allclose(stats.video.mean, v_all.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.video.std(), v_all.std(0), rtol=1e-12)


# ------------------------------------------------------------------------------------------------ windows


def test_streaming_stitch_equals_a_per_step_average_in_any_batching():
    rng = np.random.default_rng(3)
    t, length, hop = 101, 20, 7
    starts = window_starts(t, length, hop)
    preds = rng.standard_normal((len(starts), length, 2))
    expected = np.zeros((t, 2))
    for step in range(t):  # independent: the mean over every window covering the step
        covering = [preds[w, step - s] for w, s in enumerate(starts) if s <= step < s + length]
        expected[step] = np.mean(covering, axis=0)
    whole = stitch(preds, starts, t)
    np.testing.assert_allclose(whole, expected, rtol=1e-12)
    st = Stitcher(t, 2)
    for a, b in ((0, 3), (3, 4), (4, len(starts))):
        st.add(preds[a:b], starts[a:b])
    assert np.array_equal(st.result(), whole)


def test_window_dataset_reads_the_same_windows_from_the_store(tmp_path):
    store = FeatureStore(tmp_path)
    audio, video = ImportedAudio(dim=3), ImportedVideo(dim=4)
    rng = np.random.default_rng(4)
    recs = [_rec("a", 95), _rec("b", 30)]
    for r in recs:
        store.save(audio, r, rng.standard_normal((r.num_steps, 3)).astype(np.float32))
        store.save(video, r, rng.standard_normal((r.num_steps, 4)).astype(np.float32))
    pipe = FeaturePipeline(audio, video, store)
    lazy = [pipe.load(r) for r in recs]
    eager = [pipeline_module.RecordingFeatures(f.name, np.asarray(f.audio), np.asarray(f.video), f.labels,
                                               f.face_mask, f.times) for f in lazy]
    a, b = WindowDataset(lazy, 40, 25), WindowDataset(eager, 40, 25)
    assert len(a) == len(b) == len(window_starts(95, 40, 25)) + 1
    for j in range(len(a)):
        x, y = a[j], b[j]
        for k in x:
            assert np.array_equal(x[k].numpy(), y[k].numpy(), equal_nan=True), (j, k)


# ------------------------------------------------------------------------------------------------ timelines


def test_timeline_index_round_trip_and_damage(tmp_path):
    index = TimelineIndex(tmp_path)
    rec = _rec("x/y", 12)
    rec.face_mask[3] = False
    path = index.save(rec, {"v.mp4": {"bytes": 5}})
    mtime = path.stat().st_mtime_ns
    assert index.save(rec, {"v.mp4": {"bytes": 5}}) == path and path.stat().st_mtime_ns == mtime  # unchanged
    got = index.get("x/y")
    np.testing.assert_array_equal(got.times, rec.times)
    np.testing.assert_array_equal(got.face_mask, rec.face_mask)
    assert got.source == {"v.mp4": {"bytes": 5}} and index.names() == ["x/y"] and index.get("nope") is None
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="cannot read this stored timeline") as err:
        index.get("x/y")
    assert "avaffect extract" in str(err.value)


@pytest.fixture(scope="module")
def media_run(synth_root, tmp_path_factory):
    """A run trained with the media present (it extracts the features and records the timelines)."""
    tmp = tmp_path_factory.mktemp("storerun")
    cfg = _cfg(synth_root, tmp / "store")
    return train(cfg, tmp / "with_media", progress=False), tmp


def _cfg(root, store):
    return make_config({
        "data": {"root": str(root)}, "features": {"store": str(store)},
        "model": {"name": "concat", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "batch_size": 4, "max_epochs": 2, "accelerator": "cpu"}})


def _annotations_only(synth_root, dst):
    shutil.copytree(synth_root / AFFWILD2_ANNOTATION_DIR, dst / AFFWILD2_ANNOTATION_DIR)
    return dst


@pytest.mark.slow
def test_training_from_the_store_alone_equals_training_with_the_media(media_run, synth_root, tmp_path):
    result, tmp = media_run
    store = tmp / "store"
    assert len(TimelineIndex(store / "_timelines").names()) == len(load_affwild2(synth_root, splits=("train",
                                                                                                  "validation")))
    root = _annotations_only(synth_root, tmp_path / "annotations_only")  # no videos, no crops
    recs = _cfg(root, store).load_recordings(("train", "validation"))
    media_recs = {r.name: r for r in load_affwild2(synth_root, splits=("train", "validation"))}
    for r in recs:
        assert r.video_path is None and r.crops_dir is None and r.stored is not None
        np.testing.assert_array_equal(r.times, media_recs[r.name].times)
        np.testing.assert_array_equal(r.face_mask, media_recs[r.name].face_mask)
        np.testing.assert_array_equal(r.labels, media_recs[r.name].labels)
    alone = train(_cfg(root, store), tmp_path / "store_only", progress=False)
    assert alone.metrics == result.metrics  # same features, timelines, labels and seed: the same run
    assert json.loads((tmp_path / "store_only" / "timings.json").read_text())["recordings"]["train"] == 4
    ev = evaluate_run(tmp_path / "store_only", "validation", max_plots=0)
    for k, v in result.metrics.items():
        assert ev.overall[k] == pytest.approx(v, abs=1e-6)
    # the test split: extracted where the media are, then found and predicted from the store's index alone
    with_media = evaluate_run(result.run_dir, "test", max_plots=0)
    alone_test = evaluate_run(tmp_path / "store_only", "test", max_plots=0)
    assert sorted(alone_test.predictions) == sorted(with_media.predictions) == [
        r.name for r in load_affwild2(synth_root, splits=("test",))]
    for name, pred in with_media.predictions.items():
        np.testing.assert_array_equal(alone_test.predictions[name], pred)


@pytest.mark.slow
def test_store_only_training_names_what_is_missing_or_stale(media_run, synth_root, tmp_path):
    _, tmp = media_run
    store = tmp_path / "store"
    shutil.copytree(tmp / "store", store)
    root = _annotations_only(synth_root, tmp_path / "annotations_only")
    victim = sorted(TimelineIndex(store / "_timelines").names())[0]
    (store / "_timelines" / f"{victim}.npz").rename(tmp_path / "kept.npz")
    with pytest.raises(DataError, match="neither face crops nor a video") as err:
        train(_cfg(root, store), tmp_path / "run1", progress=False)
    assert victim in str(err.value) and "timeline index" in str(err.value) and "avaffect extract" in str(err.value)
    (tmp_path / "kept.npz").rename(store / "_timelines" / f"{victim}.npz")
    # features recomputed from other media than the timeline: stale, and nothing here to extract from
    cfg = _cfg(root, store)
    audio_id = cfg.feature_pipeline().audio.id
    sidecar = store / audio_id / "_status" / f"{victim}.json"
    entry = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**entry, "source": {"other.mp4": {"bytes": 1}}}))
    with pytest.raises(AvaffectError, match="media are not here") as err:
        train(cfg, tmp_path / "run2", progress=False)
    assert victim in str(err.value)
    assert (store / audio_id / f"{victim}.npy").is_file()  # a stale entry here never deletes the features


@pytest.mark.slow
def test_dataloader_workers_read_the_store_themselves(media_run, synth_root, tmp_path):
    """Worker processes get the recordings' StoredFeatures (paths, not arrays) and read their windows themselves:
    the same batches, so the same run as reading in the training process."""
    _, tmp = media_run
    root = _annotations_only(synth_root, tmp_path / "annotations_only")
    cfg = _cfg(root, tmp / "store")
    runs = {}
    for workers in (0, 2):  # one epoch: beyond it, persistent workers draw fewer loader seeds than a re-created loader
        c = cfg.model_copy(update={"training": cfg.training.model_copy(update={"num_workers": workers,
                                                                               "max_epochs": 1})})
        runs[workers] = train(c, tmp_path / f"workers{workers}", progress=False).metrics
    assert runs[2] == runs[0]


@pytest.mark.slow
def test_extract_on_a_store_only_root_checks_and_keeps_everything(media_run, synth_root, tmp_path, capsys):
    """`avaffect extract` where the media are not (a GPU node's check step): every pair verified and skipped."""
    from avaffect.cli.main import main

    _, tmp = media_run
    store = tmp_path / "store"
    shutil.copytree(tmp / "store", store)
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*.npy")}
    root = _annotations_only(synth_root, tmp_path / "annotations_only")
    capsys.readouterr()
    assert main(["extract", str(root), "--out", str(store), "-q", "--dataset", "synthetic"]) == 0
    out = capsys.readouterr().out
    pairs = 2 * len(TimelineIndex(store / "_timelines").names())  # train + validation (+ test, if evaluated)
    assert pairs >= 12 and f"0 done, {pairs} skipped" in out and "0 failed" in out, out
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.npy")} == before


def test_torchrun_world_size_must_match_devices_times_nodes(monkeypatch, tmp_path):
    """Lightning would stop with a bare ValueError deep in its set-up; say which settings to change instead."""
    from avaffect.training.run import fit

    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = make_config({"data": {"root": str(tmp_path)}, "training": {"accelerator": "cpu", "devices": 1}})
    with pytest.raises(AvaffectError, match="--nproc_per_node") as err:
        fit(cfg, tmp_path / "run", None, None, progress=False)
    assert "training.num_nodes" in str(err.value) and "1 x 1" in str(err.value)


def test_a_store_that_cannot_take_the_timeline_still_serves_its_features(tmp_path, monkeypatch):
    """Features from before the index, in a read-only store (EROFS; root ignores chmod, so simulated): the
    skipped pairs stay skipped and training where the media are goes on without the index entry."""
    from avaffect.features.store_extraction import extract_features

    store = FeatureStore(tmp_path / "store")
    ex = ImportedAudio(dim=2)
    rec = _rec("r", 10)
    store.save(ex, rec, np.ones((10, 2), np.float32))
    store.timelines.path("r").unlink()  # as written before the index existed

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(TimelineIndex, "save", read_only)
    summary = extract_features([rec], [ex], store, progress=False)
    assert summary.ok and summary.skipped == [(ex.id, "r")] and not store.timelines.path("r").exists()


def test_extraction_sweeps_what_killed_writers_left(tmp_path):
    """Temporary files of dead writers of this machine, in an extractor's folders or the timeline index, are removed
    at the end of an extraction run (here one where everything is already done)."""
    import subprocess
    import sys

    from avaffect.features.store_extraction import extract_features
    from avaffect.files import _owner

    store = FeatureStore(tmp_path / "store")
    ex = ImportedAudio(dim=2)
    rec = _rec("r", 10)
    store.save(ex, rec, np.ones((10, 2), np.float32))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = _owner().split("~")[0] + f"~{int(dead.stdout)}~"
    left = [store.folder(ex) / f".r.npy.{owner}x1.tmp", store.folder(ex) / "_status" / f".r.json.{owner}x2.tmp",
            store.root / "_timelines" / f".r.npz.{owner}x3.tmp"]
    for p in left:
        p.write_bytes(b"half")
    summary = extract_features([rec], [ex], store, progress=False)
    assert summary.skipped == [(ex.id, "r")] and not any(p.exists() for p in left)
    np.testing.assert_array_equal(np.asarray(store.open(ex, "r")), np.ones((10, 2), np.float32))
