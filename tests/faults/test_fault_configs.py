"""Careless configs and command lines: refused before any work, with the key or value that is wrong."""

from __future__ import annotations

import pytest
from mediafiles import write_test_video

TINY = "model: {name: concat, params: {hidden: 8, head_hidden: 8}}\ntraining: {window: 60, hop: 30, max_epochs: 1}\n"


@pytest.mark.parametrize("text, needle", [
    ("- model\n- training\n", "top level must be a mapping"),
    ("model: {name: concat\ntraining: [1, 2\n", "not valid YAML"),
    (TINY + "trainig: {lr: 0.1}\n", "trainig"),
    ("model: {name: transformerXL}\n", "transformerXL"),
    ("model: {name: concat, params: {hiden: 8}}\n", "hiden"),
    ("model: {name: rjca, params: {window_length: 100}}\ntraining: {window: 60}\n", "window_length"),
    (TINY + "data: {dataset: affwild3}\n", "affwild3"),
    (TINY + "end_to_end: {enabled: true}\n", "fine-tunes a face ResNet"),
    (TINY + "features: {video: {name: resnet18_face}, audio: {name: vggish}}\n"
     "end_to_end: {enabled: true, video: {unfreeze: {layer5: 0}}}\n", "layer5"),
    (TINY + "features: {video: {name: resnet18_face}, audio: {name: vggish}}\n"
     "end_to_end: {enabled: true, release: plateau, release_patience: 9}\n", "release_patience"),
], ids=["list", "invalid-yaml", "unknown-section", "unknown-model", "param-typo", "window-length", "dataset",
        "e2e-frozen-features", "e2e-unknown-group", "e2e-patience"])
def test_a_bad_config_file_is_refused_naming_the_file_and_the_key(cli, tmp_path, text, needle):
    (tmp_path / "bad.yaml").write_text(text)
    r = cli("config", "show", tmp_path / "bad.yaml")
    assert r.rc == 2 and "bad.yaml" in r.err and needle in r.err and r.out == ""


@pytest.mark.parametrize("sets, needle", [
    (["training.max_epochs"], "KEY=VALUE"),
    (["training.window.size=3"], "not a section"),
    (["training.max_epochs=many"], "max_epochs"),
], ids=["no-equals", "into-a-scalar", "wrong-type"])
def test_a_bad_set_is_refused(cli, tmp_path, sets, needle):
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = cli("config", "show", tmp_path / "tiny.yaml", *[x for s in sets for x in ("--set", s)])
    assert r.rc == 2 and needle in r.err


def test_max_epochs_zero_is_refused_before_any_work(cli, tmp_path, synth_root):
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = cli("train", synth_root, "--config", tmp_path / "tiny.yaml", "--max-epochs", "0", "--out", tmp_path / "run")
    assert r.rc == 2 and "max_epochs" in r.err and not (tmp_path / "run").exists()


def test_a_paper_config_without_its_weights_lists_them_before_any_work(cli, tmp_path, synth_root, monkeypatch):
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    r = cli("train", synth_root, "--config", "rja_blstm/full", "--out", tmp_path / "run", "--set",
            f"features.store={tmp_path / 'store'}")
    assert r.rc == 2 and "resnet18" in r.err and "--weight-free" in r.err
    assert not (tmp_path / "run").exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize("args, needle", [
    (["--workers", "-1"], "--workers"),
    (["--shard", "3/2"], "--shard"),
    (["--shard", "abc"], "--shard"),
], ids=["workers-negative", "shard-3-of-2", "shard-abc"])
def test_bad_extract_options_are_refused(cli, tmp_path, args, needle):
    write_test_video(tmp_path / "media" / "clip.mp4", 10)
    r = cli("extract", tmp_path / "media", "--out", tmp_path / "store", "-q", *args)
    assert r.rc == 2 and needle in r.err and not (tmp_path / "store").exists()


def test_an_out_that_is_a_file_is_a_message_and_the_file_is_kept(cli, tmp_path, synth_root):
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "runfile").write_text("keep me")
    r = cli("train", synth_root, "--config", tmp_path / "tiny.yaml", "--out", tmp_path / "runfile", "-q",
            "--set", f"features.store={tmp_path / 'nostore'}")
    assert r.rc == 2 and "avaffect: error:" in r.err
    assert (tmp_path / "runfile").read_text() == "keep me"


@pytest.mark.parametrize("text, meant", [
    (TINY + "trainig: {lr: 0.1}\n", "training"),
    ("model: {name: concat, params: {hiden: 8}}\n", "hidden"),
], ids=["section", "model-param"])
def test_an_unknown_key_message_says_which_keys_are_allowed(cli, tmp_path, text, meant):
    (tmp_path / "bad.yaml").write_text(text)
    r = cli("config", "show", tmp_path / "bad.yaml")
    assert r.rc == 2 and meant in r.err


@pytest.mark.skipif(not __import__("os").path.isdir("/sys/kernel"), reason="needs Linux sysfs")
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
