"""One training run end to end: features → windows → Lightning fit → best model → predictions and scores.

Run directory (docs/design.md §7)::

    RUN/config.yaml            fully resolved config
    RUN/environment.json       package versions, git commit, seed, machine
    RUN/metrics_per_epoch.csv  train/val metrics per epoch
    RUN/checkpoints/           Lightning checkpoints (last.ckpt for full resume, best-*.ckpt)
    RUN/model.safetensors      best weights + model config + preprocessing spec (what `predict` loads)
    RUN/predictions/<split>/<recording>.csv
    RUN/timings.json           where the time went: loading, statistics, training steps, validation (rank 0)
    RUN/metrics.json           validation scores (chosen protocol) + per recording; written last = done

:func:`train` is the sequence of the named steps below; each can be called on its own.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from avaffect._version import __version__
from avaffect.config import RunConfig, dump_config, load_config
from avaffect.data.recording import TARGETS, Recording
from avaffect.errors import AvaffectError
from avaffect.evaluation.inference import predict_recording
from avaffect.evaluation.metrics import score_recordings
from avaffect.evaluation.reports import write_predictions_csv
from avaffect.features.e2e_inputs import InputCache
from avaffect.features.extractors.base import ExtractorSpec
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.features.faces.source import resolve_face_source
from avaffect.features.preprocessing_spec import ExtractorRecord, FaceSpec, PreprocessingSpec
from avaffect.features.run_features import FeaturePipeline, RecordingFeatures, TrainingStatistics
from avaffect.files import atomic_path, atomic_write_text, output_path, write_json
from avaffect.models.checkpoint import save_checkpoint
from avaffect.models.export import export_onnx
from avaffect.models.wrapper import AVRegressor
from avaffect.progress import is_terminal, stage
from avaffect.statedict import load_state_dict_file
from avaffect.threads import torch_threads
from avaffect.training.datamodule import WindowDataModule
from avaffect.training.e2e import (
    CropGeometry,
    CropWindowDataset,
    EndToEndModule,
    build_end_to_end,
    export_backbones,
    fit_head_normalization,
)
from avaffect.training.module import AffectRegressionModule
from avaffect.training.progress import EpochLines, StepTimes

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
ENVIRONMENT_FILE = "environment.json"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
TIMINGS_FILE = "timings.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written atomically (temp file beside it + rename): a full disk or a kill while
    ``last.ckpt`` is written leaves the previous one intact, never a truncated file under its name."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    per_recording: dict
    checkpoint: Path


# ------------------------------------------------------------------------------------------------ steps


def finished_run(run_dir: Path) -> RunResult | None:
    """The result of a finished run (``metrics.json`` and ``model.safetensors`` present), else None."""
    if not ((run_dir / METRICS_FILE).is_file() and (run_dir / MODEL_FILE).is_file()):
        return None
    try:
        done = json.loads((run_dir / METRICS_FILE).read_text())
        return RunResult(run_dir, done["overall"], done["per_recording"], run_dir / MODEL_FILE)
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise AvaffectError(f"{run_dir / METRICS_FILE}: damaged ({type(e).__name__}); delete it and run the same "
                            "command again: the run is scored again from its checkpoints (nothing is retrained)"
                            ) from None


def start_run_dir(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse a folder that holds another run; write the resolved config and the environment."""
    _check_same_run(run_dir, cfg, finished=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, dump_config(cfg))
    write_json(run_dir / ENVIRONMENT_FILE, environment_info(cfg.training.seed))


def split_recordings(cfg: RunConfig, recordings: list[Recording] | None) -> tuple[list[Recording], list[Recording]]:
    """The annotated training and validation recordings (the dataset is loaded when not given)."""
    if recordings is None:  # the two splits training reads (no test recordings looked for)
        recordings = cfg.load_recordings(tuple(dict.fromkeys((cfg.data.train_split, cfg.data.val_split))))
    train_recs = [r for r in recordings if r.split == cfg.data.train_split and r.has_labels]
    val_recs = [r for r in recordings if r.split == cfg.data.val_split and r.has_labels]
    if not train_recs or not val_recs:
        raise AvaffectError(f"need annotated recordings in both splits; found {len(train_recs)} in "
                            f"{cfg.data.train_split!r} and {len(val_recs)} in {cfg.data.val_split!r}")
    return train_recs, val_recs


