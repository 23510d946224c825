"""Hostile or careless media given to ``avaffect predict``: a message naming the file, or rows = decoded frames."""

from __future__ import annotations

import csv
import json
from fractions import Fraction

import av
import numpy as np
import pytest
from faultkit import decoded_frames
from mediafiles import SR, write_primed_mp4, write_test_video, write_tone

needs_x264 = pytest.mark.skipif("libx264" not in av.codecs_available, reason="this FFmpeg build has no libx264")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _assert_rows_are_frames(out, name, video):
    rows = _rows(out / f"{name}.csv")
    assert len(rows) == decoded_frames(video)
    values = np.array([[float(r["valence"]), float(r["arousal"])] for r in rows])
    assert np.isfinite(values).all()
    assert json.loads((out / f"{name}.json").read_text())["frames"] == len(rows)
    return rows


def test_a_truncated_video_is_named_in_the_failure(cli, checkpoint, tmp_path):
    video = write_test_video(tmp_path / "cut.mp4", 20)
    video.write_bytes(video.read_bytes()[: video.stat().st_size * 4 // 10])
    r = cli("predict", checkpoint, video, "--out", tmp_path / "out")
    assert r.rc == 1 and "FAILED" in r.out and "cut.mp4" in r.out and "cannot decode" in r.out


def test_a_zero_byte_video_is_named_in_the_failure(cli, checkpoint, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    r = cli("predict", checkpoint, tmp_path / "empty.mp4", "--out", tmp_path / "out")
    assert r.rc == 1 and "empty.mp4" in r.out


def test_a_text_file_renamed_mp4_is_refused(cli, checkpoint, tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video\n" * 50)
    r = cli("predict", checkpoint, tmp_path / "notes.mp4", "--out", tmp_path / "out")
    assert r.rc == 1 and "notes.mp4" in r.out and not (tmp_path / "out" / "notes.csv").exists()


def test_a_folder_named_like_a_video_is_a_message(cli, checkpoint, tmp_path):
    (tmp_path / "clip.mp4").mkdir()
    r = cli("predict", checkpoint, tmp_path / "clip.mp4", "--out", tmp_path / "out")
    assert r.rc == 2 and "clip.mp4" in r.err and "avaffect: error:" in r.err


def test_a_video_without_audio_is_predicted_and_says_so(cli, checkpoint, tmp_path):
    video = write_test_video(tmp_path / "mute.mp4", 20, audio=False)
    r = cli("predict", checkpoint, video, "--out", tmp_path / "out")
    assert r.rc == 0
    _assert_rows_are_frames(tmp_path / "out", "mute", video)
    assert json.loads((tmp_path / "out" / "mute.json").read_text())["audio"] == "missing"


def test_an_mp3_given_to_predict_is_refused_with_what_to_do(cli, checkpoint, tmp_path):
    path = tmp_path / "voice.mp3"
    with av.open(str(path), "w") as c:
        write_tone(c, c.add_stream("mp3", rate=SR, layout="mono"), 1.0, level=0.3, chunk=1152)
    r = cli("predict", checkpoint, path, "--out", tmp_path / "out")
    assert r.rc == 1 and "voice.mp3" in r.out and "audio-only" in r.out and "manifest" in r.out


def test_a_video_shorter_than_the_window_gives_one_row_per_frame(cli, checkpoint, tmp_path):
    video = write_test_video(tmp_path / "short.mp4", 7)  # the checkpoint's window is 30
    assert cli("predict", checkpoint, video, "--out", tmp_path / "out").rc == 0
    _assert_rows_are_frames(tmp_path / "out", "short", video)


def test_a_single_frame_video_gives_one_row(cli, checkpoint, tmp_path):
    video = write_test_video(tmp_path / "one.mp4", 1)
    assert cli("predict", checkpoint, video, "--out", tmp_path / "out").rc == 0
    assert len(_assert_rows_are_frames(tmp_path / "out", "one", video)) == 1


@needs_x264
def test_a_primed_mp4_with_an_edit_list_has_one_row_per_shown_frame(cli, checkpoint, tmp_path):
    video = write_primed_mp4(tmp_path / "primed.mp4", 20, primed=3)
    assert cli("predict", checkpoint, video, "--out", tmp_path / "out").rc == 0
    rows = _assert_rows_are_frames(tmp_path / "out", "primed", video)
    assert len(rows) == 20 and float(rows[0]["time"]) == 0.0


@needs_x264
def test_a_variable_frame_rate_video_keeps_its_timestamps(cli, checkpoint, tmp_path):
    pts_ms = [0, 40, 100, 120, 200, 210, 330, 400, 440, 520]
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.codec_context.time_base = vs.time_base = Fraction(1, 1000)
        for i, t in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
    assert cli("predict", checkpoint, path, "--out", tmp_path / "out").rc == 0
    rows = _assert_rows_are_frames(tmp_path / "out", "vfr", path)
    np.testing.assert_allclose([float(r["time"]) for r in rows], np.array(pts_ms) / 1000, atol=1e-3)


def test_two_inputs_with_the_same_stem_are_refused_before_any_output(cli, checkpoint, tmp_path):
    write_test_video(tmp_path / "a" / "clip.mp4", 10)
    write_test_video(tmp_path / "b" / "clip.mp4", 12)
    r = cli("predict", checkpoint, tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4", "--out", tmp_path / "out")
    assert r.rc == 2 and "clip" in r.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_folder_of_audio_files_says_what_they_are(cli, checkpoint, tmp_path):
    import wave

    (tmp_path / "media").mkdir()
    with wave.open(str(tmp_path / "media" / "voice.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(16000, "<i2").tobytes())
    r = cli("predict", checkpoint, tmp_path / "media", "--out", tmp_path / "out")
    assert r.rc == 2 and "voice.wav" in r.err and "audio-only" in r.err
