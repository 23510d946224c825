"""Hostile or careless media given to ``avaffect predict`` / ``extract``: a message naming the file, or one row per
decoded frame with finite values."""

from __future__ import annotations

import json
import shutil

import av
import pytest
from faultchecks import check_predict_out, check_store, only_if_ok, predict_step, read_csv_rows
from faultkit import EITHER, OK, Cases, Step
from mediafiles import (
    decoded_frames,
    overwrite_middle,
    rotate_mp4,
    truncate,
    write_hollow_mp4,
    write_jpgs,
    write_mp3,
    write_primed_mp4,
    write_random_bytes,
    write_test_video,
    write_wav,
)

CASES = Cases("media")
NO_X264 = "" if "libx264" in av.codecs_available else "skipped: this FFmpeg build has no libx264"


@CASES("M01-truncated-mp4", "truncated mp4 (first 40% of its bytes)")
def m01(d, s):
    v = truncate(write_test_video(d / "clip.mp4", 30), 0.4)
    return predict_step(d, s, ["clip.mp4"], EITHER, ("clip.mp4",), items=[("clip", v)])


@CASES("M02-moov-cut", "truncated mp4 (last 10% cut: the moov index is gone)", extended=True)
def m02(d, s):
    v = truncate(write_test_video(d / "clip.mp4", 30), 0.9)
    return predict_step(d, s, ["clip.mp4"], EITHER, ("clip.mp4",), items=[("clip", v)])


@CASES("M03-random-bytes", "random bytes named .mp4", extended=True)
def m03(d, s):
    write_random_bytes(d / "noise.mp4")
    return predict_step(d, s, ["noise.mp4"], names=("noise.mp4",))


@CASES("M04-zero-bytes", "zero-byte .mp4")
def m04(d, s):
    (d / "empty.mp4").write_bytes(b"")
    return predict_step(d, s, ["empty.mp4"], names=("empty.mp4",))


@CASES("M28-no-frame", "an empty mp4 container (a header, no frame)", extended=True)
def m28(d, s):
    v = write_hollow_mp4(d / "hollow.mp4")
    return predict_step(d, s, ["hollow.mp4"], EITHER, ("hollow.mp4",), items=[("hollow", v)])


@CASES("M05-folder-named-mp4", "a directory named clip.mp4 given as the input", extended=True)
def m05(d, s):
    (d / "clip.mp4").mkdir()
    return predict_step(d, s, ["clip.mp4"], names=("clip.mp4",))


@CASES("M06-subfolder-named-mp4", "a folder holding a good video and a sub-folder named x.mp4", extended=True)
def m06(d, s):
    v = write_test_video(d / "media" / "good.mp4", 30)
    write_test_video(d / "media" / "x.mp4" / "inner.mkv", 12)
    return predict_step(d, s, ["media"], OK, items=[("good", v)])


@CASES("M07-text-renamed", "a text file renamed .mp4", extended=True)
def m07(d, s):
    (d / "notes.mp4").write_text("these are my meeting notes, not a video\n" * 20)
    return predict_step(d, s, ["notes.mp4"], names=("notes.mp4",))


@CASES("M08-no-audio", "a video without an audio track")
def m08(d, s):
    v = write_test_video(d / "mute.mp4", 30, audio=False)

    def verify(ran):
        found = check_predict_out(d / "out", [("mute", v)])
        summary = d / "out" / "mute.json"
        if summary.is_file() and json.loads(summary.read_text()).get("audio") != "missing":
            found.wrong.append("the summary does not say the audio is missing")
        return found
    return predict_step(d, s, ["mute.mp4"], OK, verify=only_if_ok(verify))


@CASES("M09-wav", "an audio-only .wav given to predict", extended=True)
def m09(d, s):
    write_wav(d / "voice.wav", 1.5)
    return predict_step(d, s, ["voice.wav"], names=("voice.wav",))


@CASES("M10-mp3", "an audio-only .mp3 given to predict")
def m10(d, s):
    write_mp3(d / "voice.mp3", 1.5)
    return predict_step(d, s, ["voice.mp3"], names=("voice.mp3",))


@CASES("M11-only-audio-files", "predict on a folder holding only audio files (.wav, .mp3)", extended=True)
def m11(d, s):
    write_wav(d / "media" / "a.wav", 1.0)
    write_mp3(d / "media" / "b.mp3", 1.0)
    return predict_step(d, s, ["media"], names=("media", "a.wav", "b.mp3"))


@CASES("M12-extract-wav-beside-video", "extract on a folder with an audio-only .wav beside a video", extended=True)
def m12(d, s):
    n = decoded_frames(write_test_video(d / "media" / "clip.mp4", 30))
    write_wav(d / "media" / "voice.wav", 1.0)
    return Step(["extract", "media", "--out", "store", "-q"], names=("voice.wav",), allowed=(d / "store",),
                verify=lambda ran: check_store(d / "store", {"clip": n}))


@CASES("M13-predict-wav-beside-video", "predict on a folder with a .wav beside a video", extended=True)
def m13(d, s):
    v = write_test_video(d / "media" / "clip.mp4", 30)
    write_wav(d / "media" / "voice.wav", 1.0)
    return predict_step(d, s, ["media"], OK, items=[("clip", v)])