def build_model(cfg: RunConfig, d_audio: int, d_video: int) -> AVRegressor:
    """The preset of ``cfg.model`` with the sizes the training config fixes (:meth:`RunConfig.model_params`)."""
    try:
        params = cfg.model_params()
    except ValueError as e:
        raise AvaffectError(str(e)) from None
    return AVRegressor(cfg.model.name, d_audio, d_video, params)


def fit(cfg: RunConfig, run_dir: Path, module: AffectRegressionModule, data: WindowDataModule,
        progress: bool, timer: StepTimes | None = None) -> tuple[torch.nn.Module, dict]:
    """Lightning fit of ``module`` on ``data`` with early stopping on the validation score, resuming from
    ``last.ckpt``; returns the best model (CPU, eval mode) and what to record of the fit (``rank``: this
    process's rank under DDP, 0 otherwise)."""
    if cfg.training.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise AvaffectError(f"training.accelerator = {cfg.training.accelerator} but no CUDA GPU is visible here; "
                            "use accelerator: auto or cpu")
    world = os.environ.get("WORLD_SIZE")  # set by torchrun
    if world and isinstance(cfg.training.devices, int) and cfg.training.devices * cfg.training.num_nodes != int(world):
        raise AvaffectError(f"torchrun started {world} processes but training.devices x training.num_nodes = "
                            f"{cfg.training.devices} x {cfg.training.num_nodes}; set training.devices to torchrun's "
                            "--nproc_per_node and training.num_nodes to its --nnodes")
    monitor = f"val/{cfg.training.monitor_key()}"
    ckpt = ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename="best-{epoch:03d}", monitor=monitor,
                           mode="max", save_top_k=1, save_last=True)
    callbacks = [ckpt, EarlyStopping(monitor=monitor, mode="max", patience=cfg.training.patience)]
    if timer is not None:
        callbacks.append(timer)
    bar = progress and is_terminal()
    if progress:  # who is training what: the bar alone names neither; a log gets one line per epoch instead
        label = f"{cfg.model.name} ({run_dir.name})"
        stage(f"training {label}: up to {cfg.training.max_epochs} epochs, monitor {monitor}")
        if not bar:
            callbacks.append(EpochLines(label, monitor))
    if cfg.training.checkpoint_every_n_steps:  # last.ckpt mid-epoch too (the loader saves its position)
        callbacks.append(ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, save_top_k=0, save_last=True,
                                         every_n_train_steps=cfg.training.checkpoint_every_n_steps))
        data.resumable_seed = cfg.training.seed
    trainer = L.Trainer(
        default_root_dir=run_dir, max_epochs=cfg.training.max_epochs, min_epochs=cfg.training.min_epochs,
        accelerator=cfg.training.accelerator, devices=cfg.training.devices, num_nodes=cfg.training.num_nodes,
        strategy=cfg.training.strategy,
        precision=cfg.training.precision,
        gradient_clip_val=cfg.training.gradient_clip, deterministic=False, num_sanity_val_steps=0,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=CSVLogger(run_dir, name="logs", version=""), enable_progress_bar=bar,
        enable_model_summary=False, log_every_n_steps=1,
    )
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    # DDP: every rank decides alone (the same file gives the same answer); only rank 0 moves files in the run folder
    resume = last.is_file() and _readable_checkpoint(last)
    if last.is_file() and not resume and trainer.global_rank == 0:
        damaged = last.with_name(last.name + ".damaged")
        last.replace(damaged)
        log.warning("%s cannot be read (truncated, corrupt, or not a checkpoint of ours; never unpickled): moved "
                    "to %s, training starts again from epoch 0", last, damaged.name)
    log_csv = run_dir / "logs" / "metrics.csv"
    if resume and log_csv.is_file() and trainer.global_rank == 0:  # resuming: keep the log of the epochs trained
        log_csv.rename(log_csv.with_name(f"metrics-part{len(list(log_csv.parent.glob('metrics-part*.csv')))}.csv"))
    # weights_only: a resume never unpickles code from the run folder
    on_cpu = cfg.training.accelerator == "cpu" or not torch.cuda.is_available()
    try:
        with torch_threads(cfg.training.cpu_threads) if on_cpu else nullcontext():
            trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None, weights_only=True)
    except SystemExit:  # Lightning turns Ctrl-C into sys.exit(1) after its own clean-up
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:  # Lightning swallows Ctrl-C: the run is not finished, never write it as if it were
        raise KeyboardInterrupt
    best = ckpt.best_model_path or str(last)
    module.load_state_dict(_lightning_state_dict(Path(best)))
    _write_epoch_metrics(run_dir)
    return module.model.cpu().eval(), {"best_checkpoint": Path(best).name, "epochs_trained": trainer.current_epoch,
                                        "rank": trainer.global_rank}


