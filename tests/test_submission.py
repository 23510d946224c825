"""ABAW VA submission: written from run prediction CSVs, checked by the validator."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from avaffect.cli.main import main
from avaffect.errors import DataError
from avaffect.evaluation.reports import write_predictions_csv
from avaffect.evaluation.submission import (
    check_abaw_va,
    load_predictions,
    read_sample_file,
    write_abaw_va,
    write_abaw_va_from_runs,
)

FRAMES = {"2-30-640x360": 5, "10-60-1280x720_left": 4, "video7": 3}


def write_sample(path: Path, frames=FRAMES, values: bool = False) -> Path:
    rows = [f"{v}/{i:05d}.jpg" + (",0,0" if values else "") for v, n in frames.items() for i in range(1, n + 1)]
    path.write_text("image_location,valence,arousal\n" + "\n".join(rows) + "\n")
    return path


def write_run(run: Path, lengths: dict[str, int], split: str = "test", scale: float = 0.5) -> Path:
    for k, (name, n) in enumerate(lengths.items()):
        t = np.arange(n) / 30
        pred = np.stack([np.linspace(-1, 1, n) * scale, np.full(n, 0.1 * k)], axis=1)
        write_predictions_csv(run / "predictions" / split / f"{name}.csv", t, pred, np.full((n, 2), np.nan))
    return run


def test_round_trip_with_pad_trim_and_clip(tmp_path, caplog):
    sample = write_sample(tmp_path / "sample.txt")
    # video7: 1 frame short → padded; 2-30: 2 frames too many → trimmed; extra video ignored
    run = write_run(tmp_path / "run", {"2-30-640x360": 7, "10-60-1280x720_left": 4, "video7": 2, "other": 3},
                    scale=1.5)
    with caplog.at_level(logging.WARNING):
        report = write_abaw_va_from_runs([run], sample, tmp_path / "sub" / "va.txt")
    assert report.padded == {"video7": 1} and report.trimmed == {"2-30-640x360": 2}
    assert report.unused == ["other"] and report.clipped > 0 and report.rows == 12 and report.videos == 3
    assert "clipped" in caplog.text and "padded 1 video(s), trimmed 1" in caplog.text
    assert check_abaw_va(report.path, sample) == []
    lines = report.path.read_text().splitlines()
    assert lines[0] == "image_location,valence,arousal" and len(lines) == 13
    assert lines[1].startswith("2-30-640x360/00001.jpg,-1.000000,")  # clipped from -1.5
    assert lines[-1] == lines[-2].replace("00002.jpg", "00003.jpg")  # last frame repeated
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_sample_order_is_kept(tmp_path):
    frames = {"b": 2, "a": 2}
    sample = tmp_path / "s.csv"
    sample.write_text("image_location,valence,arousal\nb/00002.jpg\nb/00001.jpg\na/00001.jpg\na/00002.jpg\n")
    preds = {"a": np.array([[0.1, 0.2], [0.3, 0.4]]), "b": np.array([[-0.1, -0.2], [-0.3, -0.4]])}
    write_abaw_va(preds, sample, tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()[1:]
    assert lines == ["b/00002.jpg,-0.300000,-0.400000", "b/00001.jpg,-0.100000,-0.200000",
                     "a/00001.jpg,0.100000,0.200000", "a/00002.jpg,0.300000,0.400000"]
    assert read_sample_file(sample).frames_per_video() == frames


def test_missing_video_and_target_runs(tmp_path):
    sample = write_sample(tmp_path / "sample.txt", values=True)
    with pytest.raises(DataError, match="no predictions for 2 of its 3 videos: 10-60-1280x720_left, video7"):
        write_abaw_va({"2-30-640x360": np.zeros((5, 2))}, sample, tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()
    # one run per target: the columns are merged
    for target in ("valence", "arousal"):
        for name, n in FRAMES.items():
            p = tmp_path / target / "predictions" / "test" / f"{name}.csv"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"frame,time,{target}\n" + "".join(f"{i},{i / 30:.4f},0.{i}\n" for i in range(n)))
    preds = load_predictions([tmp_path / "valence", tmp_path / "arousal"])
    assert preds["video7"].shape == (3, 2)
    with pytest.raises(DataError, match="no arousal prediction"):
        load_predictions([tmp_path / "valence"])
    with pytest.raises(DataError, match="also predicted in"):
        load_predictions([tmp_path / "valence", tmp_path / "valence" / "predictions"])


def _valid(tmp_path) -> tuple[Path, Path, list[str]]:
    sample = write_sample(tmp_path / "sample.txt")
    preds = {v: np.full((n, 2), 0.25) for v, n in FRAMES.items()}
    out = tmp_path / "va.txt"
    write_abaw_va(preds, sample, out)
    return sample, out, out.read_text().splitlines()


def test_validator_rejects_order_count_nan_range(tmp_path):
    sample, out, lines = _valid(tmp_path)
    assert check_abaw_va(out, sample) == []

    swapped = lines.copy()
    swapped[2], swapped[3] = swapped[3], swapped[2]
    out.write_text("\n".join(swapped) + "\n")
    problems = check_abaw_va(out, sample)
    assert len(problems) == 1 and "and 1 later row(s) disagree too" in problems[0]
    assert problems[0].startswith("line 3 (row 2, 2-30-640x360/00003.jpg): image_location should be "
                                  "'2-30-640x360/00002.jpg'")
    dropped = lines[:3] + lines[4:]  # one row missing in the middle: the first divergence and a count
    out.write_text("\n".join(dropped) + "\n")
    problems = check_abaw_va(out, sample)
    assert len(problems) == 2 and "should be '2-30-640x360/00003.jpg'" in problems[0]
    assert f"and {len(lines) - 5} later row(s)" in problems[0] and "missing" in problems[1]

    out.write_text("\n".join(lines[:-2]) + "\n")
    problems = check_abaw_va(out, sample)
    assert problems == ["the file has 10 rows but the sample file has 12: rows 11..12 are missing "
                        "(first missing: video7/00002.jpg)"]
    out.write_text("\n".join(lines + ["video7/00004.jpg,0,0"]) + "\n")
    assert "line 14 (row 13, video7/00004.jpg): extra row" in check_abaw_va(out, sample)[0]

    bad = lines.copy()
    bad[4] = "2-30-640x360/00004.jpg,nan,0.1"
    bad[6] = "10-60-1280x720_left/00001.jpg,0.2,1.5"
    bad[7] = "10-60-1280x720_left/00002.jpg,,0.2"
    bad[8] = "10-60-1280x720_left/00003.jpg,0.2,abc"
    bad[9] = "10-60-1280x720_left/00004.jpg,0.2"
    out.write_text("\n".join(["image_location,valence,arousal,extra"] + bad[1:]) + "\n")
    problems = check_abaw_va(out, sample)
    assert problems == [
        "line 1: header is 'image_location,valence,arousal,extra', expected 'image_location,valence,arousal'",
        "line 5 (row 4, 2-30-640x360/00004.jpg): valence is NaN",
        "line 7 (row 6, 10-60-1280x720_left/00001.jpg): arousal 1.5 is outside [-1, 1]",
        "line 8 (row 7, 10-60-1280x720_left/00002.jpg): valence is empty",
        "line 9 (row 8, 10-60-1280x720_left/00003.jpg): arousal 'abc' is not a number",
        "line 10 (row 9, 10-60-1280x720_left/00004.jpg): 2 fields, expected 3 (image_location,valence,arousal)",
    ]


def test_cli_submit_and_check(tmp_path, capsys):
    sample = write_sample(tmp_path / "sample.txt")
    run = write_run(tmp_path / "run", {**FRAMES, "video7": 4})
    out = tmp_path / "va.txt"
    assert main(["submit", "abaw", "--predictions", str(run), "--sample-file", str(sample), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "check passed" in text and "trimmed: 1 video(s): video7 -1" in text
    assert main(["submit", "abaw", "--check", str(out), "--sample-file", str(sample)]) == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:1] + [ln.replace("0.", "7.") for ln in lines[1:]]) + "\n")
    assert main(["submit", "abaw", "--check", str(out), "--sample-file", str(sample), "--max-problems", "3"]) == 1
    text = capsys.readouterr().out
    assert "problem(s)" in text and "row 1, 2-30-640x360/00001.jpg" in text and "... and" in text
    assert main(["submit", "abaw", "--check", str(tmp_path / "none.txt"), "--sample-file", str(sample)]) == 1
    assert main(["submit", "abaw", "--check", str(out), "--sample-file", str(tmp_path / "nosample.txt")]) == 2
