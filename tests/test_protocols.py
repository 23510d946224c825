"""Folds, multi-seed summaries, fold ensembling and the `train --folds/--seeds` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from avaffect.config import load_config
from avaffect.data.folds import Fold, assign_fold, make_folds, read_split
from avaffect.data.recording import Recording
from avaffect.errors import ConfigError
from avaffect.evaluation.ensemble import ensemble_predictions
from avaffect.training.protocols import parse_folds, seed_list
from avaffect.training.summary import summarize

REPO = Path(__file__).resolve().parents[1]


def _rec(name, split, subject, n=50, labelled=True):
    labels = np.random.default_rng(len(name)).uniform(-1, 1, (n, 2)) if labelled else np.full((n, 2), np.nan)
    return Recording(name=name, times=np.arange(n) / 30, labels=labels, face_mask=np.ones(n, bool), split=split,
                     subject=subject)


@pytest.fixture
def recordings():
    recs = []
    # 9 subjects; s0 and s5 have a left/right pair (two recordings, one subject), one recording has no subject
    for i in range(9):
        split = "validation" if i in (2, 6) else "train"
        if i in (0, 5):
            recs += [_rec(f"v{i}_left", split, f"v{i}", 40 + i), _rec(f"v{i}_right", split, f"v{i}", 60 + i)]
        else:
            recs.append(_rec(f"v{i}", split, f"v{i}", 30 + 10 * i))
    recs.append(_rec("anon", "train", None, 80))
    recs.append(_rec("unlabelled", "train", "u", 20, labelled=False))
    recs.append(_rec("t0", "test", "t0", 70, labelled=False))
    return recs


def test_fold_zero_is_the_official_split_and_folds_are_subject_independent(recordings):
    folds = make_folds(recordings, num_folds=6, seed=0)
    assert len(folds) == 6 and [f.index for f in folds] == list(range(6))
    pool = {r.name for r in recordings if r.split in ("train", "validation") and r.has_labels}
    subject = {r.name: r.subject or r.name for r in recordings}
    assert set(folds[0].validation) == {r.name for r in recordings if r.split == "validation"}
    assert set(folds[0].train) == pool - set(folds[0].validation)
    seen_val: list[str] = []
    subjects_per_part = []
    for f in folds[1:]:
        assert f.validation and f.train
        assert set(f.train) | set(f.validation) == pool and not set(f.train) & set(f.validation)
        # no subject on both sides of a fold
        assert not {subject[n] for n in f.train} & {subject[n] for n in f.validation}
        seen_val += f.validation
        subjects_per_part.append({subject[n] for n in f.validation})
    # every pooled recording validated exactly once across folds 1..k-1
    assert sorted(seen_val) == sorted(pool)
    # no subject in two folds' validation sets
    for i in range(len(subjects_per_part)):
        for j in range(i + 1, len(subjects_per_part)):
            assert not subjects_per_part[i] & subjects_per_part[j]
    assert "unlabelled" not in seen_val and "t0" not in seen_val


def test_folds_are_deterministic_by_seed(recordings):
    a = make_folds(recordings, 6, seed=1)
    assert a == make_folds(list(reversed(recordings)), 6, seed=1)
    assert any(make_folds(recordings, 6, seed=s) != a for s in range(2, 6))
    per_recording = make_folds(recordings, 6, seed=1, subject_independent=False)
    assert sorted(sum((list(f.validation) for f in per_recording[1:]), [])) == sorted(
        sum((list(f.validation) for f in a[1:]), []))


def test_fold_errors_are_clear(recordings):
    with pytest.raises(ConfigError, match="cannot make 12 folds"):
        make_folds(recordings, 12)
    with pytest.raises(ConfigError, match="num_folds = 2"):
        make_folds(recordings, 2)
    assert make_folds(recordings, 1) == make_folds(recordings, 6)[:1]


def test_assign_fold_copies_recordings_with_the_fold_split(recordings):
    fold = make_folds(recordings, 4, seed=0)[2]
    out = assign_fold(recordings, fold)
    by_name = {r.name: r for r in out}
    assert {n for n, r in by_name.items() if r.split == "validation"} == set(fold.validation)
    assert {n for n, r in by_name.items() if r.split == "train"} == set(fold.train)
    assert by_name["t0"].split == "test" and by_name["unlabelled"].split == "excluded"
    assert [r.split for r in recordings].count("validation") == 2  # inputs untouched
    assert Fold.from_dict(json.loads(json.dumps(fold.to_dict()))) == fold


def test_parse_folds_and_seeds():
    assert parse_folds("all", 6) == [0, 1, 2, 3, 4, 5]
    assert parse_folds("2,0", 6) == [0, 2]
    assert parse_folds(None, 6) == [0]
    for bad in ("7", "x", ""):
        with pytest.raises(ConfigError):
            parse_folds(bad, 6)
    assert seed_list(3, 10) == [10, 11, 12]


def test_summary_is_mean_and_std_as_numpy_computes_them():
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"fold": [0, 0, 0, 1, 1, 1], "seed": [0, 1, 2] * 2,
                         "ccc_valence": rng.uniform(size=6), "ccc_arousal": rng.uniform(size=6)})
    runs["p_va"] = (runs.ccc_valence + runs.ccc_arousal) / 2
    s = summarize(runs).set_index("fold")
    for m in ("ccc_valence", "ccc_arousal", "p_va"):
        for fold in (0, 1):
            v = runs.loc[runs.fold == fold, m].to_numpy()
            assert s.loc[str(fold), f"{m}_mean"] == pytest.approx(np.mean(v))
            assert s.loc[str(fold), f"{m}_std"] == pytest.approx(np.std(v))
        assert s.loc["all", f"{m}_mean"] == pytest.approx(np.mean(runs[m]))
        assert s.loc["all", f"{m}_std"] == pytest.approx(np.std(runs[m]))
    assert list(s["runs"]) == [3, 3, 6]


def test_ensembling_is_the_mean_of_the_predictions():
    rng = np.random.default_rng(0)
    sets = [{"a": rng.normal(size=(7, 2)), "b": rng.normal(size=(3, 2))} for _ in range(3)]
    out = ensemble_predictions(sets)
    for n in ("a", "b"):
        np.testing.assert_allclose(out[n], np.mean([s[n] for s in sets], axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="other recordings"):
        ensemble_predictions([sets[0], {"a": sets[1]["a"]}])
    with pytest.raises(ValueError, match="shapes differ"):
        ensemble_predictions([sets[0], {"a": sets[1]["a"][:5], "b": sets[1]["b"]}])


# ------------------------------------------------------------------------------------------------ CLI


def _tiny_config(tmp_path, synth_root) -> Path:
    cfg = {
        "data": {"dataset": "synthetic", "root": str(synth_root)},
        "features": {"store": str(tmp_path / "store")},
        "model": {"name": "rjca", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "batch_size": 8, "max_epochs": 1, "accelerator": "cpu"},
        "protocol": {"num_folds": 3},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_train_folds_and_seeds_via_the_cli(synth_root, tmp_path, capsys):
    from avaffect.cli.main import main
    from avaffect.data.affwild2 import load_affwild2

    cfg_path = _tiny_config(tmp_path, synth_root)
    out = tmp_path / "cv"
    argv = ["train", str(synth_root), "--config", str(cfg_path), "--folds", "0,1", "--seeds", "2", "--out", str(out),
            "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "P_VA" in printed and "±" in printed
    runs = pd.read_csv(out / "summary.csv")
    assert sorted(zip(runs.fold, runs.seed)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for _, r in runs.iterrows():
        metrics = json.loads((out / r.run_dir / "metrics.json").read_text())
        assert r.p_va == pytest.approx(metrics["overall"]["p_va"], abs=1e-6)
        assert load_config(out / r.run_dir / "config.yaml").training.seed == r.seed
    md = (out / "summary.md").read_text()
    assert "| 0 | 2 |" in md and "| 1 | 2 |" in md and "| all | 4 |" in md
    v = runs.p_va.to_numpy()
    assert f"{np.mean(v):.4f} ± {np.std(v):.4f}" in md
    # fold 1 validates on the first part of the subject-independent re-partition of train+validation
    recs = load_affwild2(synth_root)
    folds = make_folds(recs, 3, seed=0)
    assert read_split(out / "fold1" / "seed0") == folds[1]
    assert set(json.loads((out / "fold1" / "seed0" / "metrics.json").read_text())["per_recording"]) == \
        set(folds[1].validation)
    assert read_split(out / "fold0" / "seed1") == folds[0]
    # finished runs are reused, not trained again
    stamp = (out / "fold1" / "seed1" / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "fold1" / "seed1" / "model.safetensors").stat().st_mtime_ns == stamp
    # the fold ensemble on the test split is the mean of the runs' own test predictions
    from avaffect.workflows.evaluate import evaluate_run

    assert main(["evaluate", str(out), "--split", "test", "-q", "--max-plots", "1"]) == 0
    test_name = next(r.name for r in recs if r.split == "test")
    ens = pd.read_csv(out / "ensemble" / "test" / f"{test_name}.csv")
    assert list(ens.columns) == ["frame", "time", "valence", "arousal"]
    singles = [evaluate_run(out / d, "test", max_plots=0).predictions[test_name] for d in runs.run_dir]
    np.testing.assert_allclose(ens[["valence", "arousal"]].to_numpy(), np.mean(singles, axis=0), atol=1e-5)


def test_train_set_overrides_replace_config_values():
    from avaffect.cli.train_cmds import apply_sets
    from avaffect.config import make_config

    cfg = load_config("configs/abaw8/grjca_m3_valence.yaml")  # a shipped config, by its documented name
    raw = apply_sets(cfg.model_dump(mode="json"), ["features.video={name: face_hog}", "training.max_epochs=2",
                                                   "model.params.num_iterations=1"])
    new = make_config(raw)
    assert new.features.video.name == "face_hog" and new.features.video.params == {}  # replaced, not merged
    assert new.training.max_epochs == 2 and new.model.params["num_iterations"] == 1
    for bad in ("training.max_epochs", "training.max_epochs.x=1", "=3"):
        with pytest.raises(ConfigError):
            apply_sets(cfg.model_dump(mode="json"), [bad])


def test_best_k_selection_takes_the_folds_with_the_best_validation_scores(tmp_path):
    import json

    from avaffect.config import make_config
    from avaffect.training.protocols import select_runs

    runs = []
    for fold, score in enumerate([0.31, 0.52, 0.47, 0.52, 0.10]):
        run = tmp_path / f"fold{fold}" / "seed0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"overall": {"p_va": score}}))
        runs.append(run)
    cfg = make_config({"protocol": {"test_selection": "best_k", "best_k": 3}})
    assert select_runs(runs, cfg) == [runs[1], runs[2], runs[3]]
    assert select_runs(runs, make_config({})) == runs  # average: every fold model
    single = make_config({"training": {"targets": ["arousal"]}, "protocol": {"test_selection": "best_k", "best_k": 1}})
    for run, score in zip(runs, [0.9, 0.1, 0.2, 0.3, 0.4]):
        (run / "metrics.json").write_text(json.dumps({"overall": {"ccc_arousal": score}}))
    assert select_runs(runs, single) == [runs[0]]