@CASES("M14-one-frame", "a video with a single frame", extended=True)
def m14(d, s):
    v = write_test_video(d / "one.mp4", 1)
    return predict_step(d, s, ["one.mp4"], EITHER, ("one.mp4",), items=[("one", v)])


@CASES("M15-odd-size", "odd frame size 63x47 (H.264 4:4:4)", extended=True)
def m15(d, s):
    if NO_X264:
        return Step([], skip=NO_X264)
    v = write_test_video(d / "odd.mp4", 30, width=63, height=47, codec="libx264", pix_fmt="yuv444p")
    return predict_step(d, s, ["odd.mp4"], OK, items=[("odd", v)])


@CASES("M16-variable-frame-rate", "variable frame rate (irregular timestamps)")
def m16(d, s):
    if NO_X264:
        return Step([], skip=NO_X264)
    pts = [0, 40, 100, 120, 200, 210, 330, 400, 440, 520, 600, 610, 700, 760, 800, 880, 960, 1000, 1100, 1120]
    v = write_test_video(d / "vfr.mp4", len(pts), codec="libx264", pts_ms=pts)
    return predict_step(d, s, ["vfr.mp4"], OK,
                        verify=only_if_ok(lambda ran: check_predict_out(d / "out", [("vfr", v)], True)))


@CASES("M17-shorter-than-window", "very short video (10 frames, window 60)")
def m17(d, s):
    v = write_test_video(d / "short.mp4", 10)
    return predict_step(d, s, ["short.mp4"], OK, items=[("short", v)])


@CASES("M18-edit-list", "primed H.264 mp4 with an edit list (rows must equal decoded frames)")
def m18(d, s):
    if NO_X264:
        return Step([], skip=NO_X264)
    v = write_primed_mp4(d / "primed.mp4", 20, 3)

    def verify(ran):
        found = check_predict_out(d / "out", [("primed", v)], spacing_from_video=True)
        header, rows = read_csv_rows(d / "out" / "primed.csv") if (d / "out" / "primed.csv").is_file() else ([], [])
        if rows and abs(float(rows[0][header.index("time")])) > 1e-6:
            found.wrong.append(f"the first frame is at {rows[0][header.index('time')]} s, not 0")
        return found
    return predict_step(d, s, ["primed.mp4"], OK, verify=only_if_ok(verify))


@CASES("M19-rotated", "a rotated (portrait) phone video", extended=True)
def m19(d, s):
    v = rotate_mp4(write_test_video(d / "src" / "flat.mp4", 30), d / "portrait.mp4")
    shutil.rmtree(d / "src")
    return predict_step(d, s, ["portrait.mp4"], OK, items=[("portrait", v)])


@CASES("M20-missing-path", "a path that does not exist", extended=True)
def m20(d, s):
    return predict_step(d, s, ["nowhere/clip.mp4"], names=("nowhere",))


@CASES("M21-spaces-accents", "a file name with spaces, accents and an upper-case .MP4 extension", extended=True)
def m21(d, s):
    v = write_test_video(d / "media" / "Réunion du lundi.MP4", 20)
    return predict_step(d, s, ["media"], OK, items=[("Réunion du lundi", v)])


@CASES("M22-crops-missing", "--crops pointing to a folder that does not exist", extended=True)
def m22(d, s):
    write_test_video(d / "clip.mp4", 20)
    return predict_step(d, s, ["clip.mp4"], names=("nocrops",), extra=["--crops", "nocrops"])


@CASES("M23-crops-past-the-end", "--crops with crops numbered past the video's frames", extended=True)
def m23(d, s):
    write_test_video(d / "clip.mp4", 20)
    write_jpgs(d / "crops", range(0, 60, 3))
    return predict_step(d, s, ["clip.mp4"], names=("crops", "00058.jpg"), extra=["--crops", "crops"])


@CASES("M24-damaged-middle", "bytes overwritten in the middle of the video data", extended=True)
def m24(d, s):
    v = overwrite_middle(write_test_video(d / "damaged.mp4", 40))
    return predict_step(d, s, ["damaged.mp4"], EITHER, ("damaged.mp4",), items=[("damaged", v)])


@CASES("M25-long-audio", "audio track 5x longer than the video", extended=True)
def m25(d, s):
    v = write_test_video(d / "long_audio.mp4", 25, audio_seconds=5.0)
    return predict_step(d, s, ["long_audio.mp4"], OK, items=[("long_audio", v)])


@CASES("M26-silent-audio", "a silent audio track (all zeros)", extended=True)
def m26(d, s):
    v = write_test_video(d / "silent.mp4", 30, level=0.0)
    return predict_step(d, s, ["silent.mp4"], OK, items=[("silent", v)])


@CASES("M27-two-frames-no-audio", "two frames, no audio", extended=True)
def m27(d, s):
    v = write_test_video(d / "two.mp4", 2, audio=False)
    return predict_step(d, s, ["two.mp4"], EITHER, ("two.mp4",), items=[("two", v)])


@pytest.mark.parametrize("case", CASES.params())
def test_media_case(case, fault_case):
    """Each media case, declared above (``CASES.params()`` after the declarations)."""
    fault_case(case)
