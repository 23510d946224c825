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


def test_extract_refuses_a_folder_without_video(tmp_path, capsys):
    """An empty folder, a folder of audio files, a path that does not exist: a message and exit 2, as predict says
    it (one rule, `cli.common.no_video_error`), and no store written."""
    import wave

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["extract", str(empty), "--out", str(tmp_path / "store"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"no video found in {empty}" in err and ".mp4" in err and ".flv" in err and "Traceback" not in err

    audio = tmp_path / "audio"
    audio.mkdir()
    with wave.open(str(audio / "voice.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(1600, "<i2").tobytes())
    assert main(["extract", str(audio), "--out", str(tmp_path / "store"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no video found" in err and "voice.wav" in err and "audio-only" in err

    typo = tmp_path / "vidoes"
    for extra in ([], ["--dataset", "affwild2"]):
        assert main(["extract", str(typo), "--out", str(tmp_path / "store"), "-q", *extra]) == 2
        err = capsys.readouterr().err
        assert f"{typo}: does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "store").exists() and not (empty / "features").exists()


def test_extract_refuses_a_dataset_without_recordings(tmp_path, capsys):
    """An Aff-Wild2 layout whose split folders hold no annotation (and no video or crops): no recording, a message."""
    from avaffect.data.layout import AFFWILD2_ANNOTATION_DIR

    root = tmp_path / "aff"
    for split in ("Train_Set", "Validation_Set"):
        (root / AFFWILD2_ANNOTATION_DIR / split).mkdir(parents=True)
    assert main(["extract", str(root), "--out", str(tmp_path / "store"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{root}: no recording found" in err and "affwild2" in err and "avaffect prepare affwild2" in err
    assert not (tmp_path / "store").exists()


def test_a_shard_that_selects_no_recording_says_so_and_exits_0(synth_root, tmp_path, capsys):
    """A job array with more tasks than recordings (7 here, shard 7/8): nothing to do is not an error, but said."""
    assert main(["extract", str(synth_root), "--out", str(tmp_path / "store"), "--shard", "7/8", "-q"]) == 0
    out = capsys.readouterr().out
    assert "shard 7/8 selects none of the 7 recording(s)" in out and "nothing to do" in out
    assert not (tmp_path / "store").exists()
