"""DDP: two CPU processes under torchrun (gloo) train one epoch; validation gathers every rank's windows before
stitching, so the metrics logged during training are those one process computes on the whole validation split."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

CONFIG = {"model": {"name": "concat", "params": {"hidden": 8, "head_hidden": 8}},
          "training": {"window": 60, "hop": 30, "batch_size": 4, "max_epochs": 1, "accelerator": "cpu",
                       "devices": 2, "strategy": "ddp"}}


def test_two_process_ddp_validation_equals_one_process_scoring(synth_root, tmp_path):
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "avaffect.cli.main", "train", str(synth_root), "--config", str(tmp_path / "ddp.yaml"),
           "--out", str(run), "-q", "--set", f"features.store={tmp_path / 'store'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0 and "gloo" in done.stderr.lower() and "not available" in done.stderr.lower():
        pytest.skip("this torch build has no gloo backend")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "MEMBER: 2/2" in done.stderr  # really two ranks
    logged = pd.read_csv(run / "metrics_per_epoch.csv").iloc[-1]
    # metrics.json: rank 0 alone predicts every validation recording with the saved best model (epoch 0)
    overall = json.loads((run / "metrics.json").read_text())["overall"]
    for key in ("ccc_valence", "ccc_arousal", "p_va"):
        assert logged[f"val/{key}"] == pytest.approx(overall[key], abs=1e-6)
    assert sorted(p.name for p in (run / "predictions" / "validation").iterdir()) == sorted(
        f"{n}.csv" for n in json.loads((run / "metrics.json").read_text())["per_recording"])
