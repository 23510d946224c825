"""``avaffect live``: the pieces against their offline counterparts (windows, log-mel, crop chunks), then the command
on a pipe written at real-time pace (values equal to ``predict``'s, the lag bounded, a clean stop at the end of the
stream, on SIGINT and when the source stalls), frame dropping, the face-model path, bad sources, and the page in
headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from test_face_onnx import _tiny_model
from test_page import browser  # noqa: F401 - the fixture

from avaffect.cli.main import main
from avaffect.evaluation.streaming import LiveWindows, predict_chunks
from avaffect.features.extractors import get_extractor
from avaffect.features.face_stream import FeatureChunk, chunk_crops
from avaffect.features.faces.crops import FaceStep
from avaffect.livemedia import LiveFrame, LiveSource, describe_source, stream_file
from avaffect.workflows.live import LiveRun
from avaffect.workflows.predict import load_predictor

CLI = [sys.executable, "-m", "avaffect.cli.main"]


# ----------------------------------------------------------------------------------------------- the pieces


def _toy_runner(a, v, m, f):
    """A window model whose every output depends on the whole window (a cumulative sum), the masks included."""
    x = a.sum(-1, keepdims=True) + v.mean(-1, keepdims=True) * f[..., None]
    c = np.cumsum(x * m[..., None], axis=1)
    return np.concatenate([np.tanh(c * 0.01), np.tanh(x + c.mean(1, keepdims=True) * 0.001)], -1).astype(np.float32)


@pytest.mark.parametrize("length,hop", [(30, 10), (30, 30), (30, 7), (1, 1)])
def test_live_windows_final_values_equal_the_whole_recordings_and_provisional_ones_the_prefix(length, hop):
    rng = np.random.default_rng(length * 100 + hop)
    for n in (1, 5, length - 1, length, length + 1, 79, 237):
        if n < 1:
            continue
        a = rng.normal(size=(n, 3)).astype(np.float32)
        v = rng.normal(size=(n, 4)).astype(np.float32)
        face, boxes = rng.random(n) > 0.3, rng.normal(size=(n, 4)).astype(np.float32)
        chunks = [FeatureChunk(i, min(n, i + 6), v[i:i + 6], face[i:i + 6], boxes[i:i + 6]) for i in range(0, n, 6)]
        whole, _, _ = predict_chunks(_toy_runner, a, chunks, n, length, hop)
        live = LiveWindows(_toy_runner, length, hop)
        got, seen, ai = np.full((n, 2), np.nan), np.zeros(n, int), 0
        for c in chunks:
            live.add_video(c)
            k = int(rng.integers(0, 9))  # the audio arrives in its own pieces, behind or ahead of the video
            if ai < n and k:
                live.add_audio(ai, min(n, ai + k), a[ai:ai + k])
                ai = min(n, ai + k)
            out = live.advance()
            if out is not None:
                got[out[0]:out[0] + len(out[1])] = out[1]
                seen[out[0]:out[0] + len(out[1])] += 1
            p = live.provisional()
            if p is not None:  # what the finished stream would give if it ended now
                m = live.steps_in
                prefix, _, _ = predict_chunks(_toy_runner, a[:m], [FeatureChunk(0, m, v[:m], face[:m], boxes[:m])],
                                              m, length, hop)
                np.testing.assert_allclose(p[1], prefix[p[0]:m], atol=1e-6)
                assert p[0] == live.final and len(p[1]) == m - live.final
        if ai < n:
            live.add_audio(ai, n, a[ai:])
        out = live.finish()
        if out is not None:
            got[out[0]:out[0] + len(out[1])] = out[1]
            seen[out[0]:out[0] + len(out[1])] += 1
        assert (seen == 1).all(), "every step is handed out final exactly once"
        np.testing.assert_allclose(got, whole, atol=1e-6)


def test_a_step_is_final_once_the_stream_has_window_plus_one_more_steps():
    live = LiveWindows(_toy_runner, 10, 5)
    n = 25
    live.add_audio(0, n, np.ones((n, 3), np.float32))
    live.add_video(FeatureChunk(0, n, np.ones((n, 4), np.float32), np.ones(n, bool), np.zeros((n, 4), np.float32)))
    lo, values, _, _ = live.advance()
    assert (lo, len(values)) == (0, n - 10)  # steps 0..14: the end-aligned window (start 15) cannot cover them


def test_logmel_steps_fed_in_small_pieces_equal_the_whole_waveform():
    ex = get_extractor("logmel_stats")
    rng = np.random.default_rng(1)
    sr = 16000
    wav = (rng.normal(size=int(3.3 * sr)) * 0.1 + np.sin(np.arange(int(3.3 * sr)) * 2 * np.pi * 220 / sr)).astype(
        np.float32)
    timeline = np.arange(0, 3.5, 1 / 30) + 0.013  # the last steps lie past the audio's end
    whole = ex.features_from_waveform(wav, timeline)
    steps = ex.step_stream()
    got, pos, added = [], 0, 0
    while pos < len(wav):
        k = int(rng.integers(1, 4000))
        steps.add_audio(wav[pos:pos + k])
        pos += k
        if added < len(timeline):  # the steps arrive with the audio, a few at a time
            j = min(len(timeline), added + int(rng.integers(0, 5)))
            steps.add_steps(timeline[added:j])
            added = j
        out = steps.take()
        if out is not None:
            assert out[0] == sum(len(g) for g in got)
            got.append(out[2])
    steps.add_steps(timeline[added:])
    steps.end()
    out = steps.take()
    if out is not None:
        got.append(out[2])
    live = np.concatenate(got)
    assert live.shape == whole.shape
    np.testing.assert_allclose(live, whole, rtol=1e-5, atol=1e-5)


def test_logmel_steps_keep_only_the_frames_a_step_still_needs():
    ex = get_extractor("logmel_stats")
    steps, held = ex.step_stream(), []
    rng = np.random.default_rng(2)
    for k in range(200):  # 20 s in 0.1-s pieces, the steps (30 a second) arriving with their audio
        steps.add_audio((rng.normal(size=1600) * 0.1).astype(np.float32))
        steps.add_steps(np.arange(k * 3, k * 3 + 3) / 30)
        steps.take()
        held.append(len(steps.feats))
    assert max(held) < 120 and steps.done > 590  # 0.5-s windows of 10-ms frames, plus one piece


def test_open_ended_crop_chunks_cover_dropped_steps_and_the_length_known_at_the_end():
    crop = np.full((8, 8, 3), 7, np.uint8)
    kept = [0, 1, 2, 5, 6, 9]  # 3, 4, 7, 8 dropped; 10, 11 dropped at the end
    steps = (FaceStep(i / 30, np.array([i]), crop, np.array([0, 0, 8, 8], np.float32), True, 0.0) for i in kept)
    chunks = list(chunk_crops(steps, 8, chunk=4, at_end=lambda: 12))
    assert [(c.lo, c.hi) for c in chunks] == [(0, 4), (4, 8), (8, 12)]
    mask = np.concatenate([c.mask[c.own] for c in chunks])
    assert mask.tolist() == [i in kept for i in range(12)]


def test_sources_are_told_apart():
    assert describe_source("-")[2] == "stdin"
    assert describe_source("v4l2:/dev/video0") == ("/dev/video0", "v4l2", "device")
    assert describe_source("rtsp://127.0.0.1:8554/cam")[2] == "network"
    assert describe_source("clip.mp4")[2] == "file"
    assert describe_source("C:/videos/clip.mp4")[2] == "file"


# ----------------------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def live_inputs(tiny_run, synth_root, tmp_path_factory):
    """The tiny checkpoint, a synthetic 6-s video (a face and a voice) remuxed to Matroska (what a pipe carries),
    and ``predict``'s values on that very file."""
    out = tmp_path_factory.mktemp("live")
    video = sorted((synth_root / "videos").glob("*.mp4"))[0]
    mkv = out / "clip.mkv"
    stream_file(video, mkv, realtime=False)
    ckpt = tiny_run / "model.safetensors"
    run = load_predictor(ckpt)(mkv)
    return ckpt, mkv, run


