"""``avaffect evaluate``: score a finished run (or ensemble a protocol folder) on full recordings.

A run is re-evaluated exactly as it was trained: its resolved ``config.yaml`` names the dataset and the
feature extractors (features are extracted if missing, through the run's own helpers), the weights come
from ``model.safetensors`` and the windowing from the checkpoint's preprocessing spec. A run made by
``train --folds`` carries its split in ``split.json``, so ``--split validation`` is that fold's
validation set. Full recordings are predicted window by window and stitched (docs/design.md §2), then scored
with the chosen protocol (docs/design.md §3). Outputs::

    RUN/eval/<split>/<recording>.csv   frame,time,<targets>,label_<targets> (test: no label columns)
    RUN/eval/<split>/metrics.json      overall (chosen protocol) + per recording; test: predictions only
    RUN/eval/<split>/plots/<recording>.png   prediction vs label over time + 2-D valence-arousal path
    RUN/postprocess.json               with --postprocess: the chain fitted on the validation split

With post-processing the chain is always fitted on the (fold's) validation split and applied to the
requested split; ``metrics.json`` then also holds the raw scores (``overall_raw``).

A protocol folder (``OUT/fold*/seed*/``) is evaluated as a **fold ensemble**: every run's model predicts
the recordings of the dataset's own split (not a fold's) and the stitched predictions are averaged, into
``OUT/ensemble/<split>/``. Fold models of folds >= 1 trained on part of the official validation set, so
ensemble scores on ``validation`` are optimistic; the test split is what ensembling is for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avaffect.config import RunConfig, load_config
from avaffect.data.folds import assign_fold, read_split
from avaffect.data.layout import SPLITS
from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError
from avaffect.evaluation.ensemble import ensemble_predictions
from avaffect.evaluation.inference import predict_recording
from avaffect.evaluation.metrics import score_recordings
from avaffect.evaluation.postprocess import PostProcessor
from avaffect.evaluation.reports import plot_recording, write_predictions_csv
from avaffect.features.extractors.base import ExtractorSpec
from avaffect.features.run_features import RecordingFeatures
from avaffect.files import output_path, write_json
from avaffect.models.checkpoint import load_checkpoint
from avaffect.training.protocols import find_runs, select_runs
from avaffect.training.run import CONFIG_FILE, MODEL_FILE

log = logging.getLogger(__name__)



@dataclass
class EvalResult:
    out_dir: Path
    split: str
    protocol: str
    overall: dict | None  # None for the test split (no labels)
    per_recording: dict
    predictions: dict[str, np.ndarray] = field(repr=False)
    postprocess: dict | None = None


def _dataset_split(cfg: RunConfig, split: str) -> str:
    if split not in SPLITS:
        raise AvaffectError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return {"validation": cfg.data.val_split, "train": cfg.data.train_split, "test": "test"}[split]


def load_run(run_dir: str | Path, data_root: str | Path | None = None):
    """``(config, model, checkpoint meta)`` of a finished run; ``data_root`` overrides ``data.root``."""
    run_dir = Path(run_dir)
    if not (run_dir / MODEL_FILE).is_file():
        raise AvaffectError(f"{run_dir}: no model.safetensors — not a finished run (train it first, or point "
                            "at a run folder such as OUT/fold0/seed0)")
    cfg = load_config(run_dir / CONFIG_FILE)
    if data_root is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": Path(data_root)})})
    model, meta = load_checkpoint(run_dir / MODEL_FILE)
    if cfg.end_to_end.enabled:  # the features come from the fine-tuned backbones the checkpoint records
        prep = meta["preprocessing"]
        features = cfg.features.model_copy(update={
            m: ExtractorSpec(name=r.name, params=r.params_beside(run_dir))
            for m, r in (("audio", prep.audio_extractor), ("video", prep.video_extractor))})
        cfg = cfg.model_copy(update={"features": features})
    return cfg, model, meta


def run_recordings(cfg: RunConfig, run_dir: str | Path | None = None,
                   recordings: list[Recording] | None = None) -> list[Recording]:
    """The dataset as the run saw it: loaded from ``cfg.data`` (unless given), with the fold split of
    ``run_dir/split.json`` applied when the run has one."""
    if recordings is None:
        recordings = cfg.load_recordings()
    fold = read_split(run_dir) if run_dir is not None else None
    if fold is not None:
        recordings = assign_fold(recordings, fold, cfg.data.train_split, cfg.data.val_split)
    return recordings


def _select(cfg: RunConfig, recordings: Sequence[Recording], split: str) -> list[Recording]:
    name = _dataset_split(cfg, split)
    recs = [r for r in recordings if r.split == name]
    if split != "test":
        recs = [r for r in recs if r.has_labels]  # as training does: only annotated recordings are scored
    if not recs:
        raise AvaffectError(f"no {'annotated ' if split != 'test' else ''}recordings in split {name!r} of "
                            f"{cfg.data.root}")
    return recs


def features_for(cfg: RunConfig, recs: Sequence[Recording], targets: Sequence[str],
                 progress: bool = False) -> list[RecordingFeatures]:
    """Features of ``recs`` from the run's store (extracted where missing), aligned and checked."""
    return cfg.feature_pipeline().load_all(list(recs), tuple(targets), progress)


