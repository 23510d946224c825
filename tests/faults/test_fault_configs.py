"""Careless configs and command lines: refused before any work, with the key or value that is wrong."""

from __future__ import annotations

import os

import pytest
from faultchecks import (
    check_run,
    check_store,
    copy_run,
    fingerprint,
    kept,
    link_shared,
    only_if_ok,
    train_step,
    val_frames,
)
from faultkit import OK, TINY_YAML, Cases, Found, Step
from mediafiles import decoded_frames, write_test_video

CASES = Cases("configs")
TINY = "model: {name: concat, params: {hidden: 8, head_hidden: 8}}\ntraining: {window: 60, hop: 30, max_epochs: 1}\n"


def config_case(cid: str, what: str, yaml_text: str | None, names, extra=None, show: bool = False,
                extended: bool = False) -> None:
    """A case: a bad config ``yaml_text`` (None: the tiny one) or bad ``extra`` options given to ``train`` (or,
    ``show``, to ``config show``: the same validation, a lighter command)."""
    def build(d, s):
        if yaml_text is not None:
            (d / "bad.yaml").write_text(yaml_text)
        if show:
            return Step(["config", "show", "bad.yaml", *(extra or [])], names=names)
        return train_step(d, s, "bad.yaml" if yaml_text is not None else "tiny.yaml", extra, names=names)
    CASES.add(cid, what + (" (config show)" if show else ""), build, extended)


config_case("C01-list", "a config YAML that is a list", "- model\n- training\n", ("bad.yaml",), extended=True)
config_case("C02-invalid-yaml", "a config that is not valid YAML", "model: {name: concat\ntraining: [1, 2\n",
            ("bad.yaml",), show=True)
config_case("C03-unknown-section", "an unknown section (trainig:)", TINY_YAML + "trainig: {lr: 0.1}\n",
            ("trainig",), show=True, extended=True)
config_case("C04-unknown-model", "an unknown model name",
            "model: {name: transformerXL}\ntraining: {window: 60, hop: 30}\n", ("transformerXL",), show=True)
config_case("C05-param-typo", "a typo in model.params (hiden)",
            "model: {name: concat, params: {hiden: 8}}\ntraining: {window: 60, hop: 30, max_epochs: 1}\n", ("hiden",),
            extended=True)
config_case("C06-window-length", "model.params.window_length that disagrees with training.window",
            "model: {name: rjca, params: {window_length: 100}}\ntraining: {window: 60, hop: 30, max_epochs: 1}\n",
            ("window_length",), show=True, extended=True)
config_case("C07-zero-epochs", "--max-epochs 0", None, ("max_epochs",), ["--max-epochs", "0"], extended=True)
config_case("C08-set-without-equals", "--set without = (training.max_epochs 5)", None,
            ("--set", "training.max_epochs"), ["--set", "training.max_epochs"], extended=True)
config_case("C09-set-into-scalar", "--set into a scalar (training.window.size=3)", None, ("window",),
            ["--set", "training.window.size=3"], extended=True)
config_case("C10-set-wrong-type", "--set with a value of the wrong type (training.max_epochs=many)", None,
            ("max_epochs",), ["--set", "training.max_epochs=many"], extended=True)
config_case("C11-set-unknown-section", "--set into an unknown section (optimiser.lr=0.1)", None, ("optimiser",),
            ["--set", "optimiser.lr=0.1"], extended=True)
config_case("C12-missing-config", "a --config file that does not exist", None, ("nosuch.yaml",),
            ["--config", "nosuch.yaml"], extended=True)
config_case("C13-unknown-dataset", "an unknown dataset kind (data.dataset: affwild3)",
            TINY_YAML + "data: {dataset: affwild3}\n", ("affwild3",), show=True, extended=True)
config_case("C14-unknown-target", "an unknown target (training.targets: [happiness])",
            "model: {name: concat, params: {hidden: 8}}\ntraining: {window: 60, hop: 30, targets: [happiness]}\n",
            ("happiness",), extended=True)
