"""The generic manifest reader with both label styles (time / one row per frame)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mediafiles import write_test_video

from avaffect.data.datasets import load_dataset
from avaffect.data.manifest import load_manifest, read_label_csv
from avaffect.errors import DataError

SR = 16000
HEADER = "recording,video,audio,labels,split,subject\n"


def write_mp4(path: Path, n_frames: int, fps: int = 10, audio: bool = True) -> Path:
    return write_test_video(path, n_frames, fps, audio, width=32, height=32)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    write_mp4(d / "a.mp4", 20)
    write_mp4(d / "silent.mp4", 20, audio=False)
    return d


def _dataset(root: Path, media: Path) -> Path:
    (root / "videos").mkdir(parents=True)
    for name in ("c1", "c2", "c3"):
        (root / "videos" / f"{name}.mp4").write_bytes((media / "a.mp4").read_bytes())
    lab = root / "labels"
    lab.mkdir()
    (lab / "c1.csv").write_text("time,valence,arousal\n" + "".join(
        f"{i * 0.25},{0.1 * (i % 5)},{'' if i == 2 else -0.2}\n" for i in range(8)))
    (lab / "c2.csv").write_text("frame,valence,arousal\n" + "".join(
        f"{i},0.5,nan\n" if i == 4 else f"{i},0.5,0.25\n" for i in range(1, 21)))
    (root / "manifest.csv").write_text(HEADER + "c1,videos/c1.mp4,,labels/c1.csv,train,spk1\n"
                                       "c2,videos/c2.mp4,,labels/c2.csv,dev,\n"
                                       "c3,videos/c3.mp4,,,test,spk1\n")
    return root


def test_both_label_styles(tmp_path, media):
    root = _dataset(tmp_path / "ds", media)
    recs = {r.name: r for r in load_manifest(root)}
    assert list(recs) == ["c1", "c2", "c3"]
    c1 = recs["c1"]
    assert c1.split == "train" and c1.subject == "spk1" and c1.num_steps == 8
    np.testing.assert_allclose(c1.times, np.arange(8) * 0.25)
    assert c1.fps == pytest.approx(4.0) and c1.label_mask.tolist() == [True] * 2 + [False] + [True] * 5
    assert c1.audio_path == c1.video_path == root / "videos" / "c1.mp4"
    c2 = recs["c2"]  # 1-based frames → video frame times
    assert c2.split == "validation" and c2.subject == "c2" and c2.num_steps == 20
    np.testing.assert_allclose(c2.times, np.arange(20) / 10, atol=1e-6)
    assert c2.label_mask.sum() == 19 and not c2.label_mask[3]
    c3 = recs["c3"]
    assert c3.split == "test" and not c3.has_labels and c3.num_steps == 20
    assert [r.name for r in load_dataset("manifest", root / "manifest.csv", splits=("test",))] == ["c3"]


def test_row_labels_and_length_check(tmp_path, media):
    root = _dataset(tmp_path / "ds", media)
    (root / "labels" / "c2.csv").write_text("valence,arousal\n" + "0.1,0.2\n" * 21)
    with pytest.raises(DataError, match="21 label frames but the video") as e:
        load_manifest(root)
    assert "c2.csv" in str(e.value) and "c2.mp4" in str(e.value)
    recs = {r.name: r for r in load_manifest(root, length_tolerance=1)}
    assert recs["c2"].num_steps == 20 and recs["c2"].label_mask.all()


@pytest.mark.parametrize("content,match", [
    ("time,valence\n0,0.1\n", "no 'arousal' column"),
    ("time,valence,arousal\n0,0.1,abc\n", "line 2: arousal = 'abc' is not a number"),
    ("time,valence,arousal\n0,0.1,0.2\n0.04,1.5,0.2\n", "line 3: valence = 1.5 outside"),
    ("time,valence,arousal\n0.04,0.1,0.2\n0.04,0.1,0.2\n", "does not increase"),
    ("frame,valence,arousal\n0.5,0.1,0.2\n", "integer frame"),
    ("time,valence,arousal\n", "no rows"),
])
def test_bad_label_files(tmp_path, content, match):
    p = tmp_path / "lab.csv"
    p.write_text(content)
    with pytest.raises(DataError, match=match) as e:
        read_label_csv(p)
    assert "lab.csv" in str(e.value)


def test_manifest_errors_all_reported(tmp_path, media):
    root = _dataset(tmp_path / "ds", media)
    (root / "videos" / "c4.mp4").write_bytes((media / "silent.mp4").read_bytes())
    with open(root / "manifest.csv", "a") as fh:
        fh.write("c1,videos/c1.mp4,,,train,\n"  # duplicate
                 "c5,videos/missing.mp4,,,train,\n"  # missing file
                 "c6,videos/c1.mp4,,,holdout,\n"  # unknown split
                 "c4,videos/c4.mp4,,,test,\n")  # no audio anywhere
    errors = []
    recs = load_manifest(root, on_error=errors.append)
    assert [r.name for r in recs] == ["c1", "c2", "c3"]
    text = "\n".join(map(str, errors))
    assert len(errors) == 4, text
    assert "line 5: recording 'c1' already listed on line 2" in text
    assert "missing.mp4" in text and "not found (manifest line 6)" in text
    assert "unknown split 'holdout'" in text and "c4.mp4: has no audio stream" in text


def test_missing_column_and_file(tmp_path):
    (tmp_path / "manifest.csv").write_text("recording,labels\nx,y.csv\n")
    with pytest.raises(DataError, match="missing columns video, split") as e:
        load_manifest(tmp_path)
    assert "manifest.csv" in str(e.value)
    with pytest.raises(DataError, match="file not found"):
        load_manifest(tmp_path / "other.csv")


def test_audio_only_and_no_media_check(tmp_path, media):
    root = _dataset(tmp_path / "ds", media)
    (root / "manifest.csv").write_text(HEADER + "c1,,videos/c1.mp4,labels/c1.csv,train,\n"
                                       "c2,videos/c2.mp4,,labels/c2.csv,validation,\n"
                                       "c9,,videos/c1.mp4,,test,\n")
    errors = []
    recs = {r.name: r for r in load_manifest(root, check_media=False, on_error=errors.append)}
    assert recs["c1"].video_path is None and recs["c1"].num_steps == 8
    assert recs["c2"].num_steps == 20 and recs["c2"].fps == 25.0  # default fps without reading the video
    assert len(errors) == 1 and "audio-only recording 'c9'" in str(errors[0])


def test_rows_of_empty_cells_are_unannotated_steps_not_blank_lines(tmp_path):
    """The documented form of an unannotated row (``,``) keeps every later label on its own frame."""
    path = tmp_path / "labels.csv"
    path.write_text("valence,arousal\n0.1,0.2\n,\n\n0.3,0.4\n,\n0.5,0.6\n")
    kind, index, labels = read_label_csv(path)
    assert kind == "rows" and labels.shape == (5, 2)
    np.testing.assert_allclose(labels[[0, 2, 4]], [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], atol=1e-6)
    assert np.isnan(labels[[1, 3]]).all()


def test_a_manifest_without_its_media_reads_the_timelines_of_a_feature_store(tmp_path, media):
    """Extracted where the media are, then read with the manifest and label files alone: the same timelines and
    labels, marked as stored; a row missing from the store names what to do."""
    import shutil

    from avaffect.cli.main import main
    from avaffect.features.store import FeatureStore

    root = _dataset(tmp_path / "ds", media)
    store = tmp_path / "store"
    assert main(["extract", str(root), "--dataset", "manifest", "--out", str(store), "-q"]) == 0
    full = {r.name: r for r in load_manifest(root)}
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(root / "manifest.csv", bare)
    shutil.copytree(root / "labels", bare / "labels")
    index = FeatureStore(store).timelines
    got = {r.name: r for r in load_dataset("manifest", bare, timelines=index)}
    assert list(got) == list(full)
    for name, rec in got.items():
        assert rec.stored is not None and rec.video_path is None
        for field in ("times", "labels", "face_mask"):
            np.testing.assert_array_equal(getattr(rec, field), getattr(full[name], field))
        assert rec.split == full[name].split and rec.subject == full[name].subject
    index.path("c2").unlink()
    with pytest.raises(DataError, match="none of its media here") as err:
        load_manifest(bare, timelines=index)
    assert "'c2'" in str(err.value) and "avaffect extract" in str(err.value)
    with pytest.raises(DataError, match="not found"):  # without a store: the media are required, as before
        load_manifest(bare)