def predict_features(model, feats: Sequence[RecordingFeatures], window: int, hop: int) -> dict[str, np.ndarray]:
    """Stitched full-recording predictions ``{recording: [T, K]}``."""
    return {f.name: predict_recording(model, f.audio, f.video, f.face_mask, window, hop) for f in feats}


def evaluate_run(run_dir: str | Path, split: str = "validation", protocol: str | None = None,
                 postprocess: bool | None = None, recordings: list[Recording] | None = None,
                 data_root: str | Path | None = None, max_plots: int = 8, progress: bool = False) -> EvalResult:
    """Predict ``split`` with the run's best model, write ``RUN/eval/<split>/`` and return the scores.

    ``protocol`` defaults to the run's ``evaluation.protocol``; ``postprocess`` to ``postprocess.enabled``.
    """
    run_dir = Path(run_dir)
    cfg, model, meta = load_run(run_dir, data_root)
    protocol = protocol or cfg.evaluation.protocol
    postprocess = cfg.postprocess.enabled if postprocess is None else postprocess
    prep = meta["preprocessing"]
    targets, window, hop = list(prep.targets), prep.window, prep.hop
    recs = run_recordings(cfg, run_dir, recordings)
    feats = features_for(cfg, _select(cfg, recs, split), targets, progress)
    preds = predict_features(model, feats, window, hop)
    raw, pp = preds, None
    if postprocess:
        if split == "validation":
            val_feats, val_preds = feats, preds
        else:
            val_feats = features_for(cfg, _select(cfg, recs, "validation"), targets, progress)
            val_preds = predict_features(model, val_feats, window, hop)
        pp = PostProcessor(targets, cfg.postprocess).fit(val_preds, {f.name: f.labels for f in val_feats}, protocol)
        write_json(run_dir / "postprocess.json", pp.to_dict())
        preds = pp.apply(preds)
    header = {"model": meta["model"]["name"], "run_dir": str(run_dir),
              "fold": cfg.protocol.fold, "seed": cfg.training.seed}
    return _write_outputs(run_dir / "eval" / split, split, protocol, targets, feats, preds, raw,
                          pp.to_dict() if pp else None, header, max_plots)


