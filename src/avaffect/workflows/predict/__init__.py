"""Per-frame valence and arousal on any video (docs/design.md §1, application flow).

The parts, in the order a video goes through them:

- a :class:`VideoPredictor` — a model loaded once, ready for many videos: :class:`Predictor` (a trained checkpoint,
  :mod:`.checkpoint`) or :class:`FaceModelPredictor` (a face model's own values, :mod:`.face_model`);
- calling it on a video gives a :class:`PredictionRun`: the per-frame table and a typed :class:`Summary`
  (:mod:`.result`);
- :func:`write_outputs` writes its files (:mod:`.outputs`); :func:`predict_many` runs a folder of videos, over
  worker processes if asked (:mod:`.runner`);
- :func:`predict_people` gives every person of a video their own run (``predict --faces all``, :mod:`.people`).

In Python::

    predictor = load_predictor("runs/demo/model.safetensors")   # or load_predictor(face_model="enet_b0_8_va_mtl")
    for video in videos:
        run = predictor(video)
        run.frame            # frame,time,valence,arousal,face_detected,trained_on
        run.summary.face_fraction, run.summary.as_json()
        write_outputs(run, "predictions", video.stem)

Rules at the edges (documented, never silent):

- **Frames without a face**: ``face_detected`` is false in the CSV; the fusion model sees a missing visual vector
  there (the training rule: the normalised visual features are zero), so its prediction on those frames leans on
  the voice; a face model has no value there (NaN).
- **A video without audio**: the audio features are set to the training mean (zero after normalisation), the
  summary says ``"audio": "missing"`` and a warning is logged; predictions then rest on the face alone.
- **Authors' models** (``avaffect convert-official``): one timeline step per non-overlapping clip of
  ``step_frames`` frames (:mod:`avaffect.models.official.deploy`); every frame gets its clip's prediction.
- **Face source**: the checkpoint's preprocessing spec says where training took its faces from. A model trained on
  a dataset's own crops (Aff-Wild2 ``cropped_aligned``) reproduces ``evaluate`` on a video only when that video's
  crops folder is given (``crops_dir`` / ``predict --crops``); otherwise — and for a model trained on detected
  faces — the face detector and crop size of the spec run on the video. Nothing is guessed from the video's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


from avaffect.errors import AvaffectError
from avaffect.workflows.predict.checkpoint import Predictor
from avaffect.workflows.predict.ensemble import EnsemblePredictor, expand_checkpoints
from avaffect.workflows.predict.face_model import FaceModelPredictor
from avaffect.workflows.predict.outputs import OutputRequest, write_outputs
from avaffect.workflows.predict.people import PeopleRun, PeopleSummary, predict_people, write_people_outputs
from avaffect.workflows.predict.result import (
    PredictionRun,
    PredictorOptions,
    Summary,
    Timings,
    VideoPredictor,
    prediction_meaning,
)
from avaffect.workflows.predict.runner import predict_many, predict_one

__all__ = ["EnsemblePredictor", "FaceModelPredictor", "OutputRequest", "PeopleRun", "PeopleSummary", "PredictionRun",
           "Predictor", "PredictorOptions", "Summary", "Timings", "VideoPredictor", "expand_checkpoints",
           "load_predictor", "predict", "predict_many", "predict_one", "predict_people", "prediction_meaning",
           "write_outputs", "write_people_outputs"]


def load_predictor(checkpoint: str | Path | list[str | Path] | None = None, *, face_model: str | None = None,
                   options: PredictorOptions | None = None) -> VideoPredictor:
    """A predictor to keep between videos: a trained ``checkpoint`` (``model.safetensors`` of a run, a folder written
    by ``avaffect export --out``, or a list of them: an ensemble) or, instead, a ``face_model`` (a registered ONNX
    face model's name or file). Loading checks everything a video will need (the extractors, their weight files), so
    a missing file fails here, before any video. ``options``: how it runs and what it adds
    (:class:`PredictorOptions`)."""
    o = options or PredictorOptions()
    if (checkpoint is None) == (face_model is None):
        raise AvaffectError("give a checkpoint (model.safetensors of a run) or face_model=NAME_OR_FILE, not both")
    if face_model is not None:
        if o.face_quality or o.min_face_quality is not None:
            raise AvaffectError("--face-quality / --min-face-quality run with a fusion checkpoint (not yet with "
                                "--face-model)")
        if o.explain:
            raise AvaffectError("--explain needs a fusion checkpoint (a face model has one modality: nothing to "
                                "occlude)")
        return FaceModelPredictor(face_model, device=o.device, stream=o.stream, detect_every=o.detect_every)
    if isinstance(checkpoint, (list, tuple)):
        if len(checkpoint) > 1:
            return EnsemblePredictor(list(checkpoint), o)
        if not checkpoint:
            raise AvaffectError("no checkpoint given (a run folder without model.safetensors?)")
        checkpoint = checkpoint[0]
    return Predictor(checkpoint, o)


def predict(checkpoint: str | Path, video: str | Path, device: str = "cpu",
            crops_dir: str | Path | None = None, stream: bool = True) -> pd.DataFrame:
    """Per-frame predictions for one video: ``frame,time,valence,arousal,face_detected,trained_on``.

    The summary (means, face fraction, timings, real-time factor) is in ``df.attrs["summary"]`` (a dict, as
    written to JSON). Keep a :func:`load_predictor` to run many videos."""
    run = Predictor(checkpoint, PredictorOptions(device=device, stream=stream))(video, crops_dir)
    run.frame.attrs["summary"] = run.summary.as_json()
    return run.frame
