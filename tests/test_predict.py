"""predict: a tiny model trained on the synthetic set, applied to synthetic and real (CREMA-D) videos."""

from __future__ import annotations

import json

import av
import numpy as np
import pandas as pd
import pytest

import avaffect
from avaffect.cli.main import main
from avaffect.data.affwild2 import load_affwild2
from avaffect.errors import AvaffectError
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.files import output_path
from avaffect.media import probe, video_frame_times
from avaffect.metrics import score_arrays
from avaffect.models.checkpoint import load_checkpoint
from avaffect.workflows.evaluate import evaluate_run
from avaffect.workflows.predict import PredictorOptions, VideoPredictor, write_outputs
from avaffect.workflows.predict import checkpoint as predict_module


@pytest.mark.slow
def test_prediction_on_a_synthetic_video_reproduces_evaluate(tiny_run, synth_root):
    result = evaluate_run(tiny_run, "validation")
    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    df = avaffect.predict(tiny_run / "model.safetensors", rec.video_path, crops_dir=rec.crops_dir)
    assert list(df.columns) == ["frame", "time", "valence", "arousal", "face_detected", "trained_on"]
    assert len(df) == rec.num_steps and set(df["trained_on"]) == {"synthetic"}  # marked as the demo set's model
    np.testing.assert_allclose(df[["valence", "arousal"]].to_numpy(), result.predictions[rec.name], atol=1e-5)
    np.testing.assert_array_equal(df["face_detected"].to_numpy(), rec.face_mask)
    mine = score_arrays(df[["valence", "arousal"]].to_numpy(), rec.labels)
    assert mine["ccc_valence"] == pytest.approx(result.per_recording[rec.name]["ccc_valence"], abs=1e-5)
    summary = df.attrs["summary"]
    assert summary["face_source"] == "crops" and summary["audio"] == "present"
    assert summary["trained_on"] == "synthetic" and "SYNTHETIC DEMO MODEL" in summary["meaning"]
    assert summary["realtime_factor"] > 0


def test_prediction_never_guesses_a_crops_folder_from_the_video_path(tiny_run, synth_root):
    """The video sits in an Aff-Wild2 layout beside its cropped_aligned folder: without crops_dir the
    checkpoint's detector runs on the video (the spec records that training used the dataset's crops)."""
    from avaffect.models.checkpoint import read_checkpoint_meta

    spec = read_checkpoint_meta(tiny_run / "model.safetensors")["preprocessing"]
    assert spec.faces.source == "crops" and spec.faces.detector == "haar"
    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    df = avaffect.predict(tiny_run / "model.safetensors", rec.video_path)
    assert df.attrs["summary"]["face_source"] == "haar" and len(df) == rec.num_steps


