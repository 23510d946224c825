"""Damaged, foreign or planted checkpoints and run folders: refused with the file named, never unpickled; an
interrupted run resumes; a finished run is never lost."""

from __future__ import annotations

import csv
import pickle
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from faultchecks import (
    check_eval,
    check_run,
    copy_run,
    fingerprint,
    kept,
    link_shared,
    only_if_ok,
    predict_step,
    read_csv_rows,
    resumable_train,
    train_step,
    val_frames,
)
from faultkit import EITHER, OK, TINY_YAML, Cases, Found, Interrupt, Step
from mediafiles import ann_text, truncate, write_random_bytes, write_test_video

CASES = Cases("checkpoints")


# ------------------------------------------------------------------------------------------------ checkpoint files


def st_load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata of a safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def damaged_checkpoint(d: Path, s, damage) -> Path:
    """The shared model rewritten as ``d/model.safetensors`` with ``damage(tensors, metadata)``."""
    from safetensors.numpy import save_file

    tensors, meta = damage(*st_load(s.model))
    save_file(tensors, str(d / "model.safetensors"), metadata=meta)
    return d / "model.safetensors"


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _nan_weights(t, m):
    k = next(k for k in t if k.endswith("weight"))
    t[k] = np.full_like(t[k], np.nan)
    return t, m


def checkpoint_case(cid: str, what: str, make, names=("model.safetensors",), extended: bool = False) -> None:
    """A case: ``predict`` a clip with the checkpoint ``make(folder, shared)`` writes."""
    def build(d, s):
        ckpt = make(d, s)
        shutil.copy(s.video, d / "clip.mp4")
        return predict_step(d, s, ["clip.mp4"], names=names, checkpoint=ckpt)
    CASES.add(cid, what, build, extended)


checkpoint_case("K01-text-file", "a text file named model.safetensors",
                lambda d, s: _bytes(d / "model.safetensors", b"weights: trust me\n" * 10))
checkpoint_case("K02-truncated", "a truncated checkpoint (first half)",
                lambda d, s: truncate(Path(shutil.copy(s.model, d / "model.safetensors")), 0.5), extended=True)
checkpoint_case("K03-other-format", "a safetensors file with another format tag",
                lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, m | {"format": "someone-else-2"})),
                ("model.safetensors", "someone-else-2"), extended=True)
checkpoint_case("K04-nan-weights", "NaN weights", lambda d, s: damaged_checkpoint(d, s, _nan_weights))
checkpoint_case("K05-other-shapes", "another model's weights (other shapes) under the same metadata",
                lambda d, s: damaged_checkpoint(d, s, lambda t, m: ({k: np.zeros((v.shape[0] + 1, *v.shape[1:]),
                                                                                  v.dtype) if "net." in k else v
                                                                     for k, v in t.items()}, m)), extended=True)
checkpoint_case("K06-renamed-keys", "weights with renamed keys under the same metadata",
                lambda d, s: damaged_checkpoint(d, s, lambda t, m: ({k.replace("net.", "model."): v
                                                                     for k, v in t.items()}, m)), extended=True)
checkpoint_case("K07-model-json-cut", "broken JSON in the model metadata",
                lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, m | {"model": m["model"][:-7]})), extended=True)
checkpoint_case("K08-preprocessing-json-cut", "broken JSON in the preprocessing metadata",
                lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, m | {"preprocessing":
                                                                            '{"version": 2, "window"'})), extended=True)
checkpoint_case("K09-no-model-entry", "metadata without the model entry",
                lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, {k: v for k, v in m.items() if k != "model"})),
                extended=True)
checkpoint_case("K10-zero-bytes", "a zero-byte checkpoint", lambda d, s: _bytes(d / "model.safetensors", b""),
                extended=True)
checkpoint_case("K11-folder", "the checkpoint path is a folder",
                lambda d, s: (d / "model.safetensors").mkdir() or d / "model.safetensors", extended=True)
checkpoint_case("K12-unknown-preset", "model metadata naming an unknown preset",
                lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, m | {"model": m["model"].replace("concat",
                                                                                                        "gpt9")})),
                ("model.safetensors", "gpt9"), extended=True)


# ------------------------------------------------------------------------------------------------ planted pickles


class _Planted:
    """Unpickling this creates the marker file (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_pickle(path: Path, marker: Path, torch_zip: bool = True) -> Path:
    """A checkpoint-looking file that runs code when unpickled: torch's zip format (torch.save) or a plain pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": {"w": _Planted(marker)}, "epoch": 0, "global_step": 1}
    if torch_zip:
        import torch

        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    marker.unlink(missing_ok=True)
    return path


@CASES("K13-pickle-as-checkpoint", "a pickle that runs code given to predict as the checkpoint (.pth)")
def k13(d, s):
    ckpt = plant_pickle(d / "model.pth", d / "PWNED")
    shutil.copy(s.video, d / "clip.mp4")
    step = predict_step(d, s, ["clip.mp4"], names=("model.pth",), checkpoint=ckpt)
    step.marker = d / "PWNED"
    return step


