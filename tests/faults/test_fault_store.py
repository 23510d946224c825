"""A damaged feature store, stale sources and interrupted extraction: redone or refused, never silently used."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from faultkit import decoded_frames
from mediafiles import SR, write_test_video, write_tone

from avaffect.errors import DataError
from avaffect.features.store import FeatureStore


@pytest.fixture
def extracted(cli, tmp_path):
    """A folder of three tiny videos extracted into ``tmp_path/store``: (media folder, store, frames per name)."""
    media = tmp_path / "media"
    frames = {}
    for name, n in (("a", 10), ("b", 12), ("c", 14)):
        frames[name] = decoded_frames(write_test_video(media / f"{name}.mp4", n))
    assert cli("extract", media, "--out", tmp_path / "store", "-q").rc == 0
    return media, tmp_path / "store", frames


def _npys(store):
    return sorted(store.glob("*/*.npy"))


def _assert_complete(store, frames):
    folders = [p for p in store.iterdir() if (p / "extractor.json").is_file()]
    assert len(folders) == 2
    for folder in folders:
        for name, n in frames.items():
            arr = np.load(folder / f"{name}.npy")
            assert arr.shape[0] == n and np.isfinite(arr).all()
            assert json.loads((folder / "_status" / f"{name}.json").read_text())["status"] == "done"
    for name, n in frames.items():  # each recording's timeline beside its features, as long as they are
        assert FeatureStore(store).timelines.get(name).num_steps == n


def test_a_truncated_feature_file_is_extracted_again(cli, extracted):
    media, store, frames = extracted
    npy = _npys(store)[0]
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    r = cli("extract", media, "--out", store)
    assert r.rc == 0 and "1 done" in r.out
    _assert_complete(store, frames)


def test_a_touched_source_video_keeps_valid_features(cli, extracted):
    media, store, frames = extracted
    now = time.time_ns() + 10**9
    os.utime(media / "a.mp4", ns=(now, now))  # same content, new time: redoing it or not, the store stays right
    assert cli("extract", media, "--out", store, "-q").rc == 0
    _assert_complete(store, frames)


def test_a_source_video_replaced_by_another_is_extracted_again(cli, extracted):
    media, store, frames = extracted
    frames["a"] = decoded_frames(write_test_video(media / "a.mp4", 17, tone_hz=220.0))
    r = cli("extract", media, "--out", store)
    assert r.rc == 0 and "2 done" in r.out and "4 skipped" in r.out
    _assert_complete(store, frames)


def test_loading_a_feature_file_with_nan_is_refused_naming_it(extracted):
    media, store, frames = extracted
    npy = _npys(store)[0]
    arr = np.load(npy)
    arr[1, 1] = np.nan
    np.save(npy, arr)
    with pytest.raises(DataError, match="NaN") as err:
        FeatureStore(store).load(npy.parent.name, npy.stem)
    assert npy.name in str(err.value) and "--force" in str(err.value)


def test_extract_does_not_report_a_feature_file_with_nan_as_done(cli, extracted):
    media, store, frames = extracted
    npy = _npys(store)[0]
    arr = np.load(npy)
    arr[1, 1] = np.nan
    np.save(npy, arr)
    r = cli("extract", media, "--out", store, "-q")
    assert r.rc != 0 or np.isfinite(np.load(npy)).all()


def test_an_interrupted_extraction_resumes_and_completes(cli, tmp_path, monkeypatch):
    media = tmp_path / "media"
    frames = {name: decoded_frames(write_test_video(media / f"{name}.mp4", n)) for name, n in (("a", 10), ("b", 12))}
    real_save = FeatureStore.save
    calls = []

    def save_then_interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second file is being written
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "save", save_then_interrupt)
    r = cli("extract", media, "--out", tmp_path / "store", "--workers", "1", "-q")
    assert r.rc == 130 and "interrupted" in r.err
    assert len(_npys(tmp_path / "store")) == 1  # the finished file is kept, the interrupted one is not there
    monkeypatch.setattr(FeatureStore, "save", real_save)
    r = cli("extract", media, "--out", tmp_path / "store", "--workers", "1")
    assert r.rc == 0 and "3 done" in r.out and "1 skipped" in r.out
    _assert_complete(tmp_path / "store", frames)
    assert not list((tmp_path / "store").rglob("*.tmp"))


def test_a_garbage_video_fails_alone_and_the_good_one_is_kept(cli, tmp_path):
    media = tmp_path / "media"
    n = decoded_frames(write_test_video(media / "good.mp4", 10))
    (media / "bad.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    r = cli("extract", media, "--out", tmp_path / "store", "-q")
    assert r.rc == 1 and "FAILED" in r.out and "bad" in r.out
    _assert_complete(tmp_path / "store", {"good": n})


def _same_size_replacement(path, n_frames: int) -> None:
    """Overwrite ``path`` with other pictures and sound of ``n_frames`` frames, padded (an mp4 ``free`` box) to the
    original's exact byte size."""
    import struct

    import av

    size = path.stat().st_size
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=16000, layout="mono")
        a.bit_rate = 16000
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 200, np.uint8), format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        write_tone(c, a, n_frames / 25, tone_hz=SR / (6 * np.pi), level=0.2)  # sin(k / 3), 640 samples a frame
    missing = size - path.stat().st_size
    assert missing >= 8, "the replacement must come out smaller to be padded"
    with open(path, "ab") as fh:
        fh.write(struct.pack(">I", missing) + b"free" + bytes(missing - 8))


def test_a_source_replaced_by_a_same_size_clip_is_extracted_again(cli, extracted, tmp_path):
    media, store, frames = extracted
    _same_size_replacement(media / "c.mp4", frames["c"])
    assert decoded_frames(media / "c.mp4") == frames["c"]
    assert cli("extract", media, "--out", store, "-q").rc == 0
    assert cli("extract", media, "--out", tmp_path / "fresh", "-q").rc == 0
    for folder in (p for p in store.iterdir() if (p / "extractor.json").is_file()):
        np.testing.assert_allclose(np.load(folder / "c.npy"), np.load(tmp_path / "fresh" / folder.name / "c.npy"),
                                   atol=1e-5)
