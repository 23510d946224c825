"""Fixtures of the fault tests (``tests/faults/``): the CLI in-process, a tiny checkpoint, a tiny clip.

Helpers shared by the test modules live in ``faultkit.py`` (this folder is on ``sys.path`` for its tests).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mediafiles import write_test_video  # noqa: E402

from avaffect.cli.main import main  # noqa: E402


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli(capsys):
    """``cli("predict", ...)``: ``avaffect.cli.main.main`` in this process; exit code and captured output."""
    def run(*args) -> CliResult:
        capsys.readouterr()
        rc = main([str(a) for a in args])
        cap = capsys.readouterr()
        assert "Traceback (most recent call last)" not in cap.out + cap.err
        return CliResult(rc, cap.out, cap.err)
    return run


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained ``concat`` checkpoint over the offline extractors (what ``predict`` needs)."""
    from avaffect.features.preprocessing_spec import PreprocessingSpec
    from avaffect.models.checkpoint import save_checkpoint
    from avaffect.models.wrapper import AVRegressor

    model = AVRegressor("concat", 132, 640, {"hidden": 4, "head_hidden": 4})
    spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats"}, video_extractor={"name": "face_hog"},
                             window=30, hop=15, fps=25.0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", model, spec)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A 20-frame 64x48 mp4 with audio (read-only)."""
    return write_test_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 20)