config_case("C15-zero-window", "training.window: 0",
            "model: {name: concat, params: {hidden: 8}}\ntraining: {window: 0, hop: 30}\n", ("window",), show=True,
            extended=True)
config_case("C16-fold-out-of-range", "--folds 9 with 6 folds", None, ("9", "folds"), ["--folds", "9"], extended=True)
config_case("C17-folds-abc", "--folds abc", None, ("abc",), ["--folds", "abc"], extended=True)
config_case("C18-zero-seeds", "--seeds 0", None, ("seeds",), ["--seeds", "0"], extended=True)
config_case("C19-unknown-model-option", "--model that does not exist", None, ("nosuchmodel",),
            ["--model", "nosuchmodel"], extended=True)
config_case("C20-zero-workers-in-config", "features.workers: 0 in the config", TINY_YAML + "features: {workers: 0}\n",
            ("workers",), extended=True)
config_case("C34-zero-folds", "--num-folds 0", None, ("num_folds", "num-folds"), ["--num-folds", "0", "--folds", "all"],
            extended=True)


@CASES("C21-missing-dataset", "train on a dataset root that does not exist", extended=True)
def c21(d, s):
    return train_step(d, s, root="no_dataset", names=("no_dataset",))


@CASES("C22-out-is-a-file", "--out that is an existing file", extended=True)
def c22(d, s):
    (d / "runfile").write_text("not a folder")
    before = fingerprint([d / "runfile"])
    step = train_step(d, s, names=("runfile",), verify=lambda ran: kept(before, "the file"))
    step.argv[step.argv.index("run")] = "runfile"
    return step


@CASES("C23-out-not-writable", "an unwritable --out folder (chmod 0500)", extended=True)
def c23(d, s):
    locked = d / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    if os.access(locked, os.W_OK):
        return Step([], skip="skipped: running as root, the folder stays writable")
    step = train_step(d, s, names=("locked",))
    step.argv[step.argv.index("run")] = "locked/run"
    step.allowed = (locked,)
    return step


@CASES("C24-gpu-without-gpu", "accelerator: gpu on a machine without a GPU", extended=True)
def c24(d, s):
    link_shared(d, s)
    (d / "gpu.yaml").write_text(TINY_YAML.replace("accelerator: cpu", "accelerator: gpu"))
    if s.cuda:
        return train_step(d, s, "gpu.yaml", expect=OK, verify=only_if_ok(lambda ran: check_run(d / "run")))
    return train_step(d, s, "gpu.yaml", names=("accelerator", "gpu", "cuda"))


def extract_case(cid: str, what: str, args: list[str], names, extended: bool = False) -> None:
    """A case: ``extract`` a folder of one clip with the bad options ``args``."""
    def build(d, s):
        write_test_video(d / "media" / "clip.mp4", 20)
        return Step(["extract", "media", "--out", "store", *args, "-q"], names=names, allowed=(d / "store",))
    CASES.add(cid, what, build, extended)


extract_case("C25-negative-workers", "extract --workers -1", ["--workers", "-1"], ("--workers", "-1"))


@CASES("C26-workers-per-core", "extract --workers 0 (= one per core) on a folder of two videos", extended=True)
def c26(d, s):
    frames = {name: decoded_frames(write_test_video(d / "media" / f"{name}.mp4", n)) for name, n in (("a", 20),
                                                                                                     ("b", 24))}
    return Step(["extract", "media", "--out", "store", "--workers", "0", "-q"], OK, (), (d / "store",),
                verify=only_if_ok(lambda ran: check_store(d / "store", frames)))


extract_case("C27-shard-3-of-2", "extract --shard 3/2", ["--shard", "3/2"], ("3/2", "--shard"), extended=True)
extract_case("C28-shard-abc", "extract --shard abc", ["--shard", "abc"], ("abc", "--shard"), extended=True)


@CASES("C29-missing-extract-root", "extract a root that does not exist", extended=True)
def c29(d, s):
    return Step(["extract", "no_such_folder", "--out", "store", "-q"], names=("no_such_folder",),
                allowed=(d / "store",))


