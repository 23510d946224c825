"""Torch's CPU thread count: the ``auto`` rule, the user's override, and training applying it."""

from __future__ import annotations

import pytest
import torch

from avaffect import threads
from avaffect.config import make_config
from avaffect.errors import ConfigError


def test_auto_is_half_the_usable_cores_unless_the_environment_fixes_it(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(2)))
    assert threads.resolve_threads("auto") == 1
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert threads.resolve_threads("auto") == 8 and threads.resolve_threads(3) == 3
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0})
    assert threads.resolve_threads("auto") == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.resolve_threads("auto") is None  # the user's choice stands


def test_torch_threads_applies_and_restores():
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    with threads.torch_threads(want) as n:
        assert n == want == torch.get_num_threads()
    assert torch.get_num_threads() == before


def test_training_cpu_threads_is_validated():
    assert make_config({"training": {"cpu_threads": 2}}).training.cpu_threads == 2
    assert make_config({}).training.cpu_threads == "auto"
    for bad in (0, "many"):
        with pytest.raises(ConfigError):
            make_config({"training": {"cpu_threads": bad}})


def test_training_on_the_cpu_runs_with_the_configured_threads(synth_root, tmp_path, monkeypatch, capsys):
    from avaffect.training import run as run_module

    seen = []
    real = run_module.torch_threads

    def recording(requested):
        seen.append(requested)
        return real(requested)

    monkeypatch.setattr(run_module, "torch_threads", recording)
    counts = []
    real_fit = run_module.L.Trainer.fit

    def fit(self, *args, **kwargs):
        counts.append(torch.get_num_threads())
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(run_module.L.Trainer, "fit", fit)
    before = torch.get_num_threads()
    cfg = make_config({"data": {"root": str(synth_root)}, "features": {"store": str(tmp_path / "store")},
                       "model": {"name": "concat", "params": {"hidden": 4, "head_hidden": 4}},
                       "training": {"window": 60, "hop": 60, "max_epochs": 1, "accelerator": "cpu",
                                    "cpu_threads": 1}})
    run_module.train(cfg, tmp_path / "run", progress=True)
    assert seen == [1] and counts == [1] and torch.get_num_threads() == before
    err = capsys.readouterr().err  # off a terminal: a header and one plain line per epoch, no redrawn bar
    assert "== training concat (run): up to 1 epochs" in err and "concat (run): epoch 1/1, loss" in err
    assert "\r" not in err
