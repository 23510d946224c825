"""A run killed in the middle of an epoch (``training.checkpoint_every_n_steps``) resumes at the next batch and ends
with the same weights as the run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch
import yaml
from safetensors.torch import load_file

from avaffect.cli.main import main

CONFIG = {"model": {"name": "concat", "params": {"hidden": 8, "head_hidden": 8}},
          "training": {"window": 30, "hop": 30, "batch_size": 1, "max_epochs": 2, "accelerator": "cpu",
                       "checkpoint_every_n_steps": 1}}


def _args(synth_root, tmp_path, run):
    return ["train", str(synth_root), "--config", str(tmp_path / "c.yaml"), "--out", str(run), "-q",
            "--set", f"features.store={tmp_path / 'store'}"]


def test_a_run_killed_mid_epoch_resumes_exactly(synth_root, tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    straight = tmp_path / "straight"
    assert main(_args(synth_root, tmp_path, straight)) == 0  # also extracts the features both runs share

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from avaffect.cli.main import main; "
                             "sys.exit(main(sys.argv[1:]))", *_args(synth_root, tmp_path, run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if last.is_file():
            try:
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            except Exception:  # noqa: BLE001 - being replaced right now
                continue
            if step >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    loader_state = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert loader_state["delivered"] > 0, "the kill should land inside an epoch"

    assert main(_args(synth_root, tmp_path, run)) == 0
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
