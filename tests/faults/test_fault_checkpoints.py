"""Damaged, foreign or planted checkpoints and run folders: refused with the file named, never unpickled."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from avaffect.config import dump_config, make_config
from avaffect.models.checkpoint import FORMAT
from avaffect.models.safetensors_io import read_tagged_metadata, write_tagged
from avaffect.training.run import CONFIG_FILE, METRICS_FILE, MODEL_FILE


def _rewrite(src, dst, meta_update=None, drop=()):
    from safetensors.torch import load_file

    meta = read_tagged_metadata(src, FORMAT, "", "")
    meta = {k: v for k, v in (meta | (meta_update or {})).items() if k not in drop}
    return write_tagged(dst, load_file(str(src)), meta)


class _Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path, marker):
    torch.save({"state_dict": {"w": _Planted(marker)}}, path)
    marker.unlink(missing_ok=True)
    return path


def test_a_text_file_as_checkpoint_is_refused(cli, clip, tmp_path):
    (tmp_path / "model.safetensors").write_text("trust me\n" * 20)
    r = cli("predict", tmp_path / "model.safetensors", clip, "--out", tmp_path / "out")
    assert r.rc == 2 and "model.safetensors" in r.err and "not a safetensors file" in r.err


def test_a_truncated_checkpoint_is_refused(cli, checkpoint, clip, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    r = cli("predict", tmp_path / "model.safetensors", clip, "--out", tmp_path / "out")
    assert r.rc == 2 and "model.safetensors" in r.err


def test_another_format_tag_is_refused(cli, checkpoint, clip, tmp_path):
    path = _rewrite(checkpoint, tmp_path / "model.safetensors", {"format": "someone-else-2"})
    r = cli("predict", path, clip, "--out", tmp_path / "out")
    assert r.rc == 2 and "someone-else-2" in r.err and "convert-official" in r.err


@pytest.mark.parametrize("entry, damage", [
    ("model", lambda text: text[:-7]), ("preprocessing", lambda text: text[:20]), ("model", None),
], ids=["model-json-cut", "preprocessing-json-cut", "model-entry-missing"])
def test_broken_checkpoint_metadata_is_a_message(cli, checkpoint, clip, tmp_path, entry, damage):
    meta = read_tagged_metadata(checkpoint, FORMAT, "", "")
    if damage is None:
        path = _rewrite(checkpoint, tmp_path / "model.safetensors", drop=(entry,))
    else:
        path = _rewrite(checkpoint, tmp_path / "model.safetensors", {entry: damage(meta[entry])})
    r = cli("predict", path, clip, "--out", tmp_path / "out")
    assert r.rc == 2 and "model.safetensors" in r.err


def test_a_pickle_given_as_checkpoint_never_runs(cli, clip, tmp_path):
    marker = tmp_path / "PWNED"
    path = _plant(tmp_path / "model.pth", marker)
    r = cli("predict", path, clip, "--out", tmp_path / "out")
    assert r.rc == 2 and "model.pth" in r.err and not marker.exists()


def test_evaluate_on_a_folder_that_is_no_run(cli, tmp_path):
    (tmp_path / "notarun").mkdir()
    r = cli("evaluate", tmp_path / "notarun", "-q")
    assert r.rc == 2 and "notarun" in r.err and "model.safetensors" in r.err


def _fake_run(folder, checkpoint, root):
    folder.mkdir(parents=True)
    shutil.copy(checkpoint, folder / MODEL_FILE)
    cfg = make_config({"data": {"root": str(root)}, "model": {"name": "concat", "params": {"hidden": 4}},
                       "training": {"window": 30, "hop": 15}})
    (folder / CONFIG_FILE).write_text(dump_config(cfg))
    (folder / METRICS_FILE).write_text(json.dumps({"overall": {"p_va": 0.1}, "per_recording": {}}))
    return folder


def test_postprocessing_a_fold_ensemble_is_refused(cli, checkpoint, tmp_path):
    for k in (0, 1):
        _fake_run(tmp_path / "cv" / f"fold{k}" / "seed0", checkpoint, tmp_path / "ds")
    r = cli("evaluate", tmp_path / "cv", "--postprocess", "-q")
    assert r.rc == 2 and "fold ensemble" in r.err and not (tmp_path / "cv" / "ensemble").exists()


def test_a_planted_model_file_in_a_run_never_runs(cli, checkpoint, tmp_path):
    run = _fake_run(tmp_path / "run", checkpoint, tmp_path / "ds")
    marker = tmp_path / "PWNED"
    _plant(run / MODEL_FILE, marker)
    r = cli("evaluate", run, "-q")
    assert r.rc == 2 and "model.safetensors" in r.err and not marker.exists()


def test_a_truncated_metrics_file_of_a_finished_run_is_named(cli, checkpoint, tmp_path):
    run = _fake_run(tmp_path / "run", checkpoint, tmp_path / "ds")
    (run / METRICS_FILE).write_text('{"overall": {"p_va": 0.')
    r = cli("train", tmp_path / "ds", "--config", run / CONFIG_FILE, "--out", run, "-q")
    assert r.rc == 2 and "metrics.json" in r.err


def test_a_corrupt_run_config_is_named(cli, checkpoint, tmp_path):
    run = _fake_run(tmp_path / "run", checkpoint, tmp_path / "ds")
    (run / CONFIG_FILE).write_text("data: [unclosed\n")
    r = cli("evaluate", run, "-q")
    assert r.rc == 2 and "config.yaml" in r.err
    assert yaml.safe_load((run / METRICS_FILE).read_text())  # the run's results are untouched


def test_ctrl_c_during_training_says_it_was_interrupted(cli, tmp_path, monkeypatch):
    import csv as _csv

    from faultkit import ann_text
    from mediafiles import write_test_video

    from avaffect.training.module import AffectRegressionModule

    root = tmp_path / "man"
    rows = [["recording", "video", "labels", "split"]]
    for name, split in (("t1", "train"), ("t2", "train"), ("v1", "validation")):
        write_test_video(root / f"{name}.mp4", 40)
        (root / f"{name}.csv").write_text(ann_text(40))
        rows.append([name, f"{name}.mp4", f"{name}.csv", split])
    with open(root / "manifest.csv", "w", newline="") as fh:
        _csv.writer(fh).writerows(rows)
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
