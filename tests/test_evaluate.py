"""`avaffect evaluate`: reproduces the run's validation scores, writes predictions/metrics/plots, test split
without scores, post-processing fitted on validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from avaffect.config import make_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.errors import AvaffectError
from avaffect.evaluation.postprocess import PostProcessor
from avaffect.training.run import train
from avaffect.workflows.evaluate import evaluate_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(synth_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalrun")
    cfg = make_config({
        "data": {"root": str(synth_root)},
        "features": {"store": str(tmp / "store")},
        "model": {"name": "rjca", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "batch_size": 4, "max_epochs": 1, "accelerator": "cpu"},
        "postprocess": {"max_delay": 10, "windows": [1, 5, 15]},
    })
    train(cfg, tmp / "run", progress=False)
    return tmp / "run"


def test_evaluate_reproduces_the_run_validation_metrics(run_dir, synth_root):
    saved = json.loads((run_dir / "metrics.json").read_text())
    res = evaluate_run(run_dir, "validation", max_plots=1)
    assert res.out_dir == run_dir / "eval" / "validation"
    for k, v in saved["overall"].items():
        assert res.overall[k] == pytest.approx(v, abs=1e-6), k
    assert set(res.per_recording) == set(saved["per_recording"])
    for name, scores in saved["per_recording"].items():
        assert res.per_recording[name]["p_va"] == pytest.approx(scores["p_va"], abs=1e-6)
    written = json.loads((res.out_dir / "metrics.json").read_text())
    assert written["overall"]["p_va"] == pytest.approx(saved["overall"]["p_va"], abs=1e-6)
    assert written["protocol"] == "global" and written["postprocess"] is None
    val = sorted(r.name for r in load_affwild2(synth_root) if r.split == "validation")
    for name in val:
        csv = pd.read_csv(res.out_dir / f"{name}.csv")
        assert list(csv.columns) == ["frame", "time", "valence", "arousal", "label_valence", "label_arousal"]
        run_csv = pd.read_csv(run_dir / "predictions" / "validation" / f"{name}.csv")
        np.testing.assert_allclose(csv[["valence", "arousal"]], run_csv[["valence", "arousal"]], atol=1e-5)
    assert len(list((res.out_dir / "plots").glob("*.png"))) == 1
    # the other protocol is the mean of the per-recording scores
    per = evaluate_run(run_dir, "validation", protocol="per_recording", max_plots=0)
    assert per.overall["ccc_valence"] == pytest.approx(
        np.mean([s["ccc_valence"] for s in per.per_recording.values()]))


def test_test_split_has_predictions_only(run_dir, synth_root):
    res = evaluate_run(run_dir, "test", max_plots=1)
    assert res.overall is None
    name = next(r.name for r in load_affwild2(synth_root) if r.split == "test")
    csv = pd.read_csv(res.out_dir / f"{name}.csv")
    assert list(csv.columns) == ["frame", "time", "valence", "arousal"]
    assert csv[["valence", "arousal"]].notna().all().all()
    written = json.loads((res.out_dir / "metrics.json").read_text())
    assert "overall" not in written and written["recordings"] == [name]
    assert (res.out_dir / "plots" / f"{name}.png").is_file()


def test_postprocess_is_fitted_on_validation_and_applied(run_dir, synth_root):
    raw = evaluate_run(run_dir, "validation", max_plots=0)
    res = evaluate_run(run_dir, "train", postprocess=True, max_plots=0)  # fitted on validation, applied to train
    stored = json.loads((run_dir / "postprocess.json").read_text())
    val_labels = {r.name: r.labels for r in load_affwild2(synth_root) if r.split == "validation"}
    expected = PostProcessor(config=make_config({"postprocess": stored["config"]}).postprocess).fit(
        raw.predictions, val_labels)
    assert stored == json.loads(json.dumps(expected.to_dict()))
    written = json.loads((res.out_dir / "metrics.json").read_text())
    assert written["postprocess"]["delay"] == stored["delay"]
    # the train-split outputs are the raw train predictions through the stored chain
    plain = evaluate_run(run_dir, "train", max_plots=0)
    pp = PostProcessor.from_dict(stored)
    for n, p in plain.predictions.items():
        np.testing.assert_allclose(res.predictions[n], pp.apply(p), atol=1e-6)
    assert written["overall_raw"]["p_va"] == pytest.approx(plain.overall["p_va"], abs=1e-6)


def test_evaluate_cli(run_dir, capsys):
    from avaffect.cli.main import main

    assert main(["evaluate", str(run_dir), "--split", "validation", "--postprocess", "-q", "--max-plots", "0"]) == 0
    out = capsys.readouterr().out
    assert "p_va" in out and "eval" in out and "optimistic" in out  # fitted on the split it reports: said so
    written = json.loads((run_dir / "eval" / "validation" / "metrics.json").read_text())
    assert "optimistic" in written["note_postprocess"] and "overall_raw" in written
    assert main(["evaluate", str(run_dir), "--split", "validation", "-q", "--max-plots", "0"]) == 0
    assert (run_dir / "eval" / "validation" / "metrics.previous.json").is_file()  # not silently overwritten
    assert main(["evaluate", str(run_dir.parent / "nothing"), "-q"]) == 2
    with pytest.raises(AvaffectError, match="neither a finished run"):
        from avaffect.workflows.evaluate import evaluate_path

        evaluate_path(run_dir.parent)