@pytest.mark.slow
def test_video_without_audio_follows_the_documented_rule(tiny_run, synth_root, tmp_path, monkeypatch):
    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    videos = tmp_path / "ds" / "videos"
    videos.mkdir(parents=True)
    silent = videos / rec.video_path.name
    with av.open(str(rec.video_path)) as inp, av.open(str(silent), "w") as out:
        vout = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
    seen = {}
    real_predict = predict_module.predict_chunks  # the streaming path (the default)

    def spy(run, audio, *args, **kwargs):  # the audio comes in blocks of steps, read as the windows need them
        seen["audio"] = np.concatenate([rows for _, _, rows in audio])
        return real_predict(run, seen["audio"], *args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_chunks", spy)
    df = avaffect.predict(tiny_run / "model.safetensors", silent)
    seen["mean"] = load_checkpoint(tiny_run / "model.safetensors")[0].audio_mean.numpy()
    assert df.attrs["summary"]["audio"] == "missing"
    assert len(df) == rec.num_steps and np.isfinite(df[["valence", "arousal"]].to_numpy()).all()
    # the rule: every step's audio features are the training mean (zero after normalisation), not zeros
    assert np.abs(seen["mean"]).max() > 0.1, "the fixture's training mean must differ from zero to test the rule"
    np.testing.assert_allclose(seen["audio"], np.broadcast_to(seen["mean"], seen["audio"].shape), rtol=1e-6)


@pytest.mark.slow
def test_predict_cli_writes_csv_json_png_and_overlay(tiny_run, synth_root, tmp_path):
    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    out = tmp_path / "pred"
    assert main(["predict", str(tiny_run / "model.safetensors"), str(rec.video_path), "--out", str(out),
                 "--overlay"]) == 0
    name = rec.video_path.stem
    csv = pd.read_csv(out / f"{name}.csv")
    assert len(csv) == rec.num_steps
    summary = json.loads((out / f"{name}.json").read_text())
    assert {"valence_mean", "arousal_std", "face_fraction", "timings_s", "realtime_factor"} <= set(summary)
    assert (out / f"{name}.png").stat().st_size > 1000
    overlay = out / f"{name}_overlay.mp4"
    info = probe(overlay)
    assert info.has_audio and len(video_frame_times(overlay)) == rec.num_steps


def test_a_predictor_kept_between_videos_gives_typed_runs(tiny_run, synth_root, crema_d, tmp_path):
    """load once, predict many: the same values as the one-shot function, a typed summary that is the JSON."""
    predictor = avaffect.load_predictor(tiny_run / "model.safetensors")
    assert isinstance(predictor, VideoPredictor)
    clip = sorted(crema_d.glob("*.flv"))[0]
    for video in (clip, clip):
        run = predictor(video)
        assert run.summary.frames == len(run.frame) and run.summary.targets == ["valence", "arousal"]
        assert run.summary.timings_s.total > 0 and run.summary.streamed
        # busy time per thread: the detector's and this thread's CPU seconds, within the process's
        stages = run.summary.timings_s.stages
        assert 0 < stages["detect_cpu"] <= stages["cpu"] + 0.05
        assert 0 < stages["main_cpu"] and stages["decode_cpu"] + stages["main_cpu"] <= stages["cpu"] + 0.05
    once = avaffect.predict(tiny_run / "model.safetensors", clip)
    np.testing.assert_allclose(once[["valence", "arousal"]].to_numpy(), run.frame[["valence", "arousal"]].to_numpy())
    assert set(once.attrs["summary"]) == set(run.summary.as_json())
    with pytest.raises(AvaffectError, match="not both"):
        avaffect.load_predictor(tiny_run / "model.safetensors", face_model="x.onnx")


def test_both_predictors_implement_one_base_and_the_prediction_path_takes_few_parameters():
    """Acceptance of #25: one base (nothing left abstract, ``__call__`` not redefined), no function of the
    prediction path with more than 6 parameters."""
    import ast
    import inspect
    from pathlib import Path

    import avaffect.workflows.predict as api

    for cls in (api.Predictor, api.FaceModelPredictor):
        assert issubclass(cls, VideoPredictor) and not inspect.isabstract(cls)
        assert cls.__call__ is VideoPredictor.__call__
    files = [*Path(api.__file__).parent.glob("*.py"), Path(inspect.getfile(main)).parent / "predict_cmds.py"]
    wide = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) - int(bool(a.args) and a.args[0].arg == "self")
                if n > 6:
                    wide.append(f"{f.name}:{node.name} ({n})")
    assert len(files) > 5 and not wide, wide


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.safetensors"), str(tmp_path)]) == 2
    assert "nope.safetensors" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_on_real_crema_d_clips(tiny_run, crema_d, tmp_path):
    clips = sorted(crema_d.glob("*.flv"))[:3]
    out = tmp_path / "crema"
    assert main(["predict", str(tiny_run / "model.safetensors"), *map(str, clips), "--out", str(out),
                 "--overlay"]) == 0
    for clip in clips:
        csv = pd.read_csv(out / f"{clip.stem}.csv")
        assert len(csv) == len(video_frame_times(clip))  # one row per video frame
        assert csv[["valence", "arousal"]].abs().max().max() <= 1.0
        assert csv["face_detected"].mean() >= 0.9
        summary = json.loads((out / f"{clip.stem}.json").read_text())
        assert summary["face_source"] == "haar" and summary["audio"] == "present"
        overlay = out / f"{clip.stem}_overlay.mp4"
        info = probe(overlay)
        assert info.has_audio and len(video_frame_times(overlay)) == len(csv)
        with av.open(str(overlay)) as c:  # it decodes
            assert sum(1 for _ in c.decode(video=0)) == len(csv)


