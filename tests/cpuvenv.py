"""The CPU-only venv of ``tests/test_cpu_install.py``, built in the background from the end of collection.

The build (``make install-cpu``) is mostly pip unpacking wheels, two minutes on the 2-core CI machine; started
by ``conftest.pytest_collection_finish`` when a selected test uses the ``cpu_venv`` fixture, it overlaps the tests
that run before them instead of adding its own two minutes (the fixture waits for it and fails with its output if
it failed). ``pytest_sessionfinish`` stops a build still running and removes the folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"


def cpu_torch_wheel() -> tuple[Path | None, str]:
    """``(the CPU build of torch to install, "")``, or ``(None, why not)``: ``AVAFFECT_CPU_TORCH`` (a wheel file),
    else one in ``/opt/wheels`` (this project's build machines keep one there; they cannot reach PyTorch's index).
    A reason starting with ``AVAFFECT_CPU_TORCH=`` is the user's mistake (the test fails), any other a skip."""
    given = os.environ.get("AVAFFECT_CPU_TORCH")
    if given:
        return (Path(given), "") if Path(given).is_file() else (None, f"AVAFFECT_CPU_TORCH={given}: no such wheel "
                                                                      "file")
    found = sorted(Path("/opt/wheels").glob(f"torch-*+cpu-{TAG}-{TAG}-*.whl"))
    if not found:
        return None, f"no CPU build of torch for {TAG}: set AVAFFECT_CPU_TORCH to a torch-*+cpu-{TAG}-*.whl file"
    return found[-1], ""


class _Build:
    def __init__(self) -> None:
        self.wheel, self.reason = cpu_torch_wheel()
        self.root = Path(tempfile.mkdtemp(prefix="avaffect-cpu-venv-"))
        self.venv = self.root / "venv"
        self.proc: subprocess.Popen | None = None
        self.output = ""
        self.thread = threading.Thread(target=self._run, name="cpu-venv-build", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        if self.wheel is None:
            return
        base = getattr(sys, "_base_executable", sys.executable)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}  # not make test's
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "install-cpu", f"VENV={self.venv}", f"CPU_TORCH={self.wheel}",
             f"PYTHON={base}"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = self.proc.communicate()[0]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.thread.join(60)
        shutil.rmtree(self.root, ignore_errors=True)


_BUILD: _Build | None = None


def start() -> None:
    """Start the build (once per session)."""
    global _BUILD
    if _BUILD is None:
        _BUILD = _Build()


def result() -> tuple[Path | None, str]:
    """Wait for the build: ``(venv, "")``; ``(None, why)`` without a wheel; raises AssertionError with make's
    output when the build failed."""
    start()
    assert _BUILD is not None
    _BUILD.thread.join()
    if _BUILD.wheel is None:
        return None, _BUILD.reason
    code = _BUILD.proc.returncode if _BUILD.proc else "not started"
    assert code == 0, f"make install-cpu failed ({code}):\n{_BUILD.output[-4000:]}"
    return _BUILD.venv, ""


def stop() -> None:
    """Kill a build still running and remove its folder (end of the session)."""
    if _BUILD is not None:
        _BUILD.stop()
