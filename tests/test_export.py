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

from avaffect.cli.main import main
from avaffect.data.affwild2 import load_affwild2
from avaffect.deploy.onnx_model import OnnxWindows, export_paths, find_export
from avaffect.errors import AvaffectError
from avaffect.evaluation.inference import torch_runner
from avaffect.models.checkpoint import load_checkpoint
from avaffect.models.export import TOLERANCE, check_batch, export_onnx
from avaffect.workflows.predict import load_predictor


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
        load_predictor(run_copy, runtime="onnx")
    assert main(["export", str(run_copy)]) == 0  # written again: matched again
    assert load_predictor(run_copy, runtime="onnx").info.runtime == "onnxruntime"


def test_export_refuses_what_it_cannot_export_faithfully(tmp_path):
    with pytest.raises(AvaffectError, match="not found"):
        export_onnx(tmp_path / "missing.safetensors")
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AvaffectError, match="not a safetensors file"):
        export_onnx(bad)
    assert not export_paths(bad)[0].exists()