def test_checkpoint_needing_missing_backbone_weights_says_what_to_download(tmp_path, monkeypatch, capsys):
    """A checkpoint trained on VGGish features, on a machine without the VGGish weights."""
    from avaffect.models.checkpoint import save_checkpoint
    from avaffect.models.wrapper import AVRegressor

    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    model = AVRegressor("concat", 128, 640, {"hidden": 8, "head_hidden": 8})
    spec = {"audio_extractor": {"name": "vggish", "params": {}}, "video_extractor": {"name": "face_hog", "params": {}},
            "faces": {"source": "detector"}, "window": 60, "hop": 30, "fps": 30, "targets": ["valence", "arousal"]}
    ckpt = save_checkpoint(tmp_path / "model.safetensors", model, PreprocessingSpec.from_metadata(spec))
    assert main(["predict", str(ckpt), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "vggish" in err and "vggish-10086976.pth" in err and str(tmp_path / "home") in err


def _count_decodes(monkeypatch, modules) -> list:
    """The videos decoded through ``iter_video_frames`` in ``modules`` (one entry per decode), from now on."""
    calls = []

    def counting(real):
        def wrapper(*args, **kwargs):
            calls.append(args[0])
            return real(*args, **kwargs)
        return wrapper

    for module in modules:
        monkeypatch.setattr(module, "iter_video_frames", counting(module.iter_video_frames))
    return calls


@pytest.mark.parametrize("stream", [True, False])
def test_predict_decodes_and_detects_once_per_video(tiny_run, synth_root, monkeypatch, stream):
    """The overlay's boxes and the visual extractor share one decode and detection pass."""
    from avaffect.features import face_stream as stream_module
    from avaffect.features.faces import crops as crops_module

    calls = _count_decodes(monkeypatch, (crops_module, stream_module))
    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    result = predict_module.Predictor(tiny_run / "model.safetensors", PredictorOptions(stream=stream))(rec.video_path)
    assert len(calls) == 1 and result.boxes is not None and len(result.boxes) == rec.num_steps
    assert result.summary.streamed is stream


def _same_predictions(a, b) -> None:
    np.testing.assert_allclose(a.frame[["valence", "arousal"]].to_numpy(), b.frame[["valence", "arousal"]].to_numpy(),
                               atol=1e-5, rtol=0)
    np.testing.assert_array_equal(a.frame["face_detected"].to_numpy(), b.frame["face_detected"].to_numpy())
    np.testing.assert_array_equal(a.boxes, b.boxes)  # NaN where no face, in both


def test_streaming_predictions_equal_the_whole_video_path(tiny_run, synth_root, crema_d, monkeypatch):
    """Same frames with a face, same values (detection on every frame), on a synthetic video and CREMA-D clips;
    and the streaming path never holds more than one chunk of crops, nor the whole video's crops."""
    from avaffect.features import face_stream as stream_module

    held = []
    real_chunks = stream_module.iter_face_feature_chunks

    def small_chunks(rec, extractor, chunk=256, **kwargs):  # chunk boundaries inside every video
        if "features_from_crops" not in vars(extractor):  # wrap the predictor's extractor once
            real_from_crops = extractor.features_from_crops

            def from_crops(crops, mask):
                held.append(len(crops))
                return real_from_crops(crops, mask)

            monkeypatch.setattr(extractor, "features_from_crops", from_crops)
        return real_chunks(rec, extractor, 13, **kwargs)

    monkeypatch.setattr(predict_module, "iter_face_feature_chunks", small_chunks)
    streaming = predict_module.Predictor(tiny_run / "model.safetensors", PredictorOptions(stream=True))
    whole = predict_module.Predictor(tiny_run / "model.safetensors", PredictorOptions(stream=False))
    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    videos = [rec.video_path, *sorted(crema_d.glob("*.flv"))[:3]]
    for video in videos:
        held.clear()
        a, b = streaming(video), whole(video)
        assert a.summary.streamed and not b.summary.streamed
        _same_predictions(a, b)
        assert held and max(held) == 13 and sum(held) == a.summary.frames  # the last chunk may be short
        if video.suffix == ".flv":  # Haar finds the CREMA-D actors' faces (not the synthetic set's drawn ones)
            assert a.frame["face_detected"].mean() > 0.9, video


def test_predict_over_folders_never_lets_two_inputs_share_an_output(tiny_run, synth_root, tmp_path, capsys):
    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    videos = tmp_path / "videos"
    for sub in ("a", "b"):
        (videos / sub).mkdir(parents=True)
        (videos / sub / "clip.mp4").write_bytes(rec.video_path.read_bytes())
    out = tmp_path / "pred"
    assert main(["predict", str(tiny_run / "model.safetensors"), str(videos), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.csv")) == ["a%2Fclip.csv", "b%2Fclip.csv"]
    # the same two files given one by one would both be clip.csv: refused before any work
    assert main(["predict", str(tiny_run / "model.safetensors"), str(videos / "a" / "clip.mp4"),
                 str(videos / "b" / "clip.mp4"), "--out", str(tmp_path / "p2")]) == 2
    assert "would both write clip.csv" in capsys.readouterr().err and not (tmp_path / "p2").exists()


@pytest.mark.slow
def test_predict_a_folder_with_worker_processes_equals_one_process(tiny_run, crema_d, tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for clip in sorted(crema_d.glob("*.flv"))[:3]:
        (clips / clip.name).symlink_to(clip)
    ckpt = str(tiny_run / "model.safetensors")
    assert main(["predict", ckpt, str(clips), "--out", str(tmp_path / "one")]) == 0
    assert main(["predict", ckpt, str(clips), "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    out = capsys.readouterr()
    assert "predict: 3/3 video (100%)" in out.err  # one progress line set for the folder, off a terminal
    for clip in sorted(clips.iterdir()):
        a = pd.read_csv(tmp_path / "one" / f"{clip.stem}.csv")
        b = pd.read_csv(tmp_path / "two" / f"{clip.stem}.csv")
        pd.testing.assert_frame_equal(a, b, atol=1e-5)
    assert main(["predict", ckpt, str(clips), "--workers", "0"]) == 2


def test_bench_predict_compares_the_streaming_and_whole_video_paths(tiny_run, crema_d, tmp_path, capsys):
    clip = sorted(crema_d.glob("*.flv"))[0]
    out = tmp_path / "bench.json"
    assert main(["bench", "predict", str(clip), "--checkpoint", str(tiny_run / "model.safetensors"),
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["stage"] for r in rows] == [f"predict {clip.name} (streaming)", f"predict {clip.name} (whole video)"]
    assert all(r["rate"] > 0 and r["unit"] == "x real time" for r in rows)
    assert "detect" in rows[0]["note"] and "model" in rows[0]["note"]  # the streaming path's seconds per stage
    assert "x real time" in capsys.readouterr().out


def test_the_overlay_is_drawn_in_the_streaming_pass_from_its_one_decode(tiny_run, crema_d, monkeypatch, tmp_path):
    """With --overlay the streaming path draws the overlay from the frames it decodes anyway: one video decode for
    features, boxes and overlay; the file has a frame per source frame at the source's times, and looks like the
    second-decode overlay (a JPEG generation apart); frames wait only until their step is final."""
    from avaffect.evaluation import overlay as overlay_module
    from avaffect.features import face_stream as stream_module
    from avaffect.features.faces import crops as crops_module
    from avaffect.media import video_frame_times

    clip = sorted(crema_d.glob("*.flv"))[0]
    calls = _count_decodes(monkeypatch, (crops_module, stream_module, overlay_module))
    predictor = predict_module.Predictor(tiny_run / "model.safetensors")
    out = tmp_path / "pred"
    result = predictor(clip, None, output_path(out, clip.stem, "_overlay.mp4"))
    paths = write_outputs(result, out, clip.stem, overlay=True)
    assert len(calls) == 1 and result.summary.timings_s.overlay == "same pass"
    same_pass = paths["overlay"]
    np.testing.assert_allclose(video_frame_times(same_pass), video_frame_times(clip), atol=1e-3)
    assert 0 < result.overlay_frames_buffered <= len(result.frame)
    # the second-decode writer on the same predictions: the same picture within JPEG + H.264 noise
    targets = ["valence", "arousal"]
    second = overlay_module.write_overlay(clip, tmp_path / "second.mp4", result.frame["time"].to_numpy(),
                                          result.frame[targets].to_numpy(), result.boxes)
    from avaffect.media import iter_video_frames

    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()
             for (_, a), (_, b) in zip(iter_video_frames(same_pass), iter_video_frames(second))]
    assert len(diffs) == len(result.frame) and max(diffs) < 3.0  # mean absolute difference, 0-255 scale


def test_the_streaming_overlay_draws_a_frame_only_when_its_step_is_final(tmp_path):
    from avaffect.evaluation.overlay import StreamingOverlay

    src = tmp_path / "src.mp4"
    from mediafiles import write_test_video

    write_test_video(src, 12, fps=10)
    drawn = []
    ov = StreamingOverlay(src, tmp_path / "ov.mp4", num_steps=12)
    ov.encoder.write = lambda t, rgb, v, a, box: drawn.append((round(t, 2), v))
    for i in range(6):
        ov.frame(i / 10, np.zeros((48, 64, 3), np.uint8))
    assert drawn == []  # nothing is final yet
    ov.final(0, np.array([[0.1, 0.2], [0.3, 0.4]]), np.full((2, 4), np.nan))
    assert drawn == [(0.0, 0.1), (0.1, 0.3)]
    ov.final(2, np.tile([[0.5, 0.6]], (10, 1)), np.full((10, 4), np.nan))
    assert len(drawn) == 6
    for i in range(6, 12):
        ov.frame(i / 10, np.zeros((48, 64, 3), np.uint8))
    assert len(drawn) == 12
    ov.abort()
    assert not (tmp_path / "ov.mp4").exists()
