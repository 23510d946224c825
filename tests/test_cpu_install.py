"""The CPU-only install (README, "Installing without a GPU"): ``make install-cpu`` with a CPU build of torch gives
a venv without CUDA libraries or torchvision in which training and prediction run, and predict the same numbers
as the default install.

It needs a CPU build of torch for this Python: ``AVAFFECT_CPU_TORCH`` (a wheel file), else one in ``/opt/wheels``
(this project's build machines keep one there; they cannot reach PyTorch's own index). Without one the test
skips, naming what to set. The venv is built in the background from the end of collection (``tests/cpuvenv.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cpuvenv
import numpy as np
import pandas as pd
import pytest
import torch
from shareddata import crema_d_clips

from avaffect.features.backbones.nets import resnet_features, video_resnet_features

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n" \
                                f"{res.stderr[-3000:]}"
    return res


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.fixture(scope="module")
def cpu_venv() -> Path:
    """The venv ``make install-cpu`` built, in the background since the end of collection (:mod:`cpuvenv`)."""
    venv, why = cpuvenv.result()
    if venv is None:
        if why.startswith("AVAFFECT_CPU_TORCH="):
            pytest.fail(why)
        pytest.skip(why)
    return venv


@pytest.mark.slow
def test_cpu_only_install_trains_and_predicts_like_the_default_one(cpu_venv, synth_root, tmp_path):
    py, cli = cpu_venv / "bin" / "python", cpu_venv / "bin" / "avaffect"
    # a CPU build, and none of what makes the default venv big
    probe = ("import json, torch, importlib.metadata as md; "
             "print(json.dumps([torch.version.cuda, sorted(d.metadata['Name'].lower() for d in md.distributions())]))")
    cuda, dists = json.loads(_run([str(py), "-c", probe]).stdout)
    assert cuda is None
    assert not [d for d in dists if d.startswith(("nvidia", "triton", "torchvision"))], dists
    size = _du(cpu_venv)
    print(f"CPU-only venv: {size / 1e9:.2f} GB")
    assert size < 3e9, f"{size / 1e9:.1f} GB: CUDA libraries got in?"

    # training runs there (Lightning on the CPU build)
    run = tmp_path / "run"
    _run([str(cli), "train", str(synth_root), "--model", "rjca", "--max-epochs", "1", "--out", str(run), "-q",
          "--set", f"features.store={tmp_path / 'store'}", "--set", "model.params={hidden: 8, head_hidden: 8}",
          "--set", "training.window=60", "--set", "training.hop=30", "--set", "training.batch_size=4"])
    ckpt = run / "model.safetensors"
    assert ckpt.is_file()

    # prediction on a real clip gives the default install's numbers
    clip = crema_d_clips()[0]
    main_cli = Path(sys.executable).parent / "avaffect"
    _run([str(cli), "predict", str(ckpt), str(clip), "--out", str(tmp_path / "cpu")])
    _run([str(main_cli), "predict", str(ckpt), str(clip), "--out", str(tmp_path / "default")])
    a = pd.read_csv(tmp_path / "cpu" / f"{clip.stem}.csv")
    b = pd.read_csv(tmp_path / "default" / f"{clip.stem}.csv")
    assert len(a) == len(b) > 0 and a["valence"].notna().sum() > 0
    assert (a["valence"].isna() == b["valence"].isna()).all()  # the same frames with a face
    np.testing.assert_allclose(a[["valence", "arousal"]].to_numpy(), b[["valence", "arousal"]].to_numpy(),
                               atol=1e-4, equal_nan=True)


@pytest.mark.slow
def test_cpu_only_install_runs_the_backbones_without_torchvision(cpu_venv, tmp_path):
    """Our own ResNet / R3D on the CPU build: the same outputs as here, from the same weight file."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    nets = {"resnet18": resnet_features("resnet18").eval(), "r3d_18": video_resnet_features("r3d_18").eval()}
    inputs = {"resnet18": torch.randn(2, 3, 64, 64), "r3d_18": torch.randn(2, 3, 4, 32, 32)}
    for name, net in nets.items():
        save_file(net.state_dict(), str(tmp_path / f"{name}.safetensors"))
        save_file({"x": inputs[name]}, str(tmp_path / f"{name}_x.safetensors"))
    code = f"""
import sys, torch
from safetensors.torch import load_file, save_file
from avaffect.features.backbones.nets import resnet_features, video_resnet_features
assert "torchvision" not in sys.modules
d = {str(tmp_path)!r}
for name, net in (("resnet18", resnet_features("resnet18")), ("r3d_18", video_resnet_features("r3d_18"))):
    net.load_state_dict(load_file(f"{{d}}/{{name}}.safetensors")); net.eval()
    with torch.no_grad():
        save_file({{"y": net(load_file(f"{{d}}/{{name}}_x.safetensors")["x"])}}, f"{{d}}/{{name}}_y.safetensors")
"""
    _run([str(cpu_venv / "bin" / "python"), "-c", code])
    from safetensors.torch import load_file

    for name, net in nets.items():
        with torch.no_grad():
            want = net(inputs[name])
        torch.testing.assert_close(load_file(str(tmp_path / f"{name}_y.safetensors"))["y"], want, rtol=1e-4,
                                   atol=1e-4)


def test_install_cpu_refuses_a_default_venv(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".avaffect-installed").touch()
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    res = subprocess.run(["make", "--no-print-directory", "install-cpu", f"VENV={venv}"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode != 0 and "rm -rf" in res.stdout and not (venv / "bin").exists()
