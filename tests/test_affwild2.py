"""The Aff-Wild2 reader on small hand-made fixtures in the real on-disk layout."""

import numpy as np
import pytest

from avaffect.data.affwild2 import load_affwild2, read_annotation
from avaffect.errors import DataError


def _write_ann(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("valence,arousal\n" + "".join(f"{v},{a}\n" for v, a in rows))


def _crops(root, name, indices):
    d = root / "cropped_aligned" / name
    d.mkdir(parents=True, exist_ok=True)
    for i in indices:
        (d / f"{i + 1:05d}.jpg").write_bytes(b"jpg")


def _layout(tmp_path):
    ann = tmp_path / "annotations" / "VA_Estimation_Challenge"
    _write_ann(ann / "Train_Set" / "1-30-640x360.txt", [(0.1, 0.2), (-5, -5), (-5, -5), (0.3, -0.4)])
    _write_ann(ann / "Validation_Set" / "v2_left.txt", [(0.5, 0.5)] * 3)
    (ann / "Validation_Set").mkdir(parents=True, exist_ok=True)
    _crops(tmp_path, "1-30-640x360", [0, 1, 3])
    _crops(tmp_path, "v2_left", [0, 1, 2])
    _crops(tmp_path, "test_vid", [0, 4])
    return tmp_path


def test_reads_splits_gaps_and_face_mask(tmp_path):
    recs = {r.name: r for r in load_affwild2(_layout(tmp_path), check_media=False)}
    assert set(recs) == {"1-30-640x360", "v2_left", "test_vid"}
    r = recs["1-30-640x360"]
    assert r.split == "train" and r.num_steps == 4
    assert np.isnan(r.labels[1:3]).all() and r.label_mask.tolist() == [True, False, False, True]
    np.testing.assert_allclose(r.labels[3], [0.3, -0.4])
    assert r.face_mask.tolist() == [True, True, False, True]
    np.testing.assert_allclose(np.diff(r.times), 1 / 30)
    assert recs["v2_left"].split == "validation" and recs["v2_left"].subject == "v2"
    t = recs["test_vid"]
    assert t.split == "test" and not t.has_labels and t.num_steps == 5
    only_train = load_affwild2(tmp_path, splits=("train",), check_media=False)
    assert [r.name for r in only_train] == ["1-30-640x360"]


def test_missing_annotation_folder_and_file(tmp_path):
    with pytest.raises(DataError, match="annotation folder not found"):
        load_affwild2(tmp_path)
    with pytest.raises(DataError, match="annotation file not found") as e:
        read_annotation(tmp_path / "nope.txt")
    assert "nope.txt" in str(e.value)


@pytest.mark.parametrize("content,match", [
    ("valence,arousal\n0.1,0.2\n0.1\n", "line 3"),
    ("valence,arousal\n0.1,abc\n", "line 2"),
    ("val,aro\n0.1,0.2\n", "header"),
    ("valence,arousal\n1.7,0.2\n", "outside"),
    ("valence,arousal\nnan,0.2\n", "NaN"),
    ("", "empty"),
])
def test_malformed_annotation_names_file_and_line(tmp_path, content, match):
    p = tmp_path / "bad.txt"
    p.write_text(content)
    with pytest.raises(DataError, match=match) as e:
        read_annotation(p)
    assert "bad.txt" in str(e.value)


def test_recording_without_crops_or_video(tmp_path):
    _write_ann(tmp_path / "annotations/VA_Estimation_Challenge/Train_Set/ghost.txt", [(0, 0)])
    (tmp_path / "annotations/VA_Estimation_Challenge/Validation_Set").mkdir()
    with pytest.raises(DataError, match="neither face crops nor a video"):
        load_affwild2(tmp_path, check_media=False)


def test_crops_beyond_annotation_are_an_error(tmp_path):
    _layout(tmp_path)
    _crops(tmp_path, "1-30-640x360", [9])
    with pytest.raises(DataError, match="beyond"):
        load_affwild2(tmp_path, check_media=False)
