"""The ONNX export of a checkpoint and predict without torch: the export is written by train and checked against the
torch model; predict runs it (the same values, torch never imported), and falls back to torch whenever the export
does not belong to the checkpoint beside it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from avaffect.cli.main import main
from avaffect.data.affwild2 import load_affwild2
from avaffect.deploy.onnx_model import OnnxWindows, export_paths, find_export
from avaffect.errors import AvaffectError
from avaffect.evaluation.inference import torch_runner
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.models import get_entry, list_models
from avaffect.models.checkpoint import load_checkpoint, save_checkpoint
from avaffect.models.export import TOLERANCE, check_batch, export_onnx
from avaffect.models.wrapper import AVRegressor
from avaffect.workflows.predict import PredictorOptions, load_predictor


@pytest.fixture(scope="module")
def video(synth_root):
    return next(r for r in load_affwild2(synth_root) if r.split == "validation").video_path


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """The tiny run's checkpoint and its export, copied (the tests change them)."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("model.safetensors", "model.onnx", "model.onnx.json"):
        shutil.copy(tiny_run / name, out / name)
    return out / "model.safetensors"


def test_train_writes_an_export_that_matches_the_torch_model(tiny_run):
    ckpt = tiny_run / "model.safetensors"
    onnx, record = export_paths(ckpt)
    assert onnx.is_file() and find_export(ckpt) == onnx
    rec = json.loads(record.read_text())
    assert rec["max_abs_diff"] <= TOLERANCE and rec["window"] == 60
    # on other windows than the check batch too
    model, meta = load_checkpoint(ckpt)
    m = meta["model"]
    batch = check_batch(60, m["d_audio"], m["d_video"], seed=7)
    np.testing.assert_allclose(OnnxWindows(onnx)(*batch), torch_runner(model)(*batch), atol=TOLERANCE)


def test_predict_runs_the_export_with_the_torch_values_and_never_imports_torch(tiny_run, video, tmp_path):
    ckpt = tiny_run / "model.safetensors"
    code = ("import sys; from avaffect.cli.main import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    for runtime in ("auto", "torch"):
        out = tmp_path / runtime
        args = ["predict", str(ckpt), str(video), "--out", str(out), "--runtime", runtime]
        if runtime == "auto":
            done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-2000:]
        else:
            assert main(args) == 0
    got, want = (pd.read_csv(tmp_path / r / f"{video.stem}.csv") for r in ("auto", "torch"))
    for t in ("valence", "arousal"):
        np.testing.assert_allclose(got[t], want[t], atol=1e-5)
    summary = {r: json.loads((tmp_path / r / f"{video.stem}.json").read_text()) for r in ("auto", "torch")}
    assert summary["auto"]["runtime"] == "onnxruntime" and summary["torch"]["runtime"] == "torch"


