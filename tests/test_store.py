"""Feature store (atomic, resumable, failures recorded) and batch extraction with worker processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from avaffect.data.recording import Recording
from avaffect.errors import DataError
from avaffect.features.extractors import Extractor, get_extractor, register_extractor
from avaffect.features.store import FeatureStore
from avaffect.features.store_extraction import extract_features, select_shard

SR = 16000


def fake_recording(
    root: Path, name: str, T: int = 15, fps: float = 25.0, broken_audio: bool = False
) -> Recording:
    folder = root / name.replace("/", "_")
    crops = folder / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    mask = np.ones(T, bool)
    mask[::4] = False
    for i in np.flatnonzero(mask):
        img = np.full((112, 112), 40 + 10 * (i % 10), np.uint8)
        cv2.circle(img, (56, 56), 20 + i % 7, 220, -1)
        cv2.imwrite(str(crops / f"{i + 1:05d}.jpg"), img)
    audio = folder / "audio.wav"
    if broken_audio:
        audio.write_bytes(b"RIFF\x00\x00garbage, not a wav file" * 3)
    else:
        t = np.arange(int(T / fps * SR)) / SR
        wavfile.write(audio, SR, (0.3 * np.sin(2 * np.pi * 200 * t) * 32767).astype(np.int16))
    return Recording(
        name=name,
        times=np.arange(T) / fps,
        labels=np.zeros((T, 2)),
        face_mask=mask,
        audio_path=audio,
        crops_dir=crops,
        fps=fps,
    )


def test_save_load_roundtrip(tmp_path):
    store = FeatureStore(tmp_path / "feats")
    ex = get_extractor("face_hog")
    rec = fake_recording(tmp_path, "rec1")
    arr = np.random.default_rng(0).normal(size=(rec.num_steps, ex.dim)).astype(np.float64)
    path = store.save(ex, rec, arr, seconds=0.5)
    assert path == tmp_path / "feats" / ex.id / "rec1.npy"
    loaded = store.load(ex.id, "rec1")
    assert isinstance(loaded, np.memmap) and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, arr.astype(np.float32))
    in_ram = store.load(ex, "rec1", mmap=False)
    assert not isinstance(in_ram, np.memmap)
    assert store.is_done(ex.id, "rec1") and not store.is_done(ex.id, "other")
    # no temp files left behind; manifest and extractor.json written
    folder = tmp_path / "feats" / ex.id
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["recordings"]["rec1"]
    assert entry["status"] == "done" and entry["T"] == rec.num_steps and entry["fps"] == 25.0
    assert entry["extractor"] == "face_hog" and entry["config_hash"] == ex.config_hash
    assert entry["version"] == ex.version and entry["params"] == ex.params and entry["error"] is None
    info = json.loads((folder / "extractor.json").read_text())
    assert info["dim"] == ex.dim and info["name"] == "face_hog"
    assert store.extractor_ids() == [ex.id]


def test_a_stale_or_damaged_entry_is_not_trusted(tmp_path):
    """NaN planted in a feature file is refused on load; a replaced file or changed source media means the
    entry is extracted again rather than reported as done."""
    store = FeatureStore(tmp_path / "feats")
    ex = get_extractor("face_hog")
    rec = fake_recording(tmp_path, "rec1")
    path = store.save(ex, rec, np.ones((rec.num_steps, ex.dim), np.float32))
    assert store.is_done(ex, "rec1", rec) and store.verify(ex, "rec1")
    bad = np.ones((rec.num_steps, ex.dim), np.float32)
    bad[3, 5] = np.nan
    np.save(path, bad)  # same size, NaN inside: caught on load and by the checksum
    with pytest.raises(DataError, match="NaN/Inf"):
        store.load(ex, "rec1")
    assert not store.verify(ex, "rec1")
    np.save(path, np.ones((rec.num_steps - 2, ex.dim), np.float32))  # truncated / replaced
    assert not store.is_done(ex, "rec1", rec)
    store.save(ex, rec, np.ones((rec.num_steps, ex.dim), np.float32))
    os.utime(rec.audio_path, ns=(0, 0))  # only touched (a copy elsewhere): still the same media
    assert store.is_done(ex, "rec1", rec)
    with open(rec.audio_path, "ab") as fh:  # the source media changed since
        fh.write(b"\0" * 64)
    assert store.is_done(ex, "rec1") and not store.is_done(ex, "rec1", rec)
    summary = extract_features([rec], [ex], store, workers=1, progress=False)
    assert summary.ok and store.is_done(ex, "rec1", rec)  # re-done, not "skipped (already done)"


def test_source_identity_is_content_not_times(tmp_path):
    """Same size, new bytes: stale. New times, same bytes (a copy): done, and the new times are recorded.
    A crops folder with a crop replaced by one of another size: stale. Old ``{name: size}`` entries still read.
    (A crop rewritten in place under its own name leaves the folder's time alone and is not seen: the cost of
    not stat-ing every crop on each check.)"""
    store = FeatureStore(tmp_path / "feats")
    ex = get_extractor("face_hog")
    rec = fake_recording(tmp_path, "rec1")
    store.save(ex, rec, np.ones((rec.num_steps, ex.dim), np.float32))
    audio = Path(rec.audio_path)
    data = bytearray(audio.read_bytes())
    data[-10:] = bytes(10)  # the last samples silenced: same byte size, other media
    st = audio.stat()
    audio.write_bytes(bytes(data))
    os.utime(audio, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert audio.stat().st_size == st.st_size and not store.is_done(ex, "rec1", rec)

    store.save(ex, rec, np.ones((rec.num_steps, ex.dim), np.float32))
    os.utime(audio, ns=(10**18, 10**18))
    assert store.is_done(ex, "rec1", rec)
    assert store.entry(ex, "rec1")["source"][audio.name]["mtime_ns"] == 10**18  # refreshed: next check is cheap

    crop = sorted(Path(rec.crops_dir).iterdir())[0]
    tmp = crop.with_name("new.tmp")
    tmp.write_bytes(crop.read_bytes() + b"\0")
    os.replace(tmp, crop)  # a crop replaced by another (the folder's listing changed): stale
    assert not store.is_done(ex, "rec1", rec)

    store.save(ex, rec, np.ones((rec.num_steps, ex.dim), np.float32))
    sidecar = next((tmp_path / "feats").rglob("_status/*.json"))
    entry = json.loads(sidecar.read_text())
    entry["source"] = {audio.name: audio.stat().st_size, Path(rec.crops_dir).name: len(os.listdir(rec.crops_dir))}
    sidecar.write_text(json.dumps(entry))
    assert store.is_done(ex, "rec1", rec)
    entry["source"][audio.name] += 1
    sidecar.write_text(json.dumps(entry))
    assert not store.is_done(ex, "rec1", rec)


def test_save_rejects_bad_arrays(tmp_path):
    store = FeatureStore(tmp_path)
    ex = get_extractor("face_hog")
    rec = fake_recording(tmp_path, "rec1")
    with pytest.raises(DataError, match="shape"):
        store.save(ex, rec, np.zeros((rec.num_steps + 1, ex.dim)))
    with pytest.raises(DataError, match="shape"):
        store.save(ex, rec, np.zeros((rec.num_steps, ex.dim - 1)))
    bad = np.zeros((rec.num_steps, ex.dim))
    bad[3, 5] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        store.save(ex, rec, bad)
    assert not store.path(ex, "rec1").exists() and not store.is_done(ex, "rec1")


def test_mark_failed_and_status(tmp_path):
    store = FeatureStore(tmp_path)
    ex = get_extractor("logmel_stats")
    rec = fake_recording(tmp_path, "a/b")  # a name with a slash still maps to one file
    store.save(ex, rec, np.zeros((rec.num_steps, ex.dim)))
    assert store.path(ex, "a/b").parent == tmp_path / ex.id
    store.mark_failed(ex, "bad", "MediaError: cannot decode")
    st = store.status(ex.id)
    assert st["num_done"] == 1 and st["done"] == ["a/b"]
    assert st["failed"] == {"bad": "MediaError: cannot decode"}
    assert not store.is_done(ex.id, "bad")
    with pytest.raises(DataError, match="cannot decode"):
        store.load(ex.id, "bad")
    with pytest.raises(DataError, match="avaffect extract"):
        store.load(ex.id, "never")
    manifest = json.loads((tmp_path / ex.id / "manifest.json").read_text())
    assert manifest["recordings"]["bad"]["status"] == "failed"
    # a failure after success removes the stale array
    store.mark_failed(ex, "a/b", RuntimeError("boom"))
    assert not store.path(ex, "a/b").exists() and store.status(ex)["failed"]["a/b"] == "RuntimeError: boom"


def test_extract_features_parallel_resumable(tmp_path):
    recs = [fake_recording(tmp_path, f"r{i}") for i in range(3)]
    recs.append(fake_recording(tmp_path, "broken", broken_audio=True))
    store = FeatureStore(tmp_path / "feats")
    exs = [get_extractor("face_hog"), get_extractor("logmel_stats")]

    summary = extract_features(recs, exs, store, workers=2, progress=False)
    assert len(summary.done) == 7 and len(summary.failed) == 1 and not summary.skipped
    assert not summary.ok
    eid, name, reason = summary.failed[0]
    assert (eid, name) == (exs[1].id, "broken") and "MediaError" in reason and "audio.wav" in reason
    assert "1 failed" in summary.format() and "broken" in summary.format()
    st = store.status(exs[1].id)
    assert st["num_done"] == 3 and "MediaError" in st["failed"]["broken"]
    manifest = json.loads((tmp_path / "feats" / exs[1].id / "manifest.json").read_text())
    assert manifest["recordings"]["broken"]["status"] == "failed" and len(manifest["recordings"]) == 4
    for rec in recs:
        x = store.load(exs[0].id, rec.name)
        assert x.shape == (rec.num_steps, exs[0].dim)
        assert not x[~rec.face_mask].any() and x[rec.face_mask].any(axis=1).all()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "feats").rglob("*.npy")}

    again = extract_features(recs, exs, store, workers=1, progress=False)
    assert again.done == [] and len(again.skipped) == 7 and len(again.failed) == 1  # only the failure retried
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "feats").rglob("*.npy")} == mtimes


def test_select_shard():
    recs = [Recording(f"r{i}", np.arange(2.0), np.zeros((2, 2)), np.zeros(2, bool)) for i in range(5)]
    parts = [select_shard(recs, (i, 2)) for i in range(2)]
    assert sorted(r.name for p in parts for r in p) == [r.name for r in recs]
    assert not {r.name for r in parts[0]} & {r.name for r in parts[1]}


@register_extractor
class _CrashOnName(Extractor):
    """Kills its worker process for the recording named "crash" (a segfaulting decoder, an OOM kill)."""

    name = "test_crash_on_name"
    modality = "audio"

    @property
    def dim(self) -> int:
        return 1

    def extract(self, rec):
        if rec.name == "crash":
            os._exit(3)
        return np.ones((rec.num_steps, 1), np.float32)


def test_extract_survives_a_dying_worker(tmp_path):
    recs = [
        Recording(n, np.arange(3.0), np.zeros((3, 2)), np.zeros(3, bool)) for n in ("a", "crash", "b", "c")
    ]
    store = FeatureStore(tmp_path)
    ex = get_extractor("test_crash_on_name")
    summary = extract_features(recs, [ex], store, workers=2, progress=False)
    assert sorted(r for _, r in summary.done) == ["a", "b", "c"]
    assert [(r, "died" in reason) for _, r, reason in summary.failed] == [("crash", True)]
    assert store.status(ex)["failed"].keys() == {"crash"}


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    from avaffect.errors import ConfigError
    from avaffect.features.extractors import get_extractor
    from avaffect.features.store import FeatureStore
    from avaffect.features.store_extraction import extract_features

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    rec = _fake_recording_for_ray(tmp_path)
    with pytest.raises(ConfigError, match=r"avaffect\[ray\]"):
        extract_features([rec], [get_extractor("logmel_stats")], FeatureStore(tmp_path / "store"), progress=False,
                         backend="ray")


def _fake_recording_for_ray(tmp_path):
    import numpy as np

    from avaffect.data.recording import Recording

    return Recording(name="r", times=np.arange(3) / 25, labels=np.zeros((3, 2)), face_mask=np.zeros(3, bool))


def test_extract_workers_exit_when_the_parent_is_killed(tmp_path):
    """kill -9 of `avaffect extract` must not leave its worker processes running."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from avaffect.pools import spawn_pool\n"
        "if __name__ == '__main__':\n"
        "    pool = spawn_pool(1)\n"
        "    running = pool.submit(time.sleep, 120)\n"
        "    time.sleep(4)\n"
        "    assert running.running()\n"
        "    print(*pool._processes, flush=True)\n"
        "    time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        alive = workers
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in alive if os.path.exists(f"/proc/{p}") and "zombie" not in
                     open(f"/proc/{p}/status").read().lower()]
        assert not alive, f"workers {alive} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
