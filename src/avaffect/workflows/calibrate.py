"""``avaffect calibrate``: fit the post-processing evaluation already has (a delay, a smoothing window, a bias and
scale per target: :mod:`avaffect.evaluation.postprocess`) to a user's own few labelled minutes, and write a
calibrated model that ``predict`` uses.

Each video is predicted with the checkpoint as ``predict`` would; its labels (predict's CSV layout: ``time,valence,
arousal``, ``frame,valence,arousal`` or ``valence,arousal`` one row per frame; or an Aff-Wild2 ``.txt`` with -5 for
unannotated frames) are put on its frames. The **last** ``holdout`` fraction of every video's frames is held out
(time-contiguous, so the delay and the smoothing cannot peek across the cut); the chain is fitted on the rest and
the CCC before and after is reported on the held-out frames. The output folder holds a copy of the model (the
checkpoint, its ONNX export, the files its extractors read beside it) and ``calibration.json`` (the fitted chain,
matched to the checkpoint by SHA-256, the held-out CCCs): ``predict OUT/model.safetensors VIDEO`` applies it after
the model, on the whole video (the JSON says ``calibration``). ``live`` does not apply it (a centred smoothing
needs frames that have not arrived).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaffect.config import PostprocessConfig
from avaffect.data.affwild2 import read_annotation
from avaffect.data.manifest import read_label_csv
from avaffect.data.timeline import fit_frame_labels
from avaffect.deploy.onnx_model import export_paths
from avaffect.errors import AvaffectError, DataError
from avaffect.evaluation.metrics import ccc
from avaffect.evaluation.postprocess import PostProcessor
from avaffect.files import sha256_file, write_json
from avaffect.workflows.predict.checkpoint import CALIBRATION_FILE, CALIBRATION_FORMAT, Predictor

__all__ = ["CalibrationResult", "calibrate", "frame_labels"]

LABELS_FIX = ("a label file per video: time,valence,arousal or frame,valence,arousal or valence,arousal (one row "
              "per frame), or an Aff-Wild2 .txt (valence,arousal, -5 = unannotated)")


def frame_labels(path: str | Path, times: np.ndarray) -> np.ndarray:
    """``[T, 2]`` valence/arousal of a label file on a video's frame ``times`` (NaN where unannotated): rows by
    frame, frames numbered, or times (each frame takes the label nearest in time, within half a frame)."""
    path = Path(path)
    times = np.asarray(times, np.float64)
    if path.suffix.lower() == ".txt":
        return fit_frame_labels(read_annotation(path), len(times), 2, path, None, short_is_error=False)
    kind, index, labels = read_label_csv(path)
    if kind == "rows":
        return fit_frame_labels(labels, len(times), 2, path, None, short_is_error=False)
    if kind == "frame":
        return fit_frame_labels(labels, len(times), 2, path, None, frames=index, short_is_error=False)
    out = np.full((len(times), 2), np.nan, np.float32)
    if len(times) < 2:
        return out
    half = float(np.median(np.diff(times))) / 2
    j = np.clip(np.searchsorted(index, times), 1, len(index) - 1)
    nearest = np.where(np.abs(index[j - 1] - times) <= np.abs(index[j] - times), j - 1, j)
    ok = np.abs(index[nearest] - times) <= half
    out[ok] = labels[nearest[ok]]
    return out


@dataclass
class CalibrationResult:
    out_dir: Path
    record: dict

    @property
    def before(self) -> dict[str, float]:
        return self.record["heldout_ccc"]["before"]

    @property
    def after(self) -> dict[str, float]:
        return self.record["heldout_ccc"]["after"]


def calibrate(checkpoint: str | Path, videos: list[Path], labels: list[Path], out_dir: str | Path,
              holdout: float = 0.3, config: PostprocessConfig | None = None) -> CalibrationResult:
    """Fit, report and write (module docstring)."""
    if len(videos) != len(labels) or not videos:
        raise AvaffectError(f"calibrate needs one label file per video: {len(videos)} videos, {len(labels)} label "
                            "files (--labels FILE ... in the videos' order, or a folder with <video name>.csv)")
    if not 0.05 <= holdout <= 0.8:
        raise AvaffectError(f"--holdout must be between 0.05 and 0.8 (a fraction of every video), got {holdout}")
    out_dir = Path(out_dir)
    checkpoint = Path(checkpoint)
    if out_dir.resolve() == checkpoint.resolve().parent:
        raise AvaffectError(f"--out {out_dir} is the checkpoint's own folder: the calibrated model is a copy beside "
                            "its calibration.json; give another folder")
    predictor = Predictor(checkpoint)
    targets = [t for t in predictor.targets if t in ("valence", "arousal")]
    if not targets:
        raise AvaffectError(f"{checkpoint} predicts neither valence nor arousal: nothing to calibrate")
    cols = [("valence", "arousal").index(t) for t in targets]
    preds, ys, cuts = {}, {}, {}
    for video, label in zip(videos, labels, strict=True):
        run = predictor(video)
        y = frame_labels(label, run.columns["time"])[:, cols]
        if not np.isfinite(y).any():
            raise DataError(label, f"no label falls on a frame of {video}", LABELS_FIX)
        name = str(video)
        preds[name], ys[name] = run.values(targets), y
        cuts[name] = int(round(len(y) * (1 - holdout)))
    fit_y = {n: np.where(np.arange(len(y))[:, None] < cuts[n], y, np.nan) for n, y in ys.items()}
    pp = PostProcessor(targets, config).fit(preds, fit_y)
    calibrated = pp.apply(preds)
    before, after = {}, {}
    for k, t in enumerate(targets):
        held = [(preds[n][cuts[n]:, k], calibrated[n][cuts[n]:, k], ys[n][cuts[n]:, k]) for n in preds]
        p, q, y = (np.concatenate(x) for x in zip(*held, strict=True))
        ok = np.isfinite(y)
        if ok.sum() < 2:
            raise AvaffectError(f"the held-out part ({holdout:.0%} of each video) has fewer than 2 labelled frames "
                                f"of {t}: label more, or lower --holdout")
        before[t], after[t] = float(ccc(p[ok], y[ok])), float(ccc(q[ok], y[ok]))
    out_dir.mkdir(parents=True, exist_ok=True)
    # the model: the checkpoint, its ONNX export when there is one, the files its extractors read beside it
    beside = [Path(checkpoint.name), *(Path(p.name) for p in export_paths(checkpoint) if p.is_file()),
              *predictor.spec.side_files(checkpoint.parent)]
    for rel in beside:
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint.parent / rel, out_dir / rel)
    record = {"format": CALIBRATION_FORMAT, "checkpoint": str(checkpoint),
              "checkpoint_sha256": sha256_file(checkpoint), "targets": targets, "postprocess": pp.to_dict(),
              "heldout": holdout, "heldout_ccc": {"before": before, "after": after},
              "videos": [str(v) for v in videos], "labels": [str(p) for p in labels]}
    write_json(out_dir / CALIBRATION_FILE, record)
    return CalibrationResult(out_dir, json.loads(json.dumps(record)))
