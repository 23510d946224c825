"""Fixtures of the fault tests (``tests/faults/``) and the fault table.

- in-process tests: ``cli`` (``avaffect.cli.main.main`` in this process), a tiny untrained ``checkpoint``, a clip;
- fault cases (``faultkit``): ``fault_shared`` (the tiny synthetic dataset with its features and one tiny model
  trained by the real command, built once per session in a temporary folder) and ``fault_case`` (runs a case as
  subprocesses, records its row, fails on any problem);
- ``--fault-report FILE`` writes the table of the cases that ran (``docs/benchmarks/faults.md``), and
  ``--extended`` (``tests/conftest.py``) adds the slow cases.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faultkit import GROUPS, TINY_YAML, Case, Record, Shared, format_report, run_avaffect, run_case  # noqa: E402
from mediafiles import write_test_video  # noqa: E402

from avaffect.cli.main import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RECORDS = pytest.StashKey[list]()
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


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


# =================================================================================================== fault cases


def _setup_command(argv: list[str], cwd: Path, env: dict) -> None:
    """One set-up command of the shared inputs; a failure stops every case that needs them."""
    ran = run_avaffect(argv, cwd, env, 600)
    if ran.rc != 0:
        pytest.fail(f"fault set-up: avaffect {' '.join(argv)} failed (exit {ran.exit}):\n{ran.out}\n{ran.err}")


@pytest.fixture(scope="session")
def fault_shared(tmp_path_factory, synth_root) -> Shared:
    """The inputs every case reads, never changes: a copy of the tiny synthetic dataset, one tiny model trained
    on it with ``avaffect train`` (in ``work/shared``, relative paths), the store completed with ``avaffect
    extract``, a clip; commands run with one thread each and an empty ``AVAFFECT_HOME`` (no weights)."""
    work = tmp_path_factory.mktemp("faults")
    root = work / "shared"
    shutil.copytree(synth_root, root / "ds", ignore=shutil.ignore_patterns("features"))
    (root / "home").mkdir()
    (root / "tiny.yaml").write_text(TINY_YAML)
    env = dict(os.environ, **THREADS, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", AVAFFECT_HOME=str(root / "home"))
    _setup_command(["train", "ds", "--config", "tiny.yaml", "--out", "run", "-q"], root, env)
    _setup_command(["extract", "ds", "-q"], root, env)  # the test recording too: a complete store
    import torch

    return Shared(work, root, root / "ds", root / "run", root / "tiny.yaml", write_test_video(root / "clip30.mp4", 30),
                  env, torch.cuda.is_available())


@pytest.fixture
def fault_case(request, fault_shared):
    """``fault_case(case)``: run the case in its own folder, record its row for ``--fault-report``, fail on any
    problem (the folder of a passed case is removed)."""
    def run(case: Case) -> None:
        folder = fault_shared.work / "cases" / case.code
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        record = run_case(case, fault_shared, folder)
        request.config.stash.setdefault(RECORDS, []).append(record)
        if record.skipped:
            pytest.skip(record.skipped)
        assert not record.problems, f"{case.id} ({case.what}): " + "; ".join(record.problems)
        _rmtree(folder)
    return run


def _rmtree(folder: Path) -> None:
    """Remove a case folder, the ones it made unreadable too."""
    for root, dirs, _ in os.walk(folder):
        for x in dirs:
            os.chmod(os.path.join(root, x), 0o755)
    shutil.rmtree(folder, ignore_errors=True)


# =================================================================================================== the table


def _machine() -> str:
    """The CPU, cores, memory, torch and GPU of this machine, in words."""
    import torch

    cpu = platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gib:.0f} GB, Python {platform.python_version()}, torch " \
           f"{torch.__version__}, {gpu}"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _header(config) -> str:
    """The paragraph under the title: when, where, at which commit, with which command."""
    args = " ".join(a if not os.path.isabs(a) else os.path.relpath(a, REPO) for a in config.invocation_params.args)
    return (f"Run on {time.strftime('%Y-%m-%d')} on {_machine()}, at commit {_commit()}, with `python -m pytest "
            f"{args}`.\n\nEvery case is one or more real `avaffect` commands on a small hostile or careless input "
            "(the rules: `tests/faults/faultkit.py`; the cases: `tests/faults/test_fault_*.py`, `CASES`). A case "
            "passes when no traceback is printed, nothing is written outside its output folders, no data is lost, "
            "a resume works, and the command either succeeds with a verified result or fails with a message naming "
            "the file or value and what to do. Without `--extended` the slow cases are left out; without "
            "`--fault-report` the same cases run as tests and no table is written.")


def pytest_sessionfinish(session) -> None:
    """With ``--fault-report FILE``: write the table of the cases that ran (in group order)."""
    target = session.config.getoption("fault_report", None)
    records: list[Record] = session.config.stash.get(RECORDS, [])
    if not target or not records:
        return
    records = sorted(records, key=lambda r: GROUPS.index(r.case.group))  # stable: declaration order in a group
    seconds = sum(r.seconds for r in records)
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_report(records, _header(session.config), seconds))