def interrupted_run_case(cid: str, what: str, damage, expect: str = EITHER, names=("last.ckpt",),
                         extended: bool = True) -> None:
    """A case: train again over a copy of the shared run as if interrupted after its last epoch, once
    ``damage(run, marker)`` changed its checkpoints; a success must finish the run right."""
    def build(d, s):
        run = copy_run(d, s, finished=False)
        damage(run, d / "PWNED")
        frames = val_frames(s)
        step = train_step(d, s, expect=expect, names=names, verify=only_if_ok(lambda ran: check_run(run,
                                                                                                  frames=frames)))
        step.marker = d / "PWNED"
        return step
    CASES.add(cid, what, build, extended)


interrupted_run_case("K14-pickle-as-last-ckpt", "a planted pickle as checkpoints/last.ckpt of an interrupted run",
                     lambda run, marker: plant_pickle(run / "checkpoints" / "last.ckpt", marker), OK, extended=True)
interrupted_run_case("K15-pickle-as-best-ckpt",
                     "a planted pickle as checkpoints/best-epoch=000.ckpt of an interrupted run",
                     lambda run, marker: plant_pickle(run / "checkpoints" / "best-epoch=000.ckpt", marker),
                     names=("best-epoch=000.ckpt",), extended=True)
interrupted_run_case("K17-truncated-last-ckpt", "a truncated checkpoints/last.ckpt of an interrupted run",
                     lambda run, marker: truncate(run / "checkpoints" / "last.ckpt", 1 / 3), extended=True)
interrupted_run_case("K18-random-last-ckpt", "random bytes as checkpoints/last.ckpt of an interrupted run",
                     lambda run, marker: write_random_bytes(run / "checkpoints" / "last.ckpt", 20000), extended=True)


@CASES("K16-planted-then-advice", "planted best-epoch=000.ckpt, then the message's advice followed (delete it, rerun)",
       extended=True)
def k16(d, s):
    run = copy_run(d, s, finished=False)
    best = plant_pickle(run / "checkpoints" / "best-epoch=000.ckpt", d / "PWNED", torch_zip=False)
    step = resumable_train(d, s, run, ("best-epoch=000.ckpt",), lambda: best.unlink(missing_ok=True))
    step.marker = d / "PWNED"
    return step


# ------------------------------------------------------------------------------------------------ run folders


@CASES("K19-resume-other-config", "resuming an interrupted run with another config (--set training.lr=0.5)",
       extended=True)
def k19(d, s):
    copy_run(d, s, finished=False)
    return train_step(d, s, extra=["--set", "training.lr=0.5"], names=("run", "configuration"))


@CASES("K20-finished-other-config", "rerunning a finished run with another config", extended=True)
def k20(d, s):
    run = copy_run(d, s)
    before = fingerprint([run / "metrics.json", run / "model.safetensors"])
    return train_step(d, s, extra=["--set", "training.hop=20"], names=("run", "configuration"),
                      verify=lambda ran: kept(before, "the finished run"))


@CASES("K21-finished-same-config", "rerunning a finished run with the same config (must not redo or lose it)",
       extended=True)
def k21(d, s):
    run = copy_run(d, s)
    before = fingerprint([run / "metrics.json", run / "model.safetensors"])
    return train_step(d, s, expect=OK, verify=lambda ran: kept(before, "the finished run"))


@CASES("K22-truncated-metrics",
       "a finished run whose metrics.json is truncated, trained again (then: delete it, rerun)", extended=True)
def k22(d, s):
    run = copy_run(d, s)
    metrics = run / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])
    return resumable_train(d, s, run, ("metrics.json",), lambda: metrics.unlink(missing_ok=True))


@CASES("K23-not-a-run", "evaluate on a folder that is no run", extended=True)
def k23(d, s):
    (d / "notarun").mkdir()
    (d / "notarun" / "notes.txt").write_text("hello")
    return Step(["evaluate", "notarun", "-q"], names=("notarun",), allowed=(d / "notarun",))


@CASES("K24-missing-run", "evaluate on a folder that does not exist", extended=True)
def k24(d, s):
    return Step(["evaluate", "missing_run", "-q"], names=("missing_run",))


def fake_protocol(d: Path, s) -> Path:
    """``d/cv``: the shared run copied as two folds' runs (a fold ensemble)."""
    link_shared(d, s)
    for k in (0, 1):
        shutil.copytree(s.run, d / "cv" / f"fold{k}" / "seed0")
    return d / "cv"


@CASES("K25-postprocess-ensemble", "evaluate --postprocess on a fold ensemble", extended=True)
def k25(d, s):
    fake_protocol(d, s)
    return Step(["evaluate", "cv", "--postprocess", "-q"], names=("cv", "ensemble"), allowed=(d / "cv",))


@CASES("K26-evaluate-ensemble", "evaluate a fold ensemble (two fold runs)", extended=True)
def k26(d, s):
    fake_protocol(d, s)
    frames = val_frames(s)
    return Step(["evaluate", "cv", "--split", "validation", "-q"], OK, (), (d / "cv",),
                verify=only_if_ok(lambda ran: check_eval(d / "cv" / "ensemble" / "validation", frames)))