def test_an_export_of_another_checkpoint_or_cut_short_is_never_run(run_copy, caplog):
    assert load_predictor(run_copy).info.runtime == "onnxruntime"
    onnx, record = export_paths(run_copy)
    data = onnx.read_bytes()
    onnx.write_bytes(data[: len(data) // 2])  # cut short
    assert load_predictor(run_copy).info.runtime == "torch"
    assert "does not match its record" in caplog.text
    onnx.write_bytes(data)
    raw = json.loads(record.read_text())
    record.write_text(json.dumps({**raw, "checkpoint_sha256": "0" * 64}))  # trained again since
    assert load_predictor(run_copy).info.runtime == "torch"
    assert "exported from another version" in caplog.text
    with pytest.raises(AvaffectError, match="avaffect export"):
        load_predictor(run_copy, options=PredictorOptions(runtime="onnx"))
    assert main(["export", str(run_copy)]) == 0  # written again: matched again
    assert load_predictor(run_copy, options=PredictorOptions(runtime="onnx")).info.runtime == "onnxruntime"


def test_export_refuses_what_it_cannot_export_faithfully(tmp_path):
    with pytest.raises(AvaffectError, match="not found"):
        export_onnx(tmp_path / "missing.safetensors")
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AvaffectError, match="not a safetensors file"):
        export_onnx(bad)
    assert not export_paths(bad)[0].exists()


def _small(name: str, length: int) -> dict:
    """Small sizes for a preset (those of its config fields that exist), the window ``length`` where it has one."""
    if name.startswith("dlstm"):  # their own size fields (hidden / head_hidden are refused there)
        small = {"audio_hidden": 8, "video_hidden": 8, "joint_hidden": 8}
    else:
        small = {"window_length": length, "hidden": 8, "head_hidden": 8}
    fields = get_entry(name).config_cls.model_fields
    return {k: v for k, v in small.items() if k in fields}


@pytest.mark.parametrize("name", list_models())
def test_every_preset_exports_within_the_tolerance(name, tmp_path):
    """The README's list: every preset's trace agrees with its torch forward pass on the check windows (export
    refuses otherwise) and on windows it was not traced with (another batch size)."""
    length = 32
    torch.manual_seed(0)
    model = AVRegressor(name, 6, 10, _small(name, length)).eval()
    spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats", "params": {}, "id": "logmel_stats-1"},
                             video_extractor={"name": "face_hog", "params": {}, "id": "face_hog-1"},
                             window=length, hop=length, fps=30.0, targets=["valence", "arousal"])
    onnx = export_onnx(save_checkpoint(tmp_path / "model.safetensors", model, spec))
    batch = tuple(x[1:] for x in check_batch(length, 6, 10, seed=11))  # 3 windows, not the traced batch of 4
    np.testing.assert_allclose(OnnxWindows(onnx)(*batch), torch_runner(model)(*batch), atol=TOLERANCE)


def test_a_dlstm_checkpoint_that_stored_the_fields_it_does_not_use_loads(tmp_path):
    """DLSTM checkpoints saved in 2026-12 stored every config field, the generic sizes the DLSTM refuses among them:
    they load (those fields dropped), and checkpoints saved now carry only the fields that apply."""
    from safetensors.numpy import load_file

    from avaffect.deploy.formats import CHECKPOINT_FORMAT, read_tagged_metadata
    from avaffect.models.registry import model_config, yaml_keys
    from avaffect.models.safetensors_io import write_tagged

    spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats", "params": {}, "id": "logmel_stats-1"},
                             video_extractor={"name": "face_hog", "params": {}, "id": "face_hog-1"},
                             window=32, hop=32, fps=30.0, targets=["valence", "arousal"])
    path = save_checkpoint(tmp_path / "model.safetensors", AVRegressor("dlstm_att", 6, 10, {}), spec)
    meta = read_tagged_metadata(path, CHECKPOINT_FORMAT, "", "")
    desc = json.loads(meta["model"])
    assert set(desc["params"]) == set(yaml_keys("dlstm_att"))
    desc["params"] = model_config("dlstm_att").model_dump(mode="json")  # every field, as then
    assert "hidden" in desc["params"]
    weights = {k: torch.as_tensor(v) for k, v in load_file(str(path)).items()}
    write_tagged(path, weights, {**meta, "model": json.dumps(desc)})
    assert load_checkpoint(path)[0].describe()["name"] == "dlstm_att"


