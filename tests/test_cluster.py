"""Extraction on a cluster, for real: ``--backend ray`` against a Ray head started on this machine (``ray start
--head``, 2 CPUs, one head shared by this module's tests), with Ray workers killed mid-task; and two ``--shard``
processes writing one store at the same time. Multi-node runs are not tested (one machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clusterkit import RAY_AUTH_MODE, KillAlways, KillOnce, expected_features, free_port, start_ray_head
from shareddata import in_ci

from avaffect.cli.main import main
from avaffect.data.datasets import load_dataset
from avaffect.errors import ConfigError
from avaffect.features.store import FeatureStore
from avaffect.features.store_extraction import extract_features

REPO = Path(__file__).resolve().parents[1]


def _leftovers(root: Path) -> list[Path]:
    """Temporary files a write left behind (atomic writes name them ``.<name>.<random>.tmp``)."""
    return sorted(p for p in root.rglob("*") if ".tmp" in p.name)


def _assert_done_and_valid(store: FeatureStore, eid: str, recs) -> None:
    dim = store.extractor_info(eid)["dim"]
    for rec in recs:
        assert store.entry(eid, rec.name)["status"] == "done", rec.name
        assert store.is_done(eid, rec.name, rec) and store.verify(eid, rec.name), rec.name
        arr = store.load(eid, rec.name)
        assert arr.shape == (rec.num_steps, dim) and np.isfinite(arr).all()


@pytest.mark.slow
def test_two_shard_processes_write_one_store_at_once(synth_root, tmp_path):
    """`--shard 0/2` and `--shard 1/2` as two processes started together on one dataset and one store: both exit
    0, every (extractor, recording) is done and verifies, no temporary file is left, and the manifest (rewritten
    by a last run without --shard, as the README's job-array recipe does) lists every recording."""
    store_root = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    cmd = [sys.executable, "-m", "avaffect.cli.main", "extract", str(synth_root), "--out", str(store_root), "-q",
           "--workers", "1"]
    procs = [subprocess.Popen([*cmd, "--shard", f"{i}/2"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    recs = load_dataset("affwild2", synth_root)
    assert [int(o.split(" done")[0].split()[-1]) for o in outs] == [8, 6]  # 7 recordings round-robin, 2 extractors each
    store = FeatureStore(store_root)
    ids = store.extractor_ids()
    assert len(ids) == 2
    for eid in ids:
        _assert_done_and_valid(store, eid, recs)
    assert _leftovers(store_root) == []

    for eid in ids:  # whichever shard wrote it last may have missed the other's last entries: regenerated below
        (store_root / eid / "manifest.json").unlink()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "0 done, 14 skipped" in done.stdout, done.stdout + done.stderr
    for eid in ids:
        manifest = json.loads((store_root / eid / "manifest.json").read_text())
        assert sorted(manifest["recordings"]) == sorted(r.name for r in recs)
        assert {e["status"] for e in manifest["recordings"].values()} == {"done"}
    assert _leftovers(store_root) == []


def _need_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        if in_ci():
            pytest.fail("ray is not installed: CI installs the `test` extra, which has it")
        pytest.skip("ray is not installed (pip install 'avaffect[ray]')")


@pytest.fixture(scope="module")
def ray_head():
    """One local Ray head for the module (starting one takes 7-12 s on 2 cores); its processes are killed at the end."""
    _need_ray()
    head = start_ray_head(num_cpus=2)
    print(f"ray head at {head.address} up in {head.start_seconds:.1f} s")
    yield head
    head.stop()
    shutil.rmtree(head.temp_dir, ignore_errors=True)


@pytest.fixture
def on_head(ray_head, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", ray_head.address)
    monkeypatch.setenv("RAY_AUTH_MODE", RAY_AUTH_MODE)
    return ray_head


@pytest.mark.slow
def test_ray_backend_cli_equals_the_process_backend(on_head, synth_root, tmp_path, capsys):
    """`avaffect extract ROOT --backend ray` on the head: every pair done, the files verify and equal the process
    backend's, bit for bit. Ray runs a task's BLAS on one thread (it sets OMP_NUM_THREADS to the task's CPUs), and
    log-mel's matrix product differs in the last bit with the thread count: the process run gets one thread too."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    local_run = subprocess.run([sys.executable, "-m", "avaffect.cli.main", "extract", str(synth_root), "--out",
                                str(tmp_path / "local"), "-q", "--workers", "1"], env=env, capture_output=True,
                               text=True, timeout=300)
    assert local_run.returncode == 0, local_run.stdout + local_run.stderr
    assert main(["extract", str(synth_root), "--out", str(tmp_path / "ray"), "-q", "--backend", "ray"]) == 0
    assert "14 done, 0 skipped" in capsys.readouterr().out.split("extract:")[-1]
    local, remote = FeatureStore(tmp_path / "local"), FeatureStore(tmp_path / "ray")
    assert remote.extractor_ids() == local.extractor_ids() and len(local.extractor_ids()) == 2
    recs = load_dataset("affwild2", synth_root)
    for eid in remote.extractor_ids():
        _assert_done_and_valid(remote, eid, recs)
        for rec in recs:
            np.testing.assert_array_equal(remote.load(eid, rec.name), local.load(eid, rec.name))
        manifest = json.loads((tmp_path / "ray" / eid / "manifest.json").read_text())
        assert sorted(manifest["recordings"]) == sorted(r.name for r in recs)
    assert _leftovers(tmp_path / "ray") == []
    import ray

    assert not ray.is_initialized()  # the connection extract made is closed


@pytest.mark.slow
def test_ray_worker_killed_once_is_retried_and_ends_done(on_head, synth_root, tmp_path):
    recs = load_dataset("affwild2", synth_root)
    victim = recs[2].name
    marker = tmp_path / "killed-once"
    ex = KillOnce(victim=victim, marker=str(marker))
    store = FeatureStore(tmp_path / "store")
    summary = extract_features(recs, [ex], store, progress=False, backend="ray")
    assert marker.is_file()  # the first try really killed its worker
    assert summary.failed == [] and sorted(r for _, r in summary.done) == sorted(r.name for r in recs)
    _assert_done_and_valid(store, ex.id, recs)
    for rec in recs:
        np.testing.assert_array_equal(store.load(ex.id, rec.name), expected_features(rec))
    assert _leftovers(store.root) == []


@pytest.mark.slow
def test_ray_worker_that_always_dies_is_reported_failed(on_head, synth_root, tmp_path):
    """A recording that kills its worker on every try: retried once (RAY_RETRIES), then failed with a reason that
    says the worker died; no file of it; every other recording done. Ray already connected by the caller stays
    connected."""
    import ray

    from avaffect.features.store_extraction import RAY_RETRIES

    recs = load_dataset("affwild2", synth_root)
    victim = recs[0].name
    marker = tmp_path / "kills"
    ex = KillAlways(victim=victim, marker=str(marker))
    store = FeatureStore(tmp_path / "store")
    ray.init(address=on_head.address, log_to_driver=False, logging_level="WARNING")
    try:
        summary = extract_features(recs, [ex], store, progress=False, backend="ray")
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert len(marker.read_text().split()) == RAY_RETRIES + 1 == 2  # one try, one retry, each in a new worker
    assert [(e, r) for e, r, _ in summary.failed] == [(ex.id, victim)]
    reason = summary.failed[0][2]
    assert "Ray worker" in reason and "died" in reason and "WorkerCrashedError" in reason, reason
    assert sorted(r for _, r in summary.done) == sorted(r.name for r in recs if r.name != victim)
    assert not store.path(ex, victim).exists()
    entry = store.entry(ex, victim)
    assert entry["status"] == "failed" and "died" in entry["error"]
    _assert_done_and_valid(store, ex.id, [r for r in recs if r.name != victim])
    assert _leftovers(store.root) == []
    assert json.loads((store.folder(ex) / "manifest.json").read_text())["recordings"][victim]["status"] == "failed"


@pytest.mark.slow
def test_an_extractor_the_workers_cannot_import_is_a_failure_that_says_so(on_head, tmp_path, monkeypatch):
    """The extractor's module is importable here but not on the workers: each pair failed, one line saying what."""
    (tmp_path / "driver_only_mod.py").write_text(
        "import numpy as np\n"
        "from clusterkit import KillOnce\n"
        "class DriverOnly(KillOnce):\n"
        "    name = 'test_driver_only'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from driver_only_mod import DriverOnly

    recs = [_tiny_recording(n) for n in ("a", "b")]
    store = FeatureStore(tmp_path / "store")
    summary = extract_features(recs, [DriverOnly()], store, progress=False, backend="ray")
    assert sorted(r for _, r, _ in summary.failed) == ["a", "b"] and summary.done == []
    reason = summary.failed[0][2]
    assert "No module named 'driver_only_mod'" in reason and "every node" in reason and "\n" not in reason


def test_unreachable_ray_address_is_a_config_error(tmp_path, monkeypatch):
    """Nothing listens at RAY_ADDRESS: a project error at once (ray.init alone would wait for minutes)."""
    _need_ray()
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    recs = [_tiny_recording("r")]
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=rf"cannot reach the Ray cluster at RAY_ADDRESS={address}.*ray start"):
        extract_features(recs, [KillOnce()], FeatureStore(tmp_path / "store"), progress=False, backend="ray")
    assert time.monotonic() - t0 < 15


def test_ray_address_parsing():
    from avaffect.features.store_extraction import _ray_host_port

    assert _ray_host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert _ray_host_port("ray://head.cluster:10001") == ("head.cluster", 10001)
    assert _ray_host_port("[::1]:6379") == ("::1", 6379)
    assert _ray_host_port("auto") is None and _ray_host_port("local") is None


def _tiny_recording(name: str):
    from avaffect.data.recording import Recording

    return Recording(name=name, times=np.arange(3) / 25, labels=np.zeros((3, 2)), face_mask=np.zeros(3, bool))