def preprocessing_spec(cfg: RunConfig, pipeline: FeaturePipeline, train_recs: list[Recording],
                       specs: tuple[ExtractorSpec, ExtractorSpec] | None = None) -> PreprocessingSpec:
    """What ``predict`` must rebuild. The face source is the one the training recordings actually used.
    ``specs``: the (audio, video) extractor specs to record, when not the config's (end-to-end: the exported
    fine-tuned backbones)."""
    audio_spec, video_spec = specs or (cfg.features.audio, cfg.features.video)
    faces = pipeline.video.face_pipeline() or FacePipeline()
    # recordings that never had media (features imported into the store) have no face source to vote with
    sources = {resolve_face_source(r, pipeline.video.params.get("source", "auto"), faces.detector)
               for r in train_recs if r.has_video or r.has_crops}
    return PreprocessingSpec(
        audio_extractor=ExtractorRecord.of(audio_spec, pipeline.audio),
        video_extractor=ExtractorRecord.of(video_spec, pipeline.video),
        faces=FaceSpec(source="crops" if sources == {"crops"} else "video", pipeline=faces),
        window=cfg.training.window, hop=cfg.training.hop,
        fps=float(np.median([r.fps for r in train_recs])), targets=list(cfg.training.targets),
        trained_on=cfg.data.dataset)


def score_validation(cfg: RunConfig, run_dir: Path, model: AVRegressor,
                     val_feats: list[RecordingFeatures]) -> tuple[dict, dict]:
    """Stitched full-recording predictions of the validation split, written (one recording at a time: each CSV as
    soon as its recording is predicted) and scored."""
    targets = tuple(cfg.training.targets)
    preds = {}
    for f in val_feats:
        preds[f.name] = predict_recording(model, f.audio, f.video, f.face_mask, cfg.training.window, cfg.training.hop)
        write_predictions_csv(output_path(run_dir / "predictions" / cfg.data.val_split, f.name, ".csv"), f.times,
                              preds[f.name], f.labels, targets)
    return score_recordings(preds, {f.name: f.labels for f in val_feats}, cfg.evaluation.protocol, targets)