def evaluate_ensemble(protocol_dir: str | Path, split: str = "test", protocol: str | None = None,
                      recordings: list[Recording] | None = None, data_root: str | Path | None = None,
                      max_plots: int = 8, progress: bool = False) -> EvalResult:
    """Average the predictions of every finished run under ``protocol_dir`` on the dataset's ``split``."""
    protocol_dir = Path(protocol_dir)
    found = find_runs(protocol_dir)
    if not found:
        raise AvaffectError(f"{protocol_dir}: no finished runs (fold*/seed*/model.safetensors) to ensemble")
    runs = select_runs(found, load_config(found[0] / CONFIG_FILE))
    pred_sets, feats, targets, first_cfg = [], None, None, None
    feature_key = None
    for run in runs:
        cfg, model, meta = load_run(run, data_root)
        prep = meta["preprocessing"]
        run_targets = list(prep.targets)
        if targets is None:
            targets, first_cfg = run_targets, cfg
            if recordings is None:
                recordings = cfg.load_recordings()
        elif run_targets != targets:
            raise AvaffectError(f"{run}: predicts {run_targets}, the other runs {targets}; ensemble runs of one "
                                "target set at a time")
        key = (cfg.features.model_dump_json(), str(cfg.store_path()))
        if key != feature_key:  # features depend on the run's extractors only
            feats = features_for(cfg, _select(cfg, recordings, split), targets, progress)
            feature_key = key
        pred_sets.append(predict_features(model, feats, prep.window, prep.hop))
    preds = ensemble_predictions(pred_sets)
    protocol = protocol or first_cfg.evaluation.protocol
    header = {"ensemble_of": [r.relative_to(protocol_dir).as_posix() for r in runs], "run_dir": str(protocol_dir)}
    if split != "test":
        header["note"] = ("fold models of folds >= 1 trained on part of the official validation set: scores on "
                          "train/validation are optimistic")
    return _write_outputs(protocol_dir / "ensemble" / split, split, protocol, targets, feats, preds, preds, None,
                          header, max_plots)


def evaluate_path(path: str | Path, split: str = "validation", **kwargs) -> EvalResult:
    """A run folder → :func:`evaluate_run`; a protocol folder (``fold*/seed*``) → :func:`evaluate_ensemble`."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return evaluate_run(path, split, **kwargs)
    if find_runs(path):
        if kwargs.pop("postprocess", None):
            raise AvaffectError(f"{path}: post-processing a fold ensemble is not supported (the fold models saw "
                                "different validation sets); evaluate a single run with --postprocess instead")
        return evaluate_ensemble(path, split, **kwargs)
    raise AvaffectError(f"{path}: neither a finished run (model.safetensors) nor a protocol folder with finished "
                        "runs (fold*/seed*/model.safetensors)")


def _write_outputs(out_dir: Path, split: str, protocol: str, targets: list[str], feats: Sequence[RecordingFeatures],
                   preds: Mapping[str, np.ndarray], raw: Mapping[str, np.ndarray], pp: dict | None, header: dict,
                   max_plots: int) -> EvalResult:
    labelled = split != "test"
    if (out_dir / "metrics.json").is_file():
        log.warning("%s: replacing the previous evaluation of this split (its metrics.json is kept as "
                    "metrics.previous.json)", out_dir)
        (out_dir / "metrics.json").replace(out_dir / "metrics.previous.json")
    for f in feats:
        write_predictions_csv(output_path(out_dir, f.name, ".csv"), f.times, preds[f.name],
                              f.labels if labelled else None,
                              targets)
    overall, per = None, {}
    record = {**header, "split": split, "protocol": protocol, "targets": targets, "postprocess": pp}
    if labelled:
        labels = {f.name: f.labels for f in feats}
        overall, per = score_recordings(preds, labels, protocol, targets)
        record["overall"] = overall
        if pp is not None:
            record["overall_raw"] = score_recordings(raw, labels, protocol, targets)[0]
            if split == "validation":
                record["note_postprocess"] = ("post-processing fitted on this same split: `overall` is optimistic; "
                                              "`overall_raw` is the unprocessed score")
        record["per_recording"] = per
    else:
        record["recordings"] = [f.name for f in feats]
        record["note_test"] = "test split: predictions only, no labels to score"
    write_json(out_dir / "metrics.json", record)
    for f in sorted(feats, key=lambda f: f.name)[:max_plots]:
        plot_recording(output_path(out_dir / "plots", f.name, ".png"), f.name, f.times, preds[f.name],
                       f.labels if labelled else None, targets)
    return EvalResult(out_dir, split, protocol, overall, per, dict(preds), pp)
