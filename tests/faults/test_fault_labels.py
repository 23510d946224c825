"""Broken label files and dataset layouts given to ``avaffect prepare`` (and hostile recording names to
``avaffect extract``): every problem names its file with what to do, valid oddities load with the right numbers,
and no name leaves the folder it is written in."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from faultkit import ANN, aff_root, ann_text, decoded_frames, write_jpgs
from mediafiles import write_test_video


def _prepare(cli, tmp_path, kind, root, *extra):
    r = cli("prepare", kind, root, "--json", tmp_path / "report.json", *extra)
    report = json.loads((tmp_path / "report.json").read_text())
    return r, report


def _errors(report):
    return [p["message"] for p in report["problems"] if p["severity"] == "error"]


@pytest.mark.parametrize("row, needle", [
    (lambda i: "0.1,abc" if i == 4 else None, "line 6"),
    (lambda i: "1.5,0.2" if i == 2 else None, "outside [-1, 1]"),
    (lambda i: "nan,0.2" if i == 3 else None, "NaN"),
], ids=["non-numeric", "out-of-range", "nan"])
def test_a_bad_annotation_cell_names_the_file_and_line(cli, tmp_path, row, needle):
    root = aff_root(tmp_path, ann_text(20, row))
    r, report = _prepare(cli, tmp_path, "affwild2", root)
    errors = _errors(report)
    assert r.rc == 1 and len(errors) == 1
    assert "a.txt" in errors[0] and needle in errors[0] and "—" in errors[0]  # the fix follows the dash


def test_a_wrong_header_names_the_file(cli, tmp_path):
    root = aff_root(tmp_path, ann_text(20).replace("valence,arousal", "val,aro"))
    r, report = _prepare(cli, tmp_path, "affwild2", root)
    assert r.rc == 1 and "a.txt" in _errors(report)[0] and "valence,arousal" in _errors(report)[0]


def test_minus_five_markers_are_unannotated_frames(cli, tmp_path):
    root = aff_root(tmp_path, ann_text(20, lambda i: "-5,-5" if i < 5 else None))
    r, report = _prepare(cli, tmp_path, "affwild2", root)
    assert r.rc == 0
    assert report["summary"]["train"]["annotated_fraction"] == pytest.approx(15 / 20)


@pytest.mark.parametrize("rows, tolerance, ok, annotated", [
    (21, 0, False, None), (19, 0, False, None), (21, 1, True, 1.0), (19, 1, True, 19 / 20), (23, 1, False, None),
], ids=["one-too-many", "one-too-few", "one-too-many-tolerated", "one-too-few-tolerated", "three-too-many"])
def test_annotation_rows_must_match_the_frames_within_the_tolerance(cli, tmp_path, rows, tolerance, ok, annotated):
    root = aff_root(tmp_path, ann_text(rows))
    r, report = _prepare(cli, tmp_path, "affwild2", root, "--length-tolerance", tolerance)
    if ok:
        assert r.rc == 0 and report["summary"]["train"]["frames"] == 20
        assert report["summary"]["train"]["annotated_fraction"] == pytest.approx(annotated)
    else:
        assert r.rc == 1 and f"{rows} annotation rows" in _errors(report)[0] and "20 frames" in _errors(report)[0]


def test_an_annotation_in_both_splits_is_an_error(cli, tmp_path):
    root = aff_root(tmp_path)
    (root / ANN / "Validation_Set" / "a.txt").write_text(ann_text(20))
    r, report = _prepare(cli, tmp_path, "affwild2", root)
    assert r.rc == 1 and any("a.txt" in e and "one split" in e for e in _errors(report))


def test_a_crop_beyond_the_timeline_is_an_error(cli, tmp_path):
    root = aff_root(tmp_path)
    write_jpgs(root / "cropped_aligned" / "a", [0, 1, 2, 35])
    r, report = _prepare(cli, tmp_path, "affwild2", root)
    assert r.rc == 1 and any("00036.jpg" in e for e in _errors(report))


def test_left_and_right_without_their_base_video_say_which_video_is_missing(cli, tmp_path):
    root = aff_root(tmp_path)
    write_jpgs(root / "cropped_aligned" / "x_left", range(20))
    (root / ANN / "Train_Set" / "x_left.txt").write_text(ann_text(20))
    r, report = _prepare(cli, tmp_path, "affwild2", root)
    assert r.rc == 1 and any("x.mp4" in e and "x_left" in e for e in _errors(report))


def _manifest(root: Path, rows: list[list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root


@pytest.mark.parametrize("rows, needle", [
    ([["recording", "video"], ["c1", "c1.mp4"]], "split"),
    ([["recording", "video", "split"], ["c1", "c1.mp4", "holdout"]], "holdout"),
    ([["recording", "video", "split"], ["c1", "c1.mp4", "train"], ["c1", "c1.mp4", "validation"]], "already listed"),
], ids=["missing-column", "unknown-split", "duplicate"])
def test_a_broken_manifest_is_named_with_the_problem(cli, tmp_path, rows, needle):
    root = _manifest(tmp_path / "man", rows)
    write_test_video(root / "c1.mp4", 10)
    r, report = _prepare(cli, tmp_path, "manifest", root)
    assert r.rc == 1 and any("manifest.csv" in e and needle in e for e in _errors(report))


def test_time_labels_past_the_end_of_the_media_are_refused(cli, tmp_path):
    root = tmp_path / "man"
    write_test_video(root / "c1.mp4", 10)
    (root / "c1.csv").write_text("time,valence,arousal\n" + "".join(f"{i * 0.04:.2f},0.1,0.2\n" for i in range(200)))
    _manifest(root, [["recording", "video", "labels", "split"], ["c1", "c1.mp4", "c1.csv", "train"]])
    r, report = _prepare(cli, tmp_path, "manifest", root)
    assert r.rc == 1 and any("c1.csv" in e and "lasts" in e for e in _errors(report))


def test_empty_label_cells_are_unannotated_steps(cli, tmp_path):
    root = tmp_path / "man"
    write_test_video(root / "c1.mp4", 10)
    (root / "c1.csv").write_text("valence,arousal\n" + "".join(",\n" if i < 4 else "0.1,0.2\n" for i in range(10)))
    _manifest(root, [["recording", "video", "labels", "split"], ["c1", "c1.mp4", "c1.csv", "train"]])
    r, report = _prepare(cli, tmp_path, "manifest", root)
    assert r.rc == 0 and report["summary"]["train"]["annotated_fraction"] == pytest.approx(0.6)


def test_a_recola_valence_file_without_its_arousal_file(cli, tmp_path):
    import wave

    root = tmp_path / "recola"
    (root / "recordings_audio").mkdir(parents=True)
    with wave.open(str(root / "recordings_audio" / "train_1.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(16000, "<i2").tobytes())
    gold = root / "ratings_gold_standard" / "valence"
    gold.mkdir(parents=True)
    (gold / "train_1.arff").write_text("@relation g\n@attribute frameTime numeric\n@attribute GoldStandard numeric\n"
                                       "@data\n" + "".join(f"{i * 0.04:.2f},0.1\n" for i in range(25)))
    r, report = _prepare(cli, tmp_path, "recola", root)
    assert r.rc == 1 and any("train_1" in e and "arousal" in e for e in _errors(report))


@pytest.mark.parametrize("name", ["../../x", "/ABSOLUTE/x", "a/b", ".hidden"])
def test_a_hostile_recording_name_never_leaves_the_store(cli, tmp_path, name):
    root = tmp_path / "man"
    video = write_test_video(root / "clip.mp4", 10)
    _manifest(root, [["recording", "video", "split"], [name, "clip.mp4", "test"]])
    before = {p for p in tmp_path.rglob("*")}
    r = cli("extract", root, "--dataset", "manifest", "--out", tmp_path / "store", "-q")
    assert r.rc == 0
    new = {p for p in tmp_path.rglob("*")} - before
    store = tmp_path / "store"
    assert all(p == store or store in p.parents for p in new)  # nothing written outside --out
    for folder in (p for p in store.iterdir() if (p / "extractor.json").is_file()):
        (npy,) = folder.glob("*.npy")
        assert unquote(npy.stem) == name and np.load(npy).shape[0] == decoded_frames(video)
    (timeline,) = (store / "_timelines").glob("*.npz")  # the recording's timeline, named the same safe way
    assert unquote(timeline.name[:-len(".npz")]) == name
    assert not Path("/ABSOLUTE").exists()
