"""The command line: the demo end to end on a tiny synthetic set, models listing, error reporting."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shareddata import GOLDEN_OFFICIAL, require

from avaffect.cli.main import main
from avaffect.config import make_config
from avaffect.errors import ConfigError
from avaffect.workflows.demo import demo_config_dict, demo_jobs

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "-q", "--max-epochs", "2", "--n-train", "4", "--n-val", "2",
            "--duration-s", "6"]
    assert main([*args, "--jobs", "2"]) == 0  # two models at once, a process each
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"audio_only", "video_only", "concat", "rjca"}
    for m in metrics.values():
        assert set(m) == {"ccc_valence", "ccc_arousal", "p_va"}
        assert -1 <= m["p_va"] <= 1
    report = (out / "report.md").read_text()
    assert "| rjca |" in report and "plots/rjca.png" in report
    assert (out / "plots" / "rjca.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "P_VA" in printed
    # re-running reuses everything and gives the same numbers
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    # two of them trained one after the other in this process, on the same data: the same numbers to the bit
    alone = tmp_path / "alone"
    shutil.copytree(out / "data", alone / "data")
    assert main([*args[:2], str(alone), *args[3:], "--jobs", "1", "--models", "video_only", "rjca"]) == 0
    assert json.loads((alone / "metrics.json").read_text()) == {k: metrics[k] for k in ("video_only", "rjca")}


def test_demo_jobs(monkeypatch):
    cfg = make_config(demo_config_dict())
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for where in ("avaffect.workflows.demo.usable_cores", "avaffect.threads.usable_cores"):
        monkeypatch.setattr(where, lambda: 2)
    assert demo_jobs(cfg, 4) == 2 and demo_jobs(cfg, 1) == 1 and demo_jobs(cfg, 4, 3) == 3
    for where in ("avaffect.workflows.demo.usable_cores", "avaffect.threads.usable_cores"):
        monkeypatch.setattr(where, lambda: 16)
    assert demo_jobs(cfg, 4) == 2  # 8 threads a run (auto: half the cores)
    assert demo_jobs(cfg.model_copy(update={"training": cfg.training.model_copy(update={"cpu_threads": 4})}),
                     4) == 4
    gpu = cfg.model_copy(update={"training": cfg.training.model_copy(update={"accelerator": "gpu"})})
    assert demo_jobs(gpu, 4) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own thread count: one run at a time
    assert demo_jobs(cfg, 4) == 1
    with pytest.raises(ConfigError, match="--jobs"):
        demo_jobs(cfg, 4, 0)


def test_models_lists_presets(capsys):
    assert main(["models", "--d-audio", "16", "--d-video", "32", "--window", "20"]) == 0
    out = capsys.readouterr().out
    for name in ("audio_only", "video_only", "concat", "rjca"):
        assert name in out


def test_errors_are_reported_without_traceback(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "annotation folder not found" in err and "Traceback" not in err



def test_convert_official_cli(tmp_path, capsys):
    import torch

    from avaffect.models.official import load_converted

    golden_path = require(GOLDEN_OFFICIAL, "the golden outputs of the authors' modules")
    entry = torch.load(golden_path, weights_only=True)["jca_tbiom23"]
    ckpt = tmp_path / "authors.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in entry["state_dict"].items()}}, ckpt)
    assert main(["convert-official", str(ckpt), "--variant", "jca_tbiom23", "--out", str(tmp_path / "out")]) == 0
    model = load_converted(tmp_path / "out" / "model.safetensors")
    assert not model.training
    assert main(["convert-official", str(ckpt), "--variant", "dca_icme24", "--out", str(tmp_path / "x")]) == 2
    assert "dca_icme24" in capsys.readouterr().err


def test_bench_media_reports_rates(crema_d, capsys):
    clip = sorted(crema_d.glob("*.flv"))[0]
    assert main(["bench", "media", str(clip), "--extractors", "logmel_stats", "face_hog"]) == 0
    out = capsys.readouterr().out
    assert "decode video" in out and "extractor face_hog" in out and "frames/s" in out


def test_help_imports_no_heavy_library():
    """`avaffect --help` (and building the parser of any command) must not import torch, Lightning, the media
    libraries (OpenCV; PyAV, 50 ms, is allowed) or SciPy: together they cost seconds before anything is printed."""
    code = ("import sys; from avaffect.cli.main import build_parser; build_parser(); "
            "print(','.join(m for m in ('torch', 'lightning', 'torchvision', 'cv2', 'scipy', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"building the CLI parser imported: {out}"


def test_config_list_imports_no_torch_and_lists_every_shipped_row():
    """`avaffect config list` reads the shipped configs' paper blocks without validating them (validation builds
    the model's typed parameters, which imports torch): it starts in well under a second."""
    code = ("import sys, io, contextlib; from avaffect.cli.main import main; buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): main(['config', 'list'])\n"
            "print(len(buf.getvalue().splitlines())); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from avaffect.config import load_config
    from avaffect.shipped import paper_config_names

    names = paper_config_names()
    assert out == [str(len(names)), "False"]
    first = load_config(names[0]).paper  # the raw block says what the validated config says
    from avaffect.shipped import paper_block

    assert (paper_block(names[0])["table"], paper_block(names[0])["row"]) == (first.table, first.row)


def test_a_closed_pipe_ends_the_output_quietly():
    code = "from avaffect.cli.main import main; raise SystemExit(main(['config', 'list']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "error" not in err and "Traceback" not in err
