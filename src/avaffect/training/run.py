"""One training run end to end: features → windows → Lightning fit → best model → predictions and scores.

Run directory (SPEC §7)::

    RUN/config.yaml            fully resolved config
    RUN/environment.json       package versions, git commit, seed, machine
    RUN/metrics_per_epoch.csv  train/val metrics per epoch
    RUN/checkpoints/           Lightning checkpoints (last.ckpt for full resume, best-*.ckpt)
    RUN/model.safetensors      best weights + model config + preprocessing spec (what `predict` loads)
    RUN/predictions/<split>/<recording>.csv
    RUN/metrics.json           validation scores (chosen protocol) + per recording; written last = done
"""

from __future__ import annotations

import logging
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from avaffect import __version__
from avaffect.config import RunConfig, dump_config
from avaffect.data.datasets import load_dataset
from avaffect.data.recording import TARGETS, Recording
from avaffect.errors import AvaffectError, DataError
from avaffect.evaluation.inference import predict_recording
from avaffect.evaluation.metrics import score_recordings
from avaffect.evaluation.reports import atomic_write_text, write_json, write_predictions_csv
from avaffect.features.extract import extract_features
from avaffect.features.extractors import Extractor, get_extractor
from avaffect.features.store import FeatureStore
from avaffect.models.checkpoint import save_checkpoint
from avaffect.models.wrapper import AVRegressor
from avaffect.training.datamodule import RecordingFeatures, WindowDataModule

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    per_recording: dict
    checkpoint: Path


def build_extractors(cfg: RunConfig) -> tuple[Extractor, Extractor]:
    return (get_extractor(cfg.features.audio.name, **cfg.features.audio.params),
            get_extractor(cfg.features.video.name, **cfg.features.video.params))


def ensure_features(cfg: RunConfig, recordings: list[Recording], progress: bool = True,
                    ) -> tuple[FeatureStore, Extractor, Extractor]:
    """Extract what is missing (resumable); raise if a needed recording failed."""
    audio_ex, video_ex = build_extractors(cfg)
    store = FeatureStore(cfg.store_path())
    summary = extract_features(recordings, [audio_ex, video_ex], store, workers=cfg.features.workers,
                               progress=progress)
    if not summary.ok:
        raise AvaffectError(f"feature extraction failed:\n{summary.format()}")
    return store, audio_ex, video_ex


def load_features(store: FeatureStore, audio_ex: Extractor, video_ex: Extractor, rec: Recording,
                  targets: list[str] | tuple[str, ...] = TARGETS) -> RecordingFeatures:
    audio = np.array(store.load(audio_ex.id, rec.name), dtype=np.float32)  # copy out of the mmap
    video = np.array(store.load(video_ex.id, rec.name), dtype=np.float32)
    for what, arr in (("audio", audio), ("video", video)):
        if len(arr) != rec.num_frames:
            raise DataError(store.path(audio_ex.id if what == "audio" else video_ex.id, rec.name),
                            f"{len(arr)} feature steps but the recording has {rec.num_frames}",
                            "delete the stale feature file and extract again")
    labels = rec.labels[:, [TARGETS.index(t) for t in targets]]
    # visual extractors write an all-zero vector where no face was found: readers that detect faces
    # only at extraction time (raw videos) learn the face mask from it
    face_mask = rec.face_mask & np.any(video != 0, axis=1)
    return RecordingFeatures(rec.name, audio, video, labels, face_mask, rec.times)


def preprocessing_spec(cfg: RunConfig, audio_ex: Extractor, video_ex: Extractor, fps: float) -> dict:
    """What `predict` must rebuild: extractors and their settings, face source, windowing, targets."""
    return {
        "audio_extractor": {"name": audio_ex.name, "params": cfg.features.audio.params, "id": audio_ex.id},
        "video_extractor": {"name": video_ex.name, "params": cfg.features.video.params, "id": video_ex.id},
        "faces": {"source": "cropped_aligned" if cfg.data.dataset in ("affwild2", "synthetic") else "detector"},
        "window": cfg.training.window,
        "hop": cfg.training.hop,
        "fps": fps,
        "targets": list(cfg.training.targets),
    }


def build_model(cfg: RunConfig, d_audio: int, d_video: int) -> AVRegressor:
    """The preset of ``cfg.model`` with the sizes the training config fixes (window length, outputs)."""
    from avaffect.models.registry import get_entry

    params = dict(cfg.model.params)
    given = params.setdefault("num_outputs", len(cfg.training.targets))
    if given != len(cfg.training.targets):
        raise AvaffectError(f"model.params.num_outputs={given} but training.targets={cfg.training.targets}")
    if "window_length" in get_entry(cfg.model.name).config_cls.model_fields:
        given = params.setdefault("window_length", cfg.training.window)
        if given != cfg.training.window:
            raise AvaffectError(f"model.params.window_length={given} but training.window="
                                f"{cfg.training.window}: the time-major weights need the window length")
    return AVRegressor(cfg.model.name, d_audio, d_video, params)


