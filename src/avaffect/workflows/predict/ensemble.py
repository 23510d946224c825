"""Several checkpoints as one predictor (``predict CKPT1 CKPT2 ... VIDEO``, or a run folder of folds or seeds):
per frame the members' mean, and their spread (the standard deviation across members, ``<target>_spread``), shown
as a band on the plot and the page.

Each member runs its own preprocessing on the video (its extractors, face pipeline, windows): exact, and members
need not share anything but their targets; the cost is one pass per member (a fold ensemble of one config could
share the feature pass: not done yet). The spread says how much models trained on other folds or seeds disagree
here: 0 where they agree (identical checkpoints give 0 everywhere), large where the video is far from what they
learned alike. It is not a calibrated confidence interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avaffect.data.recording import Recording
from avaffect.deploy.formats import DEPLOY_FILE
from avaffect.errors import AvaffectError
from avaffect.workflows.predict.checkpoint import Predictor
from avaffect.workflows.predict.result import ModelInfo, PredictionRun, PredictorOptions, Traces, VideoPredictor

__all__ = ["EnsemblePredictor", "SPREAD_NOTE", "expand_checkpoints"]

SPREAD_NOTE = ("<target>_spread: the standard deviation of the ensemble members' values at that frame (their "
               "disagreement; 0 where they agree), not a calibrated confidence interval")


def expand_checkpoints(item: str | Path) -> list[Path]:
    """A checkpoint file as itself; a run folder as its ``model.safetensors`` (one run) or every
    ``model.safetensors`` under it (a ``--folds`` / ``--seeds`` run folder), sorted."""
    p = Path(item)
    if not p.is_dir() or (p / DEPLOY_FILE).is_file():  # a checkpoint (or a missing one: the predictor says so), or
        return [p]  # a folder written by `export --out`
    if (p / "model.safetensors").is_file():
        return [p / "model.safetensors"]
    return sorted(p.rglob("model.safetensors"))


class EnsemblePredictor(VideoPredictor):
    """The members' mean and spread per frame (module docstring)."""

    no_face_consequence = "the predictions rest on the voice alone"

    def __init__(self, checkpoints: list[str | Path], options: PredictorOptions | None = None) -> None:
        if len(checkpoints) < 2:
            raise AvaffectError("an ensemble needs at least two checkpoints")
        options = options or PredictorOptions()
        self.args = ([str(c) for c in checkpoints], options)
        self.members = [Predictor(c, options) for c in checkpoints]
        first = self.members[0].info
        for m in self.members[1:]:
            if m.info.targets != first.targets:
                raise AvaffectError(f"{m.checkpoint} predicts {', '.join(m.info.targets)} but {first.checkpoint} "
                                    f"{', '.join(first.targets)}: an ensemble's members predict the same targets")
            if m.info.trained_on != first.trained_on:
                raise AvaffectError(f"{m.checkpoint} was trained on {m.info.trained_on}, {first.checkpoint} on "
                                    f"{first.trained_on}: their values do not mean the same thing, so they are not "
                                    "averaged")
        models = sorted({m.info.model for m in self.members})
        self.info = ModelInfo(model=f"ensemble of {len(self.members)} ({', '.join(models)})",
                              checkpoint=first.checkpoint, checkpoint_sha256_16=first.checkpoint_sha256_16,
                              trained_on=first.trained_on, targets=first.targets, detect_every=first.detect_every,
                              device=options.device, faces=first.faces, runtime=first.runtime,
                              modality_dropout=first.modality_dropout)
        self.checkpoints = [str(m.checkpoint) for m in self.members]

    def spawn_args(self) -> tuple[type, tuple]:
        return type(self), self.args

    def make_run(self, video: str, rec: Recording, tr: Traces, wall: float) -> PredictionRun:
        run = super().make_run(video, rec, tr, wall)
        spread = {f"{t}_spread_mean": float(np.nanmean(tr.extra[f"{t}_spread"])) if rec.num_steps else None
                  for t in self.info.targets}
        run.summary.ensemble = {"members": self.checkpoints, **spread, "note": SPREAD_NOTE}
        return run

    def recording(self, video: str | Path, crops_dir: str | Path | None = None) -> Recording:
        return self.members[0].recording(video, crops_dir)

    def traces(self, rec: Recording, overlay_to: Path | None) -> Traces:
        runs = [m.traces(rec, overlay_to if k == 0 else None) for k, m in enumerate(self.members)]
        values = np.stack([r.values for r in runs]).astype(np.float64)  # [M, T, K]; float64: identical members
        # give their own values back exactly, and a spread of exactly 0
        first = runs[0]
        tr = Traces(values.mean(axis=0).astype(np.float32), first.face, first.boxes, first.streamed, audio=first.audio,
                    stages=first.stages, model_s=sum(r.model_s or 0.0 for r in runs), overlay=first.overlay,
                    overlay_frames_buffered=first.overlay_frames_buffered, faces=first.faces)
        spread = values.std(axis=0)
        tr.extra = {f"{t}_spread": spread[:, k].astype(np.float32) for k, t in enumerate(self.info.targets)}
        for key in first.extra:  # --explain's columns: the members' mean
            tr.extra[key] = np.mean([r.extra[key] for r in runs], axis=0).astype(np.float32)
        return tr
