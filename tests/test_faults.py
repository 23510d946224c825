"""Bad input, hostile files and interrupted work: a clear message naming the file and the fix, never a
traceback, nothing written as finished that is not (issue: trust nothing it did not verify)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mediafiles import write_test_video

from avaffect.cli.main import main
from avaffect.config import make_config
from avaffect.errors import AvaffectError
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.models.checkpoint import load_checkpoint, save_checkpoint
from avaffect.models.wrapper import AVRegressor


def _checkpoint(tmp_path, poison: bool = False):
    model = AVRegressor("concat", 132, 640, {"hidden": 4, "head_hidden": 4})
    if poison:
        with torch.no_grad():
            next(model.parameters())[0].fill_(float("nan"))
    spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats"}, video_extractor={"name": "face_hog"},
                             window=30, hop=15, fps=25.0)
    return save_checkpoint(tmp_path / "model.safetensors", model, spec)


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path, capsys):
    path = _checkpoint(tmp_path, poison=True)
    with pytest.raises(AvaffectError, match="NaN/Inf in the weights"):
        load_checkpoint(path)
    assert main(["predict", str(path), str(tmp_path)]) == 2
    assert "NaN/Inf in the weights" in capsys.readouterr().err


def test_a_checkpoint_with_another_models_weights_is_refused(tmp_path):
    from safetensors.torch import load_file

    from avaffect.models.checkpoint import FORMAT
    from avaffect.models.safetensors_io import read_tagged_metadata, write_tagged

    path = _checkpoint(tmp_path)
    meta = read_tagged_metadata(path, FORMAT, "", "")
    other = AVRegressor("concat", 132, 640, {"hidden": 6, "head_hidden": 4}).state_dict()
    write_tagged(path, other, meta)
    with pytest.raises(AvaffectError, match="do not fit the model"):
        load_checkpoint(path)
    assert load_file(str(path))


def test_an_out_folder_that_is_a_file_is_a_message_not_a_traceback(tmp_path, capsys):
    video = write_test_video(tmp_path / "clip.mp4", 30)
    blocker = tmp_path / "out"
    blocker.write_text("I am a file")
    assert main(["predict", str(_checkpoint(tmp_path)), str(video), "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "out" in err and "output folder must be a folder" in err


def test_a_video_without_any_face_says_so(tmp_path, capsys):
    video = write_test_video(tmp_path / "grey.mp4", 30)  # grey frames: no face anywhere
    out = tmp_path / "pred"
    assert main(["predict", str(_checkpoint(tmp_path)), str(video), "--out", str(out)]) == 0
    summary = json.loads((out / "grey.json").read_text())
    assert summary["face_fraction"] == 0.0 and summary["frames_without_face"] == summary["frames"]
    assert any("no face" in w for w in summary["warnings"])
    assert "warning: no face was found" in capsys.readouterr().out


def test_gpu_asked_for_without_a_gpu_is_a_clear_error(tmp_path, monkeypatch):
    from avaffect.training import run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = make_config({"training": {"accelerator": "gpu"}})
    with pytest.raises(AvaffectError, match="no CUDA GPU"):
        run.fit(cfg, tmp_path, None, None, False)


def test_a_diverged_run_is_never_written_as_finished(synth_root, tmp_path, monkeypatch):
    from avaffect.training import run

    def diverged_fit(cfg, run_dir, module, data, progress, timer=None):
        with torch.no_grad():
            for p in module.model.parameters():
                p.fill_(float("nan"))
        return module.model, {"rank": 0}

    monkeypatch.setattr(run, "fit", diverged_fit)
    cfg = make_config({"data": {"root": str(synth_root)}, "features": {"store": str(tmp_path / "store")},
                       "model": {"name": "concat", "params": {"hidden": 8}}, "training": {"window": 60, "hop": 30}})
    with pytest.raises(AvaffectError, match="training diverged"):
        run.train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "model.safetensors").exists()


def test_audio_only_files_are_reported_with_what_to_do(tmp_path, capsys):
    from scipy.io import wavfile

    from avaffect.data.folder import load_video_folder

    folder = tmp_path / "media"
    folder.mkdir()
    wavfile.write(folder / "voice.wav", 16000, np.zeros(16000, np.int16))
    write_test_video(folder / "clip.mp4", 20)
    recs, broken = load_video_folder(folder)
    assert [r.name for r in recs] == ["clip"] and "audio-only" in broken["voice.wav"]
    assert "manifest" in broken["voice.wav"]  # says what to do, not only what went wrong
    assert main(["predict", str(_checkpoint(tmp_path)), str(folder / "voice.wav"), "--out", str(tmp_path / "p")]) == 1
    assert "audio-only" in capsys.readouterr().out