def environment_info(seed: int) -> dict:
    import lightning

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"avaffect": __version__, "torch": torch.__version__, "lightning": lightning.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": commit, "seed": seed,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def train(cfg: RunConfig, run_dir: str | Path, recordings: list[Recording] | None = None,
          progress: bool = True) -> RunResult:
    """Train ``cfg.model`` on the train split, select on validation, write the run directory.

    A finished run (``metrics.json`` present) is returned as is; an interrupted one resumes from
    ``checkpoints/last.ckpt``.
    """
    import json

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from avaffect.training.module import AffectRegressionModule

    run_dir = Path(run_dir)
    finished = (run_dir / "metrics.json").is_file() and (run_dir / "model.safetensors").is_file()
    _check_same_run(run_dir, cfg, finished)
    if finished:
        done = json.loads((run_dir / "metrics.json").read_text())
        return RunResult(run_dir, done["overall"], done["per_recording"], run_dir / "model.safetensors")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    write_json(run_dir / "environment.json", environment_info(cfg.training.seed))

    if recordings is None:
        recordings = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.length_tolerance)
    train_recs = [r for r in recordings if r.split == cfg.data.train_split and r.has_labels]
    val_recs = [r for r in recordings if r.split == cfg.data.val_split and r.has_labels]
    if not train_recs or not val_recs:
        raise AvaffectError(f"need annotated recordings in both splits; found {len(train_recs)} in "
                            f"{cfg.data.train_split!r} and {len(val_recs)} in {cfg.data.val_split!r}")
    store, audio_ex, video_ex = ensure_features(cfg, train_recs + val_recs, progress)
    targets = tuple(cfg.training.targets)
    train_feats = [load_features(store, audio_ex, video_ex, r, targets) for r in train_recs]
    val_feats = [load_features(store, audio_ex, video_ex, r, targets) for r in val_recs]

    L.seed_everything(cfg.training.seed, workers=True, verbose=False)
    model = build_model(cfg, audio_ex.dim, video_ex.dim)
    model.set_normalization(np.concatenate([f.audio for f in train_feats]),
                            np.concatenate([f.video[f.face_mask] for f in train_feats]))
    module = AffectRegressionModule(model, cfg.training, val_feats, cfg.evaluation.protocol, targets)
    data = WindowDataModule(train_feats, val_feats, cfg.training.window, cfg.training.hop,
                            cfg.training.batch_size, cfg.training.num_workers)
    monitor = f"val/{cfg.training.monitor_key()}"
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}", monitor=monitor,
                           mode="max", save_top_k=1, save_last=True)
    trainer = L.Trainer(
        default_root_dir=run_dir, max_epochs=cfg.training.max_epochs, min_epochs=cfg.training.min_epochs,
        accelerator=cfg.training.accelerator, devices=cfg.training.devices, precision=cfg.training.precision,
        gradient_clip_val=cfg.training.gradient_clip, deterministic=False, num_sanity_val_steps=0,
        callbacks=[ckpt, EarlyStopping(monitor=monitor, mode="max", patience=cfg.training.patience)],
        logger=CSVLogger(run_dir, name="logs", version=""), enable_progress_bar=progress,
        enable_model_summary=False, log_every_n_steps=1,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    log_csv = run_dir / "logs" / "metrics.csv"
    if last.is_file() and log_csv.is_file():  # resuming: keep the log of the epochs already trained
        log_csv.rename(log_csv.with_name(f"metrics-part{len(list(log_csv.parent.glob('metrics-part*.csv')))}.csv"))
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None)

    best = ckpt.best_model_path or str(last)
    state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    model = module.model.cpu().eval()
    _write_epoch_metrics(run_dir)

    preds = {f.name: predict_recording(model, f.audio, f.video, f.face_mask, cfg.training.window,
                                       cfg.training.hop) for f in val_feats}
    overall, per = score_recordings(preds, {f.name: f.labels for f in val_feats}, cfg.evaluation.protocol,
                                    targets)
    for f in val_feats:
        write_predictions_csv(run_dir / "predictions" / cfg.data.val_split / f"{f.name}.csv", f.times,
                              preds[f.name], f.labels, targets)
    fps = float(np.median([r.fps for r in train_recs]))
    checkpoint = save_checkpoint(run_dir / "model.safetensors", model,
                                 preprocessing_spec(cfg, audio_ex, video_ex, fps),
                                 {"best_checkpoint": Path(best).name, "epochs_trained": trainer.current_epoch})
    write_json(run_dir / "metrics.json", {"model": cfg.model.name, "protocol": cfg.evaluation.protocol,
                                          "split": cfg.data.val_split, "overall": overall, "per_recording": per})
    return RunResult(run_dir, overall, per, checkpoint)


def _check_same_run(run_dir: Path, cfg: RunConfig, finished: bool) -> None:
    """A run directory holds one run: reusing a finished run or resuming an interrupted one with another
    config would silently mix two experiments. Only ``training.max_epochs`` may change when resuming
    (to train an interrupted run further); a finished run must match exactly."""
    import yaml

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file() or not (finished or (run_dir / "checkpoints" / "last.ckpt").is_file()):
        return  # nothing trained there yet (e.g. a start that failed on bad data): free to start over
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


def _write_epoch_metrics(run_dir: Path) -> None:
    """Collapse Lightning's CSV logs (one row per logged key group; one file per resume) into one row per epoch."""
    logs = run_dir / "logs"
    parts = sorted(logs.glob("metrics-part*.csv"), key=lambda p: int(p.stem[len("metrics-part"):]))
    if (logs / "metrics.csv").is_file():
        parts.append(logs / "metrics.csv")
    if not parts:
        return
    df = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)  # earlier parts: epochs before a resume
    if "epoch" in df:
        df = df.drop(columns=[c for c in ("step",) if c in df]).groupby("epoch", as_index=False).last()
    atomic_write_text(run_dir / "metrics_per_epoch.csv", df.to_csv(index=False))
