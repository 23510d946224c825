"""``predict`` with several checkpoints: the members' mean, their spread (0 where they agree), run folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from avaffect.cli.main import main


def _perturbed(src, dst):
    """A copy of a run's checkpoint with its first weight matrix nudged (another 'seed'), without its ONNX export
    (which would no longer match it)."""
    dst.mkdir(parents=True)
    with safe_open(str(src / "model.safetensors"), "np") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    key = next(k for k, v in tensors.items() if v.ndim == 2 and v.dtype == np.float32)
    tensors[key] = tensors[key] + np.random.default_rng(0).normal(0, 0.05, tensors[key].shape).astype(np.float32)
    save_file(tensors, str(dst / "model.safetensors"), metadata=meta)
    for extra in src.iterdir():  # the files beside a checkpoint (statistics, config), not its export
        if extra.is_file() and extra.name not in ("model.safetensors", "model.onnx", "model.onnx.json"):
            shutil.copy(extra, dst / extra.name)
    return dst / "model.safetensors"


@pytest.mark.slow
def test_an_ensemble_gives_the_mean_and_a_spread_that_is_zero_where_members_agree(tiny_run, crema_d, tmp_path):
    clip = sorted(crema_d.glob("*.flv"))[0]
    ckpt = tiny_run / "model.safetensors"
    assert main(["predict", str(ckpt), str(clip), "--out", str(tmp_path / "one")]) == 0
    one = pd.read_csv(tmp_path / "one" / f"{clip.stem}.csv")
    # three identical members: the band is zero, the mean is the one model's values
    assert main(["predict", str(ckpt), str(ckpt), str(ckpt), str(clip), "--out", str(tmp_path / "same"),
                 "--html"]) == 0
    same = pd.read_csv(tmp_path / "same" / f"{clip.stem}.csv")
    assert (same[["valence_spread", "arousal_spread"]].to_numpy() == 0).all()
    np.testing.assert_array_equal(same[["valence", "arousal"]].to_numpy(), one[["valence", "arousal"]].to_numpy())
    summary = json.loads((tmp_path / "same" / f"{clip.stem}.json").read_text())
    assert len(summary["ensemble"]["members"]) == 3 and summary["ensemble"]["valence_spread_mean"] == 0
    assert '"bands"' in (tmp_path / "same" / f"{clip.stem}.html").read_text()
    # a run folder of two different members (a seed run's layout): the band is positive, the mean theirs
    runs = tmp_path / "seeds"
    shutil.copytree(tiny_run, runs / "seed0", ignore=shutil.ignore_patterns("checkpoints", "logs", "eval*"))
    other = _perturbed(tiny_run, runs / "seed1")
    assert main(["predict", str(other), str(clip), "--out", str(tmp_path / "other")]) == 0
    assert main(["predict", str(runs), str(clip), "--out", str(tmp_path / "ens")]) == 0
    ens = pd.read_csv(tmp_path / "ens" / f"{clip.stem}.csv")
    two = pd.read_csv(tmp_path / "other" / f"{clip.stem}.csv")
    assert (ens["valence_spread"] > 0).mean() > 0.9
    mean = (one[["valence", "arousal"]].to_numpy() + two[["valence", "arousal"]].to_numpy()) / 2
    np.testing.assert_allclose(ens[["valence", "arousal"]].to_numpy(), mean, atol=2e-6)  # CSV's 6 decimals
    half = np.abs(one["valence"] - two["valence"]).to_numpy() / 2  # the std of two values
    np.testing.assert_allclose(ens["valence_spread"].to_numpy(), half, atol=2e-6)