def train(cfg: RunConfig, run_dir: str | Path, recordings: list[Recording] | None = None,
          progress: bool = True, init: Callable[[AVRegressor], None] | None = None) -> RunResult:
    """Train ``cfg.model`` on the train split, select on validation, write the run directory.

    A finished run (``metrics.json`` present) is returned as is; an interrupted one resumes from
    ``checkpoints/last.ckpt``. ``init`` is applied to the freshly built model before training, e.g. to load
    pre-trained parts (the DLSTM recipe's stage 2); a resumed run then overwrites them from its checkpoint.
    """
    run_dir = Path(run_dir)
    done = finished_run(run_dir)
    if done is not None:
        _check_same_run(run_dir, cfg, finished=True)
        return done
    pipeline = cfg.feature_pipeline()
    pipeline.check_weights()  # before anything is written or extracted
    start_run_dir(cfg, run_dir)
    clock = time.perf_counter()
    timings: dict = {}

    def lap(key: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[key] = round(now - clock, 3)
        clock = now

    train_recs, val_recs = split_recordings(cfg, recordings)
    lap("recordings_s")
    targets = tuple(cfg.training.targets)
    specs = None
    timer = StepTimes()
    if cfg.end_to_end.enabled:
        if init is not None:
            raise AvaffectError("a model initialiser (init) is not supported with end_to_end.enabled; train the "
                                "pre-trained parts on features, or start end-to-end training from scratch")
        model, fit_info, pipeline, specs = fit_end_to_end(cfg, run_dir, pipeline, train_recs, val_recs, progress)
    else:
        pipeline.ensure(train_recs + val_recs, progress)
        lap("features_ready_s")
        statistics = TrainingStatistics.of(pipeline)  # pass 1 while loading, pass 2 below: one chunk in memory
        train_feats = [pipeline.load(r, targets, statistics) for r in train_recs]
        val_feats = [pipeline.load(r, targets) for r in val_recs]
        statistics.finish(train_feats)
        lap("load_and_statistics_s")
        L.seed_everything(cfg.training.seed, workers=True, verbose=False)
        model = build_model(cfg, pipeline.audio.dim, pipeline.video.dim)
        if init is not None:
            init(model)
        for modality, moments in (("audio", statistics.audio), ("video", statistics.video)):
            if moments.count:
                model.set_moments(modality, moments.mean, moments.std())
        module = AffectRegressionModule(model, cfg.training, val_feats, cfg.evaluation.protocol, targets)
        data = WindowDataModule(train_feats, val_feats, cfg.training.window, cfg.training.hop,
                                cfg.training.batch_size, cfg.training.num_workers)
        model, fit_info = fit(cfg, run_dir, module, data, progress, timer)
        # what --explain's occlusion means depends on it (avaffect.evaluation.explain)
        fit_info["modality_dropout"] = cfg.training.modality_dropout.model_dump()
    lap("fit_s")
    if fit_info["rank"] != 0:  # DDP: rank 0 writes the run
        return RunResult(run_dir, {}, {}, run_dir / MODEL_FILE)
    if cfg.end_to_end.enabled:  # features of the fine-tuned backbones: what predict computes
        pipeline.ensure(val_recs, progress)
        val_feats = [pipeline.load(r, targets) for r in val_recs]
    bad = [n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # a diverged run is never written as finished
        raise AvaffectError(f"{run_dir}: training diverged (NaN/Inf in {len(bad)} weight tensors, e.g. {bad[0]}); "
                            "lower training.lr or enable training.gradient_clip, then delete the run folder and "
                            "train again")
    overall, per = score_validation(cfg, run_dir, model, val_feats)
    lap("final_validation_s")
    write_json(run_dir / TIMINGS_FILE, {**timings, **timer.as_dict(), "recordings": {
        "train": len(train_recs), "validation": len(val_recs)},
        "steps": {"train": int(sum(r.num_steps for r in train_recs)),
                  "validation": int(sum(r.num_steps for r in val_recs))}})
    checkpoint = save_checkpoint(run_dir / MODEL_FILE, model, preprocessing_spec(cfg, pipeline, train_recs, specs),
                                 fit_info)
    if cfg.training.export_onnx:  # predict without torch; a model that does not export runs with torch
        try:
            export_onnx(checkpoint)
        except AvaffectError as e:
            log.warning("%s", e)
    write_json(run_dir / METRICS_FILE, {"model": cfg.model.name, "protocol": cfg.evaluation.protocol,
                                        "split": cfg.data.val_split, "overall": overall, "per_recording": per})
    return RunResult(run_dir, overall, per, checkpoint)


def fit_end_to_end(cfg: RunConfig, run_dir: Path, pipeline: FeaturePipeline, train_recs: list[Recording],
                   val_recs: list[Recording], progress: bool
                   ) -> tuple[AVRegressor, dict, FeaturePipeline, tuple[ExtractorSpec, ExtractorSpec]]:
    """End-to-end fit (:mod:`avaffect.training.e2e`): pack the inputs, fine-tune, export the backbones.
    Returns the fusion head, the fit record, the pipeline of the exported backbones and their (audio, video)
    specs as the checkpoint records them (weights relative to the run folder)."""
    targets = tuple(cfg.training.targets)
    cache = InputCache(cfg.end_to_end.cache or cfg.store_path() / "inputs", pipeline.video, pipeline.audio)
    cache.ensure(train_recs + val_recs, cfg.features.workers)
    cols = [TARGETS.index(t) for t in targets]
    geometry = CropGeometry.of(pipeline.video)

    def windows(recs: list[Recording], augment) -> CropWindowDataset:
        clips = [pipeline.video.clip_plan(r.num_steps) for r in recs] if geometry.clips else None
        return CropWindowDataset([cache.load(r) for r in recs], [r.labels[:, cols] for r in recs],
                                 [r.face_mask for r in recs], cfg.training.window, cfg.training.hop, geometry,
                                 augment, clips)

    val_light = [RecordingFeatures(r.name, np.zeros((r.num_steps, 0)), np.zeros((r.num_steps, 0)),
                                   r.labels[:, cols], r.face_mask, r.times) for r in val_recs]
    L.seed_everything(cfg.training.seed, workers=True, verbose=False)
    head = build_model(cfg, pipeline.audio.dim, pipeline.video.dim)
    model = build_end_to_end(cfg.end_to_end, pipeline.video, pipeline.audio, head)
    train_set = windows(train_recs, cfg.end_to_end.augment)
    fit_head_normalization(model, train_set.without_augmentation())
    module = EndToEndModule(model, cfg.training, cfg.end_to_end, val_light, cfg.evaluation.protocol, targets)
    data = WindowDataModule(train_set, windows(val_recs, None),
                            cfg.training.window, cfg.training.hop, cfg.training.batch_size,
                            cfg.training.num_workers, pin_memory=torch.cuda.is_available())
    model, fit_info = fit(cfg, run_dir, module, data, progress)
    if fit_info["rank"] != 0:
        return model.head, fit_info, pipeline, (cfg.features.audio, cfg.features.video)
    video_spec, audio_spec = export_backbones(model, cfg.features.video, cfg.features.audio, run_dir)
    absolute = [s.model_copy(update={"params": {**s.params, "weights": str(run_dir / s.params["weights"])}})
                for s in (audio_spec, video_spec)]
    exported = FeaturePipeline.from_specs(absolute[0], absolute[1], cfg.store_path(), cfg.features.workers)
    return model.head, fit_info, exported, (audio_spec, video_spec)


# ------------------------------------------------------------------------------------------------ helpers


def environment_info(seed: int) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"avaffect": __version__, "torch": torch.__version__, "lightning": L.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": commit, "seed": seed,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _readable_checkpoint(path: Path) -> bool:
    """Whether a Lightning checkpoint loads with ``weights_only=True`` (no code runs either way)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:  # noqa: BLE001 - truncated zip, planted pickle, garbage: all mean "do not resume from it"
        return False


def _lightning_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The module weights of a Lightning checkpoint, read without unpickling arbitrary objects
    (``weights_only=True``: a file planted in the run folder cannot run code)."""
    try:
        return load_state_dict_file(path)  # the checkpoint's "state_dict"
    except AvaffectError as e:
        raise AvaffectError(f"{e} — delete {path.name} and resume, or start the run in a new folder") from None


def _check_same_run(run_dir: Path, cfg: RunConfig, finished: bool) -> None:
    """A run directory holds one run: reusing a finished run or resuming an interrupted one with another
    config would silently mix two experiments. Only ``training.max_epochs`` may change when resuming
    (to train an interrupted run further); a finished run must match exactly."""
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file() or not (finished or (run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()):
        return  # nothing trained there yet (e.g. a start that failed on bad data): free to start over
    try:  # through the current schema: sections and keys added since the run was written take their defaults
        saved = yaml.safe_load(dump_config(load_config(saved_path)))
    except AvaffectError:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    current = yaml.safe_load(dump_config(cfg))
    if not finished:
        for raw in (saved, current):
            raw.get("training", {}).pop("max_epochs", None)
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise AvaffectError(f"{run_dir} already holds a {'finished' if finished else 'started'} run with another "
                            f"configuration (sections that differ: {', '.join(diff)}); use another --out folder, "
                            "or delete that one to start again")


def _read_log_rows(parts: list[Path]) -> list[dict[str, str]]:
    """The rows of Lightning's CSV logs as dicts. A log cut short by an interrupt can hold rows longer than its
    header (Lightning adds a column by rewriting the file; Ctrl-C can land between the row and the rewrite): such
    a row is read with the widest header of the run (the columns are sorted names, so a wider header is the same
    list with the new names in place), and a row that fits no header is dropped with a warning."""
    tables = []
    for path in parts:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        if rows:
            tables.append((path, rows[0], rows[1:]))
    widest = max((header for _, header, _ in tables), key=len, default=[])
    out = []
    for path, header, rows in tables:
        for row in rows:
            names = header if len(row) == len(header) else widest if len(row) == len(widest) else None
            if names is None:
                log.warning("%s: a log row with %d fields fits no header; left out of metrics_per_epoch.csv", path,
                            len(row))
                continue
            out.append({k: v for k, v in zip(names, row) if v != ""})
    return out


def _write_epoch_metrics(run_dir: Path) -> None:
    """Collapse Lightning's CSV logs (one row per logged key group; one file per resume) into one row per epoch."""
    logs = run_dir / "logs"
    parts = sorted(logs.glob("metrics-part*.csv"), key=lambda p: int(p.stem[len("metrics-part"):]))
    if (logs / "metrics.csv").is_file():
        parts.append(logs / "metrics.csv")
    if not parts:
        return
    df = pd.DataFrame(_read_log_rows(parts))  # earlier parts: epochs before a resume
    if df.empty:
        return
    df = df.apply(pd.to_numeric, errors="coerce")
    if "epoch" in df:
        df = df.drop(columns=[c for c in ("step",) if c in df]).groupby("epoch", as_index=False).last()
        df = df[["epoch"] + sorted(c for c in df.columns if c != "epoch")]
    atomic_write_text(run_dir / "metrics_per_epoch.csv", df.to_csv(index=False))
