"""`avaffect extract VIDEO_FOLDER --out STORE` on real clips, and its failure handling."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest

from avaffect.cli.main import main
from avaffect.features.store import FeatureStore
from avaffect.media import video_frame_times


@pytest.fixture
def crema_folder(crema_d, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for clip in sorted(crema_d.glob("*.flv"))[:3]:
        shutil.copy(clip, folder / clip.name)
    return folder


def _store_status(store_root):
    store = FeatureStore(store_root)
    return {eid: store.status(eid) for eid in store.extractor_ids()}


@pytest.mark.slow
def test_extract_folder_of_real_clips_then_nothing_to_do(crema_folder, tmp_path, capsys):
    store_root = tmp_path / "store"
    assert main(["extract", str(crema_folder), "--out", str(store_root), "--workers", "2", "-q"]) == 0
    first = capsys.readouterr().out
    assert "6 done, 0 skipped" in first and "0 failed" in first
    store = FeatureStore(store_root)
    ids = store.extractor_ids()
    assert len(ids) == 2
    for clip in sorted(crema_folder.glob("*.flv")):
        n = len(video_frame_times(clip))
        for eid in ids:
            arr = store.load(eid, clip.stem)
            assert arr.shape[0] == n and np.isfinite(arr).all()
        video = store.load(next(i for i in ids if i.startswith("face_hog")), clip.stem)
        assert np.mean(np.any(video != 0, axis=1)) >= 0.9  # a face in at least 90 % of frames
    assert main(["extract", str(crema_folder), "--out", str(store_root), "-q"]) == 0
    assert "0 done, 6 skipped" in capsys.readouterr().out  # a second run does no work


def _remux_without(src, dst, keep: str):
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0] if keep == "video" else inp.streams.audio[0]
        template = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is not None:
                packet.stream = template
                out.mux(packet)


@pytest.mark.slow
def test_broken_files_are_recorded_and_the_rest_is_extracted(crema_d, synth_root, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    good = sorted(crema_d.glob("*.flv"))[0]
    shutil.copy(good, folder / "good.flv")
    (folder / "truncated.flv").write_bytes(good.read_bytes()[:3000])
    mp4 = next((synth_root / "videos").glob("*.mp4"))
    _remux_without(mp4, folder / "no_audio.mp4", keep="video")
    _remux_without(mp4, folder / "audio_only.mp4", keep="audio")
    store_root = tmp_path / "store"
    assert main(["extract", str(folder), "--out", str(store_root), "-q"]) == 1  # non-zero: failures
    out = capsys.readouterr().out
    for name in ("truncated", "no_audio", "audio_only"):
        assert f"/{name}:" in out, out
    assert "no audio" in out.lower()
    store = FeatureStore(store_root)
    for eid in store.extractor_ids():
        manifest = json.loads((store_root / eid / "manifest.json").read_text())
        entries = manifest.get("recordings", manifest)
        assert entries["good"]["status"] == "done"
        assert entries["truncated"]["status"] == "failed" and entries["truncated"]["error"]
    # the visual features of the video-only file are fine: only its audio failed
    video_id = next(i for i in store.extractor_ids() if i.startswith("face_hog"))
    assert store.is_done(video_id, "no_audio")