@CASES("C30-paper-config-no-weights",
       "a shipped paper config (rja_blstm/full) without its weights: refused before any work", extended=True)
def c30(d, s):
    def verify(ran):
        found = Found(note="missing weights listed, no run folder")
        if (d / "run").exists():
            found.wrong.append("the run folder was created although nothing could be done")
        if "resnet18" not in ran.err.lower() and "resnet18" not in ran.out.lower():
            found.wrong.append("the missing weight files are not listed")
        return found
    step = train_step(d, s, "rja_blstm/full", names=("weights", "resnet18"), verify=verify)
    step.allowed = ()
    return step


@CASES("C31-paper-config-weight-free", "the same paper config with --weight-free (1 epoch)", extended=True)
def c31(d, s):
    frames = val_frames(s)
    step = train_step(d, s, "rja_blstm/full", ["--weight-free", "--max-epochs", "1", "--set", "features.store=store"],
                      OK, verify=only_if_ok(lambda ran: check_run(d / "run", frames=frames)))
    step.allowed, step.timeout = (d / "run", d / "store"), 300
    return step


@CASES("C32-missing-paper-config", "config show of a paper config that does not exist", extended=True)
def c32(d, s):
    return Step(["config", "show", "rja_blstm/fulll"], names=("rja_blstm/fulll", "fulll"))


@CASES("C33-unknown-split", "evaluate --split with an unknown split", extended=True)
def c33(d, s):
    copy_run(d, s)
    return Step(["evaluate", "run", "--split", "holdout"], names=("holdout",), allowed=(d / "run",))


@pytest.mark.parametrize("case", CASES.params())
def test_configs_case(case, fault_case):
    """Each configs case, declared above."""
    fault_case(case)


# =================================================================================================== in-process


@pytest.mark.parametrize("text, needle", [
    (TINY + "end_to_end: {enabled: true}\n", "fine-tunes a face ResNet"),
    (TINY + "features: {video: {name: resnet18_face}, audio: {name: vggish}}\n"
     "end_to_end: {enabled: true, video: {unfreeze: {layer5: 0}}}\n", "layer5"),
    (TINY + "features: {video: {name: resnet18_face}, audio: {name: vggish}}\n"
     "end_to_end: {enabled: true, release: plateau, release_patience: 9}\n", "release_patience"),
], ids=["e2e-frozen-features", "e2e-unknown-group", "e2e-patience"])
def test_a_bad_end_to_end_config_is_refused_naming_the_file_and_the_key(cli, tmp_path, text, needle):
    (tmp_path / "bad.yaml").write_text(text)
    r = cli("config", "show", tmp_path / "bad.yaml")
    assert r.rc == 2 and "bad.yaml" in r.err and needle in r.err and r.out == ""


@pytest.mark.parametrize("text, meant", [
    (TINY + "trainig: {lr: 0.1}\n", "training"),
    ("model: {name: concat, params: {hiden: 8}}\n", "hidden"),
], ids=["section", "model-param"])
def test_an_unknown_key_message_says_which_keys_are_allowed(cli, tmp_path, text, meant):
    (tmp_path / "bad.yaml").write_text(text)
    r = cli("config", "show", tmp_path / "bad.yaml")
    assert r.rc == 2 and meant in r.err


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux sysfs")
@pytest.mark.parametrize("command", ["extract", "train"])
def test_an_out_nobody_can_write_is_a_message(cli, tmp_path, synth_root, command):
    """``/sys`` refuses new entries even to root (a chmod-ed folder would not, under CI's root)."""
    write_test_video(tmp_path / "media" / "clip.mp4", 10)
    args = {"extract": ("extract", tmp_path / "media"),
            "train": ("train", synth_root, "--config", tmp_path / "tiny.yaml", "--set",
                      f"features.store={tmp_path / 'nostore'}")}[command]
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = cli(*args, "--out", "/sys/avaffect-no-such-output", "-q")
    assert r.rc == 2 and "avaffect: error: /sys/avaffect-no-such-output" in r.err and "Traceback" not in r.err