def _deployed_and_torch(deployed, ckpt, clip, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``predict DEPLOYED clip`` in a fresh process, asserted never to import torch (into ``tmp_path/d``), and
    ``predict CKPT clip --runtime torch`` (into ``tmp_path/t``): their CSVs."""
    code = ("import sys; from avaffect.cli.main import main; rc = main(sys.argv[1:]); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "predict", str(deployed), str(clip), "--out",
                           str(tmp_path / "d")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout
    assert main(["predict", str(ckpt), str(clip), "--out", str(tmp_path / "t"), "--runtime", "torch"]) == 0
    return pd.read_csv(tmp_path / "d" / f"{clip.stem}.csv"), pd.read_csv(tmp_path / "t" / f"{clip.stem}.csv")


@pytest.mark.slow
def test_export_out_writes_a_folder_that_predict_runs_without_torch(run_copy, crema_d, tmp_path, capsys):
    """``export --format onnx --out DIR``: the ONNX model with what predict needs beside it, nothing written beside
    the checkpoint; ``predict DIR VIDEO`` equals ``predict CKPT VIDEO`` with torch within 1e-4 on a CREMA-D clip,
    without importing torch; a damaged folder is refused with the fix."""
    clip = sorted(crema_d.glob("*.flv"))[0]
    before = sorted(p.name for p in run_copy.parent.iterdir())
    out = tmp_path / "deployed"
    assert main(["export", str(run_copy), "--format", "onnx", "--out", str(out)]) == 0
    assert "max |ONNX - torch|" in capsys.readouterr().out
    assert sorted(p.name for p in run_copy.parent.iterdir()) == before
    assert {"model.onnx", "model.onnx.json", "deploy.safetensors", "preprocessing.json"} <= {p.name for p in
                                                                                            out.iterdir()}
    spec = json.loads((out / "preprocessing.json").read_text())
    assert spec["preprocessing"]["window"] == 60 and len(spec["audio_mean"]) == spec["model"]["d_audio"]
    a, b = _deployed_and_torch(out, run_copy, clip, tmp_path)
    np.testing.assert_allclose(a[["valence", "arousal"]].to_numpy(), b[["valence", "arousal"]].to_numpy(), atol=1e-4)
    assert json.loads((tmp_path / "d" / f"{clip.stem}.json").read_text())["runtime"] == "onnxruntime"
    (out / "model.onnx").write_bytes((out / "model.onnx").read_bytes()[:1000])
    assert main(["predict", str(out), str(clip), "--out", str(tmp_path / "x")]) == 2
    assert "export it again" in capsys.readouterr().err


def test_a_models_side_files_are_the_weights_its_extractors_read_beside_it(tmp_path):
    """What ``export --out`` and ``calibrate`` copy along with a model: an end-to-end run's fine-tuned backbone at a
    path relative to the run folder, not an absolute path nor a file that is not there."""
    (tmp_path / "backbones").mkdir()
    (tmp_path / "backbones" / "face.pth").write_bytes(b"w")
    spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats", "params": {}},
                             video_extractor={"name": "resnet18_face", "params": {"weights": "backbones/face.pth"}},
                             window=8, hop=8, fps=30.0)
    assert [str(p) for p in spec.side_files(tmp_path)] == ["backbones/face.pth"]
    assert spec.video_extractor.params_beside(tmp_path)["weights"] == str(tmp_path / "backbones" / "face.pth")
    assert spec.side_files(tmp_path / "elsewhere") == []
    absolute = spec.model_copy(update={"video_extractor": spec.video_extractor.model_copy(
        update={"params": {"weights": str(tmp_path / "backbones" / "face.pth")}})})
    assert absolute.side_files(tmp_path) == []


def _resnet_face_checkpoint(folder) -> tuple:
    """A small fusion model over ``resnet18_face`` (random weights, 48-px crops seen at 32 px) and ``logmel_stats``
    features, saved as a checkpoint: a model whose video extractor is a torch network."""
    from avaffect.features.extractors import get_extractor

    video = {"allow_random": True, "crop_size": 48, "input_size": 32, "device": "cpu", "batch_size": 16}
    ex_v, ex_a = get_extractor("resnet18_face", **video), get_extractor("logmel_stats")
    torch.manual_seed(0)
    model = AVRegressor("rjca", ex_a.dim, ex_v.dim, _small("rjca", 32)).eval()
    spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats", "params": {}, "id": ex_a.id},
                             video_extractor={"name": "resnet18_face", "params": video, "id": ex_v.id},
                             window=32, hop=16, fps=30.0, targets=["valence", "arousal"])
    folder.mkdir()
    return save_checkpoint(folder / "model.safetensors", model, spec), ex_v


@pytest.mark.slow
def test_export_out_exports_a_network_extractor_and_predict_runs_it_without_torch(crema_d, tmp_path, capsys):
    """A video extractor that is a torch network (resnet18_face) goes into the folder as ONNX, its normalisation
    included (checked against torch when written; the same features within 1e-5 here, the same id); ``predict DIR``
    then imports no torch and equals ``predict CKPT --runtime torch`` within 1e-4 on a CREMA-D clip. The audio
    extractor (NumPy code) is said to run as it is."""
    from avaffect.features.extractors import get_extractor

    ckpt, ex_v = _resnet_face_checkpoint(tmp_path / "run")
    out = tmp_path / "deployed"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "video extractor resnet18_face: its network exported to extractors/video-resnet18_face.onnx" in printed
    assert "audio extractor logmel_stats: not a network" in printed and "without torch" in printed
    notes = json.loads((out / "preprocessing.json").read_text())["extractors"]
    assert notes["video"]["exported"] == "extractors/video-resnet18_face.onnx" and notes["audio"]["exported"] is None
    onnx_ex = get_extractor("resnet18_face", **{**ex_v.params, "onnx": str(out / notes["video"]["exported"])})
    assert onnx_ex.id == ex_v.id
    crops = np.random.default_rng(4).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    mask = np.array([True, False, True, True, True])
    want = ex_v.features_from_crops(crops, mask)
    np.testing.assert_allclose(onnx_ex.features_from_crops(crops, mask), want, atol=1e-5 * (1 + np.abs(want).max()))
    clip = sorted(crema_d.glob("*.flv"))[0]
    a, b = _deployed_and_torch(out, ckpt, clip, tmp_path)
    assert a["face_detected"].any()
    np.testing.assert_allclose(a[["valence", "arousal"]].to_numpy(), b[["valence", "arousal"]].to_numpy(), atol=1e-4)
    (out / notes["video"]["exported"]).unlink()  # the folder without its extractor: said, with the fix
    assert main(["predict", str(out), str(clip), "--out", str(tmp_path / "x")]) == 2
    assert "export the model again" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "params"), [
    ("r2plus1d18_clip", {"crop_size": 32, "input_size": 32, "clip_len": 4}),
    ("spec_resnet18", {}),
])
def test_every_network_extractor_family_exports_with_its_features(name, params, tmp_path):
    """The clip network (its 5-D normalisation) and the spectrogram ResNet: exported and run by ONNX Runtime, the
    same features as torch (relative 1e-5), the same feature id. (VGGish exports the same way: 290 MB, not here.)"""
    from avaffect.features.extractors import get_extractor

    params = {**params, "allow_random": True, "device": "cpu"}
    ex = get_extractor(name, **params)
    diff = ex.export_network(tmp_path / "net.onnx")
    onnx_ex = get_extractor(name, **params, onnx=str(tmp_path / "net.onnx"))
    assert onnx_ex.id == ex.id
    rng = np.random.default_rng(2)
    if ex.modality == "video":
        crops = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
        mask = np.array([1, 1, 0, 1, 1, 1], bool)
        want, got = ex.features_from_crops(crops, mask), onnx_ex.features_from_crops(crops, mask)
    else:
        wav, times = rng.normal(0, 0.1, 32000).astype(np.float32), np.arange(0, 2, 0.04)
        want, got = ex.features_from_waveform(wav, times), onnx_ex.features_from_waveform(wav, times)
    scale = 1 + np.abs(want).max()
    assert diff <= 1e-4 * scale
    np.testing.assert_allclose(got, want, atol=1e-5 * scale)