@CASES("K27-evaluate-twice", "evaluate a finished run twice (the first evaluation is kept)", extended=True)
def k27(d, s):
    run = copy_run(d, s)
    frames = val_frames(s)
    before = fingerprint([run / "metrics.json", run / "model.safetensors"])

    def verify_second(ran):
        found = check_eval(run / "eval" / "validation", frames) if ran.rc == 0 else Found()
        if not (run / "eval" / "validation" / "metrics.previous.json").is_file():
            found.lost.append("the first evaluation's metrics.json is gone")
        return found.add(kept(before, "the run"))
    then = Step(["evaluate", "run", "-q"], OK, (), (run,), verify=verify_second)
    return Step(["evaluate", "run", "-q"], OK, (), (run,), then=then,
                verify=only_if_ok(lambda ran: check_eval(run / "eval" / "validation", frames)))


@CASES("K28-corrupt-run-config", "evaluate a run whose config.yaml is corrupt", extended=True)
def k28(d, s):
    run = copy_run(d, s)
    (run / "config.yaml").write_text("data: [unclosed\n  model:: ::\n")
    return Step(["evaluate", "run", "-q"], names=("config.yaml",), allowed=(run,))


@CASES("K29-missing-root", "evaluate --root pointing to a folder that does not exist", extended=True)
def k29(d, s):
    copy_run(d, s)
    return Step(["evaluate", "run", "--root", "moved_away", "-q"], names=("moved_away",), allowed=(d / "run",))


@CASES("K30-pickle-as-model", "a planted pickle as model.safetensors of a finished run, evaluated")
def k30(d, s):
    run = copy_run(d, s)
    plant_pickle(run / "model.safetensors", d / "PWNED")
    return Step(["evaluate", "run", "-q"], names=("model.safetensors",), allowed=(run,), marker=d / "PWNED")


def interrupted_train(d: Path, s, sig: int) -> Step:
    """Train 3 epochs, send ``sig`` once the first checkpoint is written, then train again: 3 epochs in all."""
    link_shared(d, s)
    (d / "three.yaml").write_text(TINY_YAML.replace("max_epochs: 1", "max_epochs: 3"))
    run, frames = d / "run", val_frames(s)

    def verify(ran):
        found = check_run(run, frames=frames)
        epochs = run / "metrics_per_epoch.csv"
        if epochs.is_file() and len(read_csv_rows(epochs)[1]) < 3:
            found.wrong.append(f"metrics_per_epoch.csv has {len(read_csv_rows(epochs)[1])} epochs after the "
                               "resume, expected 3")
        return found
    step = train_step(d, s, "three.yaml", expect=EITHER, names=("interrupted",))
    step.interrupt = Interrupt(sig, lambda: (run / "checkpoints" / "last.ckpt").is_file(), 60)
    step.resume = train_step(d, s, "three.yaml", expect=OK, verify=verify)
    step.timeout = 200
    return step


CASES.add("K31-ctrl-c-train", "train interrupted with Ctrl-C after its first epoch, then resumed",
          lambda d, s: interrupted_train(d, s, signal.SIGINT), extended=True)
CASES.add("K32-kill-train", "train killed (SIGKILL) after its first epoch, then resumed",
          lambda d, s: interrupted_train(d, s, signal.SIGKILL), extended=True)


@pytest.mark.parametrize("case", CASES.params())
def test_checkpoints_case(case, fault_case):
    """Each checkpoints case, declared above."""
    fault_case(case)


# =================================================================================================== in-process


def test_ctrl_c_during_training_says_it_was_interrupted(cli, tmp_path, monkeypatch):
    """Ctrl-C inside a training step (in this process): exit 130 and the word, not a traceback."""
    from avaffect.training.module import AffectRegressionModule

    root = tmp_path / "man"
    rows = [["recording", "video", "labels", "split"]]
    for name, split in (("t1", "train"), ("t2", "train"), ("v1", "validation")):
        write_test_video(root / f"{name}.mp4", 40)
        (root / f"{name}.csv").write_text(ann_text(40))
        rows.append([name, f"{name}.mp4", f"{name}.csv", split])
    with open(root / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (tmp_path / "tiny.yaml").write_text(
        "data: {dataset: manifest}\nmodel: {name: concat, params: {hidden: 4, head_hidden: 4}}\n"
        f"features: {{store: {tmp_path / 'store'}}}\n"
        "training: {window: 20, hop: 10, max_epochs: 2, accelerator: cpu}\n")

    def interrupted(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(AffectRegressionModule, "training_step", interrupted)
    try:
        r = cli("train", root, "--config", tmp_path / "tiny.yaml", "--out", tmp_path / "run", "-q")
        rc, err = r.rc, r.err
    except SystemExit as e:  # what Lightning does on Ctrl-C
        rc, err = e.code, ""
    assert rc == 130 and "interrupted" in err
