"""``avaffect prepare``: every problem of a raw dataset listed at once, and the summary."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from mediafiles import write_test_video

from avaffect.cli.main import main
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.prepare import prepare_dataset
from avaffect.errors import DataError

SR = 16000
FPS = 10
ANN = Path("annotations") / "VA_Estimation_Challenge"


def write_mp4(path: Path, n_frames: int, audio: bool = True) -> Path:
    return write_test_video(path, n_frames, FPS, audio, width=32, height=32)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    write_mp4(d / "v10.mp4", 10)
    write_mp4(d / "v10_silent.mp4", 10, audio=False)
    return d


def _ann(root: Path, split: str, name: str, rows) -> None:
    p = root / ANN / split / f"{name}.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("valence,arousal\n" + "".join(f"{v},{a}\n" for v, a in rows))


def _crops(root: Path, name: str, indices) -> None:
    d = root / "cropped_aligned" / name
    d.mkdir(parents=True, exist_ok=True)
    for i in indices:
        (d / f"{i + 1:05d}.jpg").write_bytes(b"jpg")


def _video(root: Path, media: Path, name: str, src: str = "v10.mp4") -> None:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "videos" / f"{name}.mp4").write_bytes((media / src).read_bytes())


def affwild2(root: Path, media: Path) -> Path:
    """A clean Aff-Wild2 layout: a video with -5 runs, a _left/_right pair sharing pair.mp4, a test video."""
    rows = [(0.1, 0.2)] * 3 + [(-5, -5)] * 4 + [(0.3, -0.4)] * 3
    _ann(root, "Train_Set", "1-30-640x360", rows)
    _crops(root, "1-30-640x360", range(8))
    _video(root, media, "1-30-640x360")
    _ann(root, "Train_Set", "pair_left", [(0.5, 0.5)] * 10)
    _ann(root, "Validation_Set", "pair_right", [(-0.5, 0.1)] * 10)
    _crops(root, "pair_left", range(10))
    _crops(root, "pair_right", range(5))
    _video(root, media, "pair")
    _video(root, media, "tvid")
    _crops(root, "tvid", [0, 1])
    return root


def test_clean_affwild2_with_pair(tmp_path, media):
    root = affwild2(tmp_path, media)
    report = prepare_dataset("affwild2", root)
    assert report.ok, report.format()
    recs = {r.name: r for r in report.recordings}
    assert set(recs) == {"1-30-640x360", "pair_left", "pair_right", "tvid"}  # pair.mp4 is no recording
    left = recs["pair_left"]
    assert left.video_path is None and left.audio_path.name == "pair.mp4" and left.subject == "pair"
    assert left.fps == pytest.approx(FPS) and left.num_steps == 10  # timed by the base video
    s = report.summary()
    assert s["train"].recordings == 2 and s["train"].frames == 20 and s["train"].annotated == 16
    assert s["validation"].face_fraction == pytest.approx(0.5) and s["test"].annotated_fraction == 0
    assert s["total"].recordings == 4
    assert any("both train and validation" in p.message for p in report.warnings)  # pair_left / pair_right
    text = report.format()
    assert "ready: 4 recording(s)" in text and "validation" in text


def test_every_problem_listed_at_once(tmp_path, media):
    root = affwild2(tmp_path, media)
    _ann(root, "Train_Set", "1-30-640x360", [(0.1, 0.2)] * 12)  # 12 rows vs 10 video frames
    _ann(root, "Train_Set", "ghost", [(0.0, 0.0)] * 3)  # neither crops nor video
    _crops(root, "pair_right", [14])  # crop beyond the 10 annotated frames
    _ann(root, "Validation_Set", "pair_left", [(0.5, 0.5)] * 10)  # in two splits
    _ann(root, "Train_Set", "broken", [(0.0, 0.0)] * 3)
    (root / "videos" / "broken.mp4").write_bytes(b"\x00garbage" * 10)  # unreadable
    _ann(root, "Validation_Set", "solo_left", [(0.0, 0.0)] * 3)
    _crops(root, "solo_left", range(3))  # base video solo.mp4 missing: no audio
    _video(root, media, "mute", "v10_silent.mp4")
    _crops(root, "mute", range(10))  # test video without an audio stream
    report = prepare_dataset("affwild2", root)
    assert not report.ok
    text = "\n".join(p.message for p in report.errors)
    expected = ["12 annotation rows but the video", "ghost", "neither face crops nor a video",
                "crop 00015.jpg lies beyond", "also annotated in", "broken.mp4: cannot",
                "no audio for solo_left: the base video solo.mp4", "mute.mp4: has no audio stream"]
    for part in expected:
        assert part in text, f"{part!r} not in\n{text}"
    assert len(report.errors) == len(expected) - 1  # ghost's message holds two of the parts
    # the reader without on_error still stops at the first problem
    with pytest.raises(DataError):
        load_affwild2(root)


def test_cli_prepare_exit_codes(tmp_path, media, capsys):
    root = affwild2(tmp_path / "ok", media)
    assert main(["prepare", "affwild2", str(root), "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "ready" in out and "recordings" in out and (tmp_path / "p.json").is_file()
    _ann(root, "Train_Set", "ghost", [(0.0, 0.0)] * 3)
    _ann(root, "Train_Set", "ghost2", [(0.0, 0.0)] * 3)
    assert main(["prepare", "affwild2", str(root), "--max-problems", "1"]) == 1
    out = capsys.readouterr().out
    assert "2 error(s)" in out and "... and 2 more" in out  # 1 error + 1 warning left out
    assert main(["prepare", "affwild2", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().out
    assert main(["prepare", "synthetic", str(tmp_path / "nowhere")]) == 1
    assert "avaffect synth --out" in capsys.readouterr().out


def test_prepare_synthetic(synth_root):
    report = prepare_dataset("synthetic", synth_root)
    assert report.ok, report.format()
    assert report.summary()["total"].recordings == 7


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(np.zeros(int(seconds * SR), "<i2").tobytes())


def _arff(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("@relation GoldStandard\n@attribute Instance_name string\n@attribute frameTime numeric\n"
                    "@attribute GoldStandard numeric\n@data\n" + "".join(f"'x',{i * 0.04:.2f},0.1\n" for i in range(n)))


def test_prepare_recola_lists_problems(tmp_path):
    for name in ("train_1", "dev_1", "test_1"):
        _wav(tmp_path / "recordings_audio" / f"{name}.wav", 0.4)
    for dim in ("valence", "arousal"):
        _arff(tmp_path / "ratings_gold_standard" / dim / "train_1.arff", 11)
    _arff(tmp_path / "ratings_gold_standard" / "valence" / "dev_1.arff", 11)  # arousal missing
    _arff(tmp_path / "ratings_gold_standard" / "arousal" / "train_2.arff", 11)  # no media, no valence
    report = prepare_dataset("recola", tmp_path)
    assert [r.name for r in report.recordings] == ["train_1", "test_1"]
    assert len(report.errors) == 2
    assert "without its arousal" in report.errors[0].message + report.errors[1].message
    assert report.summary()["train"].frames == 11


def test_prepare_manifest_lists_problems(tmp_path, media):
    _video(tmp_path, media, "c1")
    (tmp_path / "c1.csv").write_text("valence,arousal\n" + "0.1,0.2\n" * 9)  # 9 rows vs 10 frames
    (tmp_path / "c2.csv").write_text("time,valence,arousal\n0,0.1,0.2\n0.1,0.1,9\n")
    (tmp_path / "manifest.csv").write_text("recording,video,audio,labels,split,subject\n"
                                           "c1,videos/c1.mp4,,c1.csv,train,\n"
                                           "c2,videos/c1.mp4,,c2.csv,train,\n"
                                           "c3,videos/c1.mp4,,,test,\n"
                                           "c4,videos/none.mp4,,,test,\n")
    report = prepare_dataset("manifest", tmp_path / "manifest.csv")
    text = "\n".join(p.message for p in report.errors)
    assert len(report.errors) == 3, text
    assert "9 label frames but the video" in text and "line 3: arousal = 9 outside" in text
    assert "none.mp4" in text
    assert [r.name for r in report.recordings] == ["c3"]