def _stream(cmd: list[str], mkv: Path, **kw) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``cmd`` (reading ``-``) fed ``mkv`` through a pipe at real-time pace."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, bufsize=0)

        def write() -> None:
            try:
                stream_file(mkv, proc.stdin, **kw)
                proc.stdin.close()
            except (BrokenPipeError, ValueError, av.FFmpegError):  # the command ended first (a stall test)
                pass

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        proc.wait(timeout=120)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read().decode()
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), lines


@pytest.mark.slow
def test_a_pipe_at_real_time_pace_gives_predicts_values_with_a_bounded_lag(live_inputs, tmp_path):
    ckpt, mkv, offline = live_inputs
    csv = tmp_path / "live.csv"
    proc, lines = _stream([*CLI, "live", str(ckpt), "-", "--csv", str(csv), "--max-latency", "0.5"], mkv)
    assert proc.returncode == 0, proc.stderr
    summary = lines[-1]["summary"]
    steps = lines[:-1]
    final = [s for s in steps if not s["provisional"]]
    n = len(offline.columns["time"])
    assert [s["frame"] for s in final] == list(range(n)), "one final line per step, in order"
    got = np.array([[s["valence"], s["arousal"]] for s in final], dtype=np.float64)
    want = np.stack([offline.columns["valence"], offline.columns["arousal"]], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose([s["time"] for s in final], offline.columns["time"], atol=1e-6)
    assert [s["face_detected"] for s in final] == offline.columns["face_detected"].tolist()
    assert summary["frames_dropped"] == 0 and summary["source_stats"]["ended"] == "the stream ended"
    # provisional values came first, at about the asked latency, and every one of them was finalised later
    prov = [s for s in steps if s["provisional"]]
    assert prov and {s["frame"] for s in prov} <= {s["frame"] for s in final}
    assert np.median([s["latency_s"] for s in prov]) < 1.5
    # the lag is bounded: a final value comes about one window after its frame, not later as the stream goes on
    window_s = 60 / 30.0  # the tiny run's window (60 steps) at 30 fps
    lat = np.array([s["latency_s"] for s in final])
    assert lat.max() < window_s + 2.0, lat.max()
    third = len(lat) // 3
    assert np.median(lat[third:2 * third]) < window_s + 1.0
    # the CSV as it went: the final values, predict's columns
    rows = csv.read_text().splitlines()
    assert rows[0] == "frame,time,valence,arousal,face_detected,dropped,trained_on" and len(rows) == n + 1


@pytest.mark.slow
def test_sigint_ends_cleanly_with_every_value_so_far_written(live_inputs, tmp_path):
    ckpt, mkv, offline = live_inputs
    csv = tmp_path / "live.csv"
    proc = subprocess.Popen([*CLI, "live", str(ckpt), str(mkv), "--realtime", "--csv", str(csv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    summary, steps = lines[-1]["summary"], lines[:-1]
    assert summary["source_stats"]["ended"] == "stopped" and "Traceback" not in stderr.decode()
    n = len(offline.columns["time"])
    assert 0 < len(steps) < n
    assert [s["frame"] for s in steps] == list(range(len(steps)))
    assert len(csv.read_text().splitlines()) == len(steps) + 1, "the CSV holds every value sent"
    # the steps before the stop that no later window could change equal predict's on the whole file
    k = max(0, len(steps) - 60 - 1)
    got = np.array([s["valence"] for s in steps[:k]])
    np.testing.assert_allclose(got, offline.columns["valence"][:k], atol=1e-5)


@pytest.mark.slow
def test_a_stalled_source_is_reported_and_ends(live_inputs):
    ckpt, mkv, _ = live_inputs
    done = threading.Event()
    t0 = time.monotonic()
    proc, lines = _stream([*CLI, "live", str(ckpt), "-", "--stall-timeout", "1"], mkv, stop_after=1.5, hold=done)
    done.set()
    assert proc.returncode == 0, proc.stderr
    assert "stalled" in lines[-1]["summary"]["source_stats"]["ended"] and "stalled" in proc.stderr
    assert len(lines) > 1 and time.monotonic() - t0 < 30


def test_frames_older_than_max_lag_are_dropped_and_counted(tiny_run):
    """A source whose odd frames arrive late: those are dropped (no face, ``dropped``), the others processed."""
    predictor = load_predictor(tiny_run / "model.safetensors")

    class Late(LiveSource):
        def __init__(self) -> None:
            super().__init__("late.mp4")
            self.i = 0
            self.has_audio, self.has_video = False, True

        def next_frame(self, timeout):
            if self.i == 90:
                return self.END
            rgb = np.full((96, 128, 3), 90, np.uint8)
            rgb[20:70, 40:90] = 200
            arrived = time.monotonic() - (10.0 if self.i % 2 else 0.0)
            item = LiveFrame(self.i / 30, av.VideoFrame.from_ndarray(rgb, format="rgb24"), arrived)
            self.i += 1
            return item

    got = []

    class Keep:
        def write(self, steps):
            got.extend(steps)

        def frame(self, rgb):
            pass

        def close(self, summary):
            pass

    summary = LiveRun(predictor, Late(), [Keep()], max_lag=1.0).run()
    assert [s.frame for s in got] == list(range(90))
    assert [s.dropped for s in got] == [bool(i % 2) for i in range(90)]
    assert summary.frames_dropped == 45 and summary.audio == "missing"
    assert not any(s.face_detected for s in got if s.dropped)
    assert all(np.isfinite(s.values).all() for s in got), "a dropped frame still has the model's value"


def test_the_face_model_path_runs_live_with_predicts_values(crema_d, tmp_path, capsys):
    clip = sorted(crema_d.glob("*.flv"))[0]
    model = _tiny_model(tmp_path / "va.onnx")
    offline = load_predictor(face_model=str(model))(clip)
    assert main(["live", "--face-model", str(model), str(clip)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    steps = lines[:-1]
    assert len(steps) == len(offline.columns["time"]) and not any(s["provisional"] for s in steps)
    got = np.array([np.nan if s["valence"] is None else s["valence"] for s in steps])
    np.testing.assert_allclose(got, offline.columns["valence"], atol=1e-5)


@pytest.mark.slow
def test_every_person_live_equals_predict_faces_all(crema_d, tiny_run, tmp_path, capsys):
    """Two people (a real and a rendered face), one leaving for a third of the video (longer than a window and a
    hop, so their live track is retired and made again when they return): per person, the live values on the steps
    where they are on screen equal ``predict --faces all``'s."""
    from people_videos import compose, leave_and_return

    from avaffect.data.synth import SynthConfig, write_synthetic_dataset
    from avaffect.workflows.predict import predict_people

    clean = write_synthetic_dataset(tmp_path / "synth", SynthConfig(n_train=1, n_val=0, n_test=0, duration_s=4.0,
                                                                    weak_rate=0.0, gap_rate=0.0, seed=0),
                                    progress=False)
    video = tmp_path / "two.mp4"
    compose(video, [sorted(crema_d.glob("*.flv"))[0], sorted((clean / "videos").glob("*.mp4"))[0]],
            leave_and_return(300), 300, fps=30)
    predictor = load_predictor(tiny_run / "model.safetensors")
    offline = predict_people(predictor, video)
    assert len(offline.runs) == 2
    capsys.readouterr()
    csv = tmp_path / "live.csv"
    assert main(["live", str(tiny_run / "model.safetensors"), str(video), "--faces", "all", "--csv", str(csv)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary, steps = lines[-1]["summary"], lines[:-1]
    assert summary["people_seen"] == 2 and summary["faces"] == "all"
    for k, run in enumerate(offline.runs):
        mine = sorted((s for s in steps if s["person"] == k + 1), key=lambda s: s["frame"])
        on = np.flatnonzero(offline.people.on_screen[k])
        assert [s["frame"] for s in mine] == on.tolist()
        got = np.array([[s["valence"], s["arousal"]] for s in mine])
        np.testing.assert_allclose(got, np.stack([run.columns["valence"], run.columns["arousal"]], 1)[on],
                                   atol=1e-5)
    table = pd.read_csv(csv)
    assert list(table.columns[:3]) == ["frame", "time", "person"]
    assert sorted(table["person"].unique()) == [1, 2] and len(table) == int(offline.people.on_screen.sum())


def test_bad_sources_are_clear_errors(tiny_run, tmp_path, capsys):
    ckpt = str(tiny_run / "model.safetensors")
    assert main(["live", ckpt, str(tmp_path / "missing.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(os.urandom(4096))
    assert main(["live", ckpt, str(junk)]) == 2
    assert "cannot open the live source" in capsys.readouterr().err
    assert main(["live", ckpt]) == 2  # no source
    assert main(["live", ckpt, str(junk), "--max-latency", "-1"]) == 2
    csv = tmp_path / "old.csv"
    csv.write_text("x")
    assert main(["live", ckpt, str(junk), "--csv", str(csv)]) == 2


@pytest.mark.slow
def test_the_live_page_grows_its_chart_while_the_stream_plays(browser, live_inputs):  # noqa: F811
    ckpt, mkv, _ = live_inputs
    proc = subprocess.Popen([*CLI, "live", str(ckpt), str(mkv), "--realtime", "--serve", "0", "--max-latency", "0.3",
                             "--linger", "5", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "http://127.0.0.1:" in line, line
        url = line.split("at ", 1)[1].strip()
        browser.get(url)
        from selenium.webdriver.support.ui import WebDriverWait

        def points():
            return int(browser.execute_script("return document.getElementById('chart').dataset.points"))

        WebDriverWait(browser, 20, poll_frequency=0.05).until(lambda d: points() > 0)
        first = points()
        WebDriverWait(browser, 20, poll_frequency=0.05).until(lambda d: points() > first + 30)
        WebDriverWait(browser, 20, poll_frequency=0.1).until(
            lambda d: d.execute_script("return document.getElementById('frame').naturalWidth") > 0)
        WebDriverWait(browser, 30, poll_frequency=0.1).until(
            lambda d: "ended" in d.find_element("id", "status").text)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
