"""Predict per-frame valence and arousal on any video with a trained checkpoint (docs/design.md §1, application flow).

``predict`` runs exactly the preprocessing stored in the checkpoint — the same extractors with the same
settings, the same face source, the same window length and hop — and stitches window predictions over
the whole video.

A video streams (the default, ``stream=True``) when its visual extractor describes single face crops: one
decode in a background thread, the face pipeline frame by frame, crops described in chunks, each window run as
soon as its steps are there (:mod:`avaffect.features.stream`, :mod:`avaffect.evaluation.streaming`), so memory
does not grow with the video's length; the values are those of the whole-video path (``stream=False``, which
holds every crop and feature first). Clip extractors stream too, each chunk with the frames its clips reach
back to (``r2plus1d18_clip``; with ``clip_every`` > 1 it takes the whole-video path), and so does the
authors'-model path; recordings read from a crops folder take the whole-video path.

Rules at the edges (documented, never silent):

- **Frames without a face**: ``face_detected`` is false in the CSV; the model sees a missing visual
  vector there (the training rule: the normalised visual features are zero), so its prediction on those
  frames leans on the voice.
- **A video without audio**: the audio features are set to the training mean (zero after
  normalisation), the summary says ``"audio": "missing"`` and a warning is logged; predictions then
  rest on the face alone.
- **Authors' models** (``avaffect convert-official``): their recorded preprocessing runs one timeline step per
  non-overlapping clip of ``step_frames`` frames (:mod:`avaffect.models.official.deploy`); every frame gets its
  clip's prediction, and the CSV stays one row per frame.
- **Face source**: the checkpoint's preprocessing spec says where training took its faces from. A model
  trained on a dataset's own crops (Aff-Wild2 ``cropped_aligned``) reproduces ``evaluate`` on a video only
  when that video's crops folder is given (``crops_dir`` / ``predict --crops``); otherwise — and for a model
  trained on detected faces — the face detector and crop size of the spec run on the video. Nothing is
  guessed from the video's path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from avaffect.data.folder import recording_from_video
from avaffect.data.recording import TARGETS, Recording
from avaffect.errors import AvaffectError, NoAudioStreamError
from avaffect.evaluation.inference import predict_recording
from avaffect.evaluation.overlay import StreamingOverlay, va_columns, write_overlay
from avaffect.evaluation.page import write_page
from avaffect.evaluation.reports import plot_recording
from avaffect.evaluation.streaming import predict_chunks
from avaffect.features.extractors import Extractor, get_extractor
from avaffect.features.extractors.base import face_mask_from_features
from avaffect.features.faces import load_face_crops
from avaffect.features.faces.crops import check_detect_every
from avaffect.features.faces.source import resolve_face_source
from avaffect.features.preprocessing import ExtractorRecord
from avaffect.features.stream import (
    FeatureChunk,
    StreamStats,
    can_stream,
    iter_crop_chunks,
    iter_face_feature_chunks,
    video_streamable,
)
from avaffect.files import atomic_write_text, output_path, sha256_file
from avaffect.models.checkpoint import load_for_prediction

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One video's result: the per-frame table and the summary written to ``<name>.json``."""

    frame: pd.DataFrame
    summary: dict
    boxes: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


#: what a prediction's numbers mean, by the data its model was trained on (``trained_on`` of the JSON and CSV)
MEANINGS = {
    "synthetic": "SYNTHETIC DEMO MODEL: trained on avaffect's built-in cartoon faces and tones; the numbers show "
                 "that the pipeline runs, they say nothing about this person's emotion",
    "face_model": "zero-shot valence/arousal of a face model trained elsewhere (its own training set), per frame "
                  "from the face alone; not an avaffect model trained on your data",
    "unknown": "an avaffect model whose training data this checkpoint does not record",
}


def prediction_meaning(trained_on: str) -> str:
    """The sentence the JSON, the plot and the HTML page carry about what the numbers mean."""
    if trained_on.startswith("authors:"):
        return (f"the authors' released {trained_on.split(':', 1)[1]} fusion model (trained by them on Aff-Wild2), "
                "run on inputs rebuilt by avaffect from their papers; its numbers mean what Aff-Wild2's annotations "
                "mean only with the authors' own fine-tuned backbone files, not with random or ImageNet ones")
    return MEANINGS.get(trained_on, f"an avaffect fusion model trained on the {trained_on} dataset; its numbers "
                                    "mean what that dataset's annotations mean")


@contextmanager
def _overlay_pass(rec: Recording, overlay_to: str | Path | None, extra: dict) -> Iterator[StreamingOverlay | None]:
    """The overlay drawn during a streaming pass (``None`` when not asked for): removed if the pass fails, else
    closed into ``extra["overlay"]`` (with its peak of buffered frames)."""
    if overlay_to is None:
        yield None
        return
    overlay = StreamingOverlay(rec.video_path, overlay_to, rec.num_frames)
    try:
        yield overlay
    except BaseException:
        overlay.abort()
        raise
    extra["overlay"] = overlay.close()
    extra["overlay_frames_buffered"] = overlay.peak_buffered


def _clip_faces(mask: np.ndarray, k: int) -> np.ndarray:
    """The face mask of consecutive ``k``-frame clips (the last may be shorter): a clip has a face where any of its
    frames has one."""
    return np.logical_or.reduceat(mask, np.arange(0, len(mask), k)) if len(mask) else np.zeros(0, bool)


def _duration(rec: Recording) -> float:
    """Seconds of video the timeline covers (the real-time factor's numerator)."""
    return float(rec.times[-1] - rec.times[0] + 1.0 / rec.fps) if rec.num_frames else 0.0


def _whole_video_features(rec: Recording, extractor: Extractor, fallback: tuple | None = None,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The whole-video path: ``(features [T, d], face mask [T], boxes [T, 4] or None)``. On a video the faces are
    detected once, with the extractor's own face-pipeline settings (else ``fallback``: ``(size, detector,
    params)``), for the overlay's boxes; the extractor then reuses those crops (cached in the recording)."""
    boxes = None
    if rec.crops_dir is None:
        request = extractor.crop_request(rec) or fallback
        if request is not None:
            size, detector, params = request
            _, _, boxes = load_face_crops(rec, size=size, detector=detector, **params)
    feats = extractor.extract(rec)
    return feats, face_mask_from_features(rec.face_mask, feats), boxes


class Predictor:
    """A checkpoint loaded once, ready for many videos."""

    CLIP_CHUNK = 32  # clips per streamed chunk on the authors'-model path (``_clip_steps``)

    def __init__(self, checkpoint: str | Path, device: str = "cpu", stream: bool = True,
                 detect_every: int | None = None) -> None:
        """``detect_every``: run the face detector on every k-th frame only, tracking in between, whatever the
        checkpoint recorded (faster; the crops, and so the values, then differ slightly from the recorded
        pipeline: see ``docs/benchmarks/face_tracking.md``). ``None``: the checkpoint's own setting."""
        if device == "cuda" and not torch.cuda.is_available():
            raise AvaffectError("--device cuda asked for, but no CUDA device is available here; use --device cpu")
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.stream = stream
        self.detect_every = detect_every
        self.model, self.meta = load_for_prediction(self.checkpoint, device=device)
        self.spec = self.meta["preprocessing"]
        self.targets = list(self.spec.targets)
        self.checkpoint_id = sha256_file(self.checkpoint)[:16]
        self.audio_ex = self._extractor("audio extractor", self.spec.audio_extractor)
        self.video_ex = self._extractor("video extractor", self.spec.video_extractor)
        # the authors'-model path cuts its crops itself (``_clip_steps``): its face-pipeline keywords
        self.clip_face_params: dict[str, int] = {}
        if detect_every is not None:
            if self.spec.step_frames > 1:
                check_detect_every("--detect-every", detect_every)
                self.clip_face_params = {"detect_every": int(detect_every)}
            elif "detect_every" not in self.video_ex.params:
                raise AvaffectError(f"--detect-every: the video extractor {self.video_ex.name} of {self.checkpoint} "
                                    "does not detect faces frame by frame")
            else:
                params = {**self.video_ex.params, "detect_every": int(detect_every)}
                self.video_ex = get_extractor(self.video_ex.name, **params)

    def _extractor(self, what: str, record: ExtractorRecord) -> Extractor:
        try:
            ex = get_extractor(record.name, **record.params_beside(self.checkpoint.parent))
        except AvaffectError as e:
            raise AvaffectError(f"{self.checkpoint}: cannot rebuild the {what} {record.name!r} this checkpoint "
                                f"was trained with: {e}") from None
        if hasattr(ex, "weights_path"):  # a learned backbone: its weight file must be here, say which if not
            try:
                ex.weights_path()
            except AvaffectError as e:
                raise AvaffectError(f"{self.checkpoint}: the {what} {record.name!r} this checkpoint was trained "
                                    f"with needs its weights: {e}") from None
        if record.id and ex.id != record.id:
            log.warning("%s: extractor %s has id %s here but %s in the checkpoint (another version?)",
                        self.checkpoint, record.name, ex.id, record.id)
        return ex

    def recording(self, video: str | Path, crops_dir: str | Path | None = None) -> Recording:
        """The video as a recording; with ``crops_dir`` its faces come from that crops folder."""
        rec = recording_from_video(video, crops_dir=crops_dir)
        if self.spec.faces.source == "crops" and crops_dir is None:
            log.info("%s: the model was trained on a dataset's face crops; without --crops the %s detector runs "
                     "on the video instead", video, self.spec.faces.detector)
        return rec

    def _clip_steps(self, rec: Recording, t0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool,
                                                                 dict[str, float], float, bool]:
        """An authors' model's path (``spec.step_frames`` = k > 1): one step per non-overlapping k-frame clip, the
        clip ending at its last frame; returns per-frame ``(pred, face_mask, boxes, audio_missing, stages,
        model seconds, streamed)``, each frame carrying its clip's prediction. A video streams (unless
        ``stream=False``): one decode, the crops of ``k * CLIP_CHUNK`` frames at a time with the clip's reach
        before them (:func:`~avaffect.features.stream.iter_crop_chunks`), the clips of those frames described and
        the windows run as they fill, so memory does not grow with the video (the 49 x 512 maps of a long video
        would)."""
        k, n = int(self.spec.step_frames), rec.num_frames
        if not hasattr(self.video_ex, "clip_features"):
            raise AvaffectError(f"{self.checkpoint}: step_frames {k} needs a clip extractor, not {self.video_ex.name}")
        ends = np.minimum(np.arange(k - 1, n + k - 1, k), n - 1)  # the last frame of each clip
        clips = dataclasses.replace(rec, times=np.asarray(rec.times)[ends], labels=np.asarray(rec.labels)[ends],
                                    face_mask=np.asarray(rec.face_mask)[ends], extra={})
        audio_missing = False
        try:
            audio = self.audio_ex.extract(clips)
        except NoAudioStreamError:
            audio_missing = True
            audio = np.tile(self.model.audio_mean.cpu().numpy(), (len(ends), 1))
        t_audio = time.perf_counter() - t0
        size, detector, params = self.spec.faces.crop_size, self.spec.faces.detector, self.clip_face_params
        # the whole-video path's face source rule decides too: a crops folder is read, not streamed
        streamed = self.stream and video_streamable(rec) and resolve_face_source(rec, "auto", detector) == "video"
        stages = {"audio": round(t_audio, 3)}
        if not streamed:
            crops, mask, boxes = load_face_crops(rec, size=size, detector=detector, **params)
            mask = np.asarray(mask, bool) & np.asarray(rec.face_mask, bool)
            clip_face = _clip_faces(mask, k)
            video = self.video_ex.clip_features(crops, mask, ends)
            stages["video"] = round(time.perf_counter() - t0 - t_audio, 3)
            t1 = time.perf_counter()
            pred = predict_recording(self.model, audio, video, clip_face, self.spec.window, self.spec.hop,
                                     device=self.device)
            t_model = time.perf_counter() - t1
            return pred[np.arange(n) // k], mask, boxes, audio_missing, stages, t_model, False
        mask = np.zeros(n, bool)
        boxes = np.full((n, 4), np.nan, np.float32)
        st, timing = StreamStats(), {}
        before, _ = self.video_ex.crop_context()

        def clip_chunks() -> Iterator[FeatureChunk]:
            for c in iter_crop_chunks(rec, size, detector, params, chunk=k * self.CLIP_CHUNK, before=before,
                                      stats=st):
                mask[c.lo:c.hi], boxes[c.lo:c.hi] = c.mask[c.own], c.boxes
                j0, j1 = c.lo // k, -(-c.hi // k)  # the clips that end in c.lo:c.hi (c.lo is a multiple of k)
                t1 = time.perf_counter()
                feats = self.video_ex.clip_features(c.crops, c.mask, ends[j0:j1] - c.start)
                st.features += time.perf_counter() - t1
                yield FeatureChunk(j0, j1, feats, _clip_faces(c.mask[c.own], k),
                                   np.full((j1 - j0, 4), np.nan, np.float32))

        pred, _, _ = predict_chunks(self.model, audio, clip_chunks(), len(ends), self.spec.window, self.spec.hop,
                                    device=self.device, timings=timing)
        t_model = timing.get("model", 0.0)
        st.crop, st.total = max(0.0, st.crop - t_model), max(0.0, st.total - t_model)
        stages.update(st.as_dict())
        stages["video"] = stages.pop("total")
        return pred[np.arange(n) // k], mask, boxes, audio_missing, stages, t_model, True

    def __call__(self, video: str | Path, crops_dir: str | Path | None = None,
                 overlay_to: str | Path | None = None) -> Prediction:
        """``overlay_to``: write the overlay video there during a streaming pass (no second decode; in
        ``Prediction.extra["overlay"]``); other paths leave it to :func:`write_outputs`."""
        t0 = time.perf_counter()
        rec = self.recording(video, crops_dir)
        if self.spec.step_frames > 1:
            pred, face_mask, boxes, audio_missing, stages, t_model, streamed = self._clip_steps(rec, t0)
            t_features = time.perf_counter() - t0 - t_model
            return self._result(video, rec, pred, face_mask, boxes, audio_missing, stages, t0, t_features, t_model,
                                streamed)
        audio_missing = False
        try:
            audio = self.audio_ex.extract(rec)
        except NoAudioStreamError:
            audio_missing = True
            log.info("%s has no audio track: audio features set to the training mean", video)
            audio = np.tile(self.model.audio_mean.cpu().numpy(), (rec.num_frames, 1))
        t_audio = time.perf_counter() - t0
        faces = self.spec.faces
        stages: dict[str, float] = {"audio": round(t_audio, 3)}
        streamed = self.stream and can_stream(rec, self.video_ex)
        extra: dict = {}
        if streamed:  # one decode, chunks of crops, windows as they fill
            st, timing = StreamStats(), {}
            with _overlay_pass(rec, overlay_to, extra) as overlay:
                chunks = iter_face_feature_chunks(rec, self.video_ex, stats=st,
                                                  frame_sink=overlay.frame if overlay else None)
                on_final = (lambda lo, v, b: overlay.final(lo, va_columns(v, self.targets), b)) if overlay else None
                pred, face_mask, boxes = predict_chunks(self.model, audio, chunks, rec.num_frames, self.spec.window,
                                                        self.spec.hop, device=self.device, timings=timing,
                                                        on_final=on_final)
            t_model = timing.get("model", 0.0)
            t_features = time.perf_counter() - t0 - t_model
            # the chunks' clock ran on while the model worked between chunks: take that out of crop and video
            st.crop, st.total = max(0.0, st.crop - t_model), max(0.0, st.total - t_model)
            stages.update(st.as_dict())
            stages["video"] = stages.pop("total")
        else:
            video_feats, face_mask, boxes = _whole_video_features(rec, self.video_ex,
                                                                  (faces.crop_size, faces.detector, {}))
            t_features = time.perf_counter() - t0
            stages["video"] = round(t_features - t_audio, 3)
            t1 = time.perf_counter()
            pred = predict_recording(self.model, audio, video_feats, face_mask, self.spec.window, self.spec.hop,
                                     device=self.device)
            t_model = time.perf_counter() - t1
        result = self._result(video, rec, pred, face_mask, boxes, audio_missing, stages, t0, t_features, t_model,
                              streamed)
        result.extra.update(extra)
        return result

    def _result(self, video, rec: Recording, pred: np.ndarray, face_mask: np.ndarray, boxes, audio_missing: bool,
                stages: dict, t0: float, t_features: float, t_model: float, streamed: bool) -> Prediction:
        """The per-frame table and the summary of one video."""
        if not np.isfinite(pred).all():
            raise AvaffectError(f"{self.checkpoint}: the model gave NaN/Inf predictions on {video}; the checkpoint "
                                "is broken (train it again)")
        warnings = []
        if rec.num_frames and not face_mask.any():
            warnings.append("no face was found in any frame: the predictions rest on the voice alone")
        if audio_missing:
            warnings.append("no audio track: the predictions rest on the face alone")
        for w in warnings:
            log.warning("%s: %s", video, w)
        wall = time.perf_counter() - t0
        duration = _duration(rec)
        frame = pd.DataFrame({"frame": np.arange(rec.num_frames), "time": np.round(rec.times, 6)})
        for k, t in enumerate(self.targets):
            frame[t] = pred[:, k]
        frame["face_detected"] = face_mask
        frame["trained_on"] = self.spec.trained_on
        summary = {
            "video": str(video), "frames": rec.num_frames, "duration_s": round(duration, 3),
            "fps": rec.fps, "face_fraction": float(face_mask.mean()) if rec.num_frames else 0.0,
            "audio": "missing" if audio_missing else "present",
            "frames_without_face": int((~face_mask).sum()), "warnings": warnings,
            **{f"{t}_{s}": float(getattr(np, s)(pred[:, k])) for k, t in enumerate(self.targets)
               for s in ("mean", "std")},
            "model": self.meta["model"]["name"], "checkpoint": str(self.checkpoint),
            "trained_on": self.spec.trained_on, "meaning": prediction_meaning(self.spec.trained_on),
            "checkpoint_sha256_16": self.checkpoint_id, "face_source": "crops" if rec.crops_dir else
            self.spec.faces.detector,
            "timings_s": {"features": round(t_features, 3), "model": round(t_model, 3), "total": round(wall, 3),
                          "stages": stages},
            "streamed": bool(streamed),
            "detect_every": self.clip_face_params.get("detect_every", 1) if self.spec.step_frames > 1
            else self.video_ex.params.get("detect_every"),
            "realtime_factor": round(duration / wall, 2) if wall > 0 else None,
            "device": self.device,
        }
        return Prediction(frame, summary, boxes)

    def spawn_args(self) -> tuple:
        """How a worker process rebuilds this predictor: ``(class, args)``."""
        return type(self), (str(self.checkpoint), self.device, self.stream, self.detect_every)


def predict(checkpoint: str | Path, video: str | Path, device: str = "cpu",
            crops_dir: str | Path | None = None, stream: bool = True) -> pd.DataFrame:
    """Per-frame predictions for one video: ``frame,time,valence,arousal,face_detected``.

    The summary (means, face fraction, timings, real-time factor) is in ``df.attrs["summary"]``.
    Load a :class:`Predictor` once to run many videos."""
    result = Predictor(checkpoint, device, stream)(video, crops_dir)
    result.frame.attrs["summary"] = result.summary
    return result.frame


def write_outputs(result: Prediction, out_dir: str | Path, name: str, overlay: bool = False,
                  html: bool = False) -> dict[str, Path]:
    """``<name>.csv``, ``<name>.json``, ``<name>.png``, with ``overlay`` ``<name>_overlay.mp4`` and with ``html``
    ``<name>.html`` (the page with the overlay embedded; the overlay file is then kept only when asked for or too
    big to embed), all directly in ``out_dir`` (``name`` is encoded by :func:`avaffect.files.safe_name`: it never
    leaves ``out_dir``)."""
    out_dir = Path(out_dir)
    paths = {k: output_path(out_dir, name, ext) for k, ext in (("csv", ".csv"), ("json", ".json"), ("png", ".png"))}
    atomic_write_text(paths["csv"], result.frame.to_csv(index=False, float_format="%.6f"))
    targets = [t for t in TARGETS if t in result.frame]
    mark = " — SYNTHETIC DEMO MODEL, not real emotion" if result.summary.get("trained_on") == "synthetic" else ""
    plot_recording(paths["png"], f"{name} — {result.summary['model']}{mark}", result.frame["time"].to_numpy(),
                   result.frame[targets].to_numpy(), None, targets, result.frame["face_detected"].to_numpy())
    if (overlay or html) and "overlay" in result.extra:  # drawn during the prediction's own decode
        paths["overlay"] = Path(result.extra["overlay"])
        result.summary["timings_s"]["overlay"] = "same pass"
    elif overlay or html:
        t0 = time.perf_counter()
        values = va_columns(result.frame[targets].to_numpy(), targets)
        paths["overlay"] = write_overlay(result.summary["video"], output_path(out_dir, name, "_overlay.mp4"),
                                         result.frame["time"].to_numpy(), values, result.boxes)
        result.summary["timings_s"]["overlay"] = round(time.perf_counter() - t0, 3)
    if html:
        paths["html"], embedded = write_page(output_path(out_dir, name, ".html"), result.frame, result.summary,
                                             paths["overlay"], name)
        if embedded and not overlay:
            paths.pop("overlay").unlink()
    atomic_write_text(paths["json"], json.dumps(result.summary, indent=2) + "\n")
    return paths


# ------------------------------------------------------------------------------- many videos, several processes

_WORKER: Predictor | None = None  # the checkpoint loaded once per worker process


def _init_worker(factory, args: tuple) -> None:
    global _WORKER
    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism: one thread per worker, no oversubscription
    torch.set_num_threads(1)
    _WORKER = factory(*args)


def _predict_one(predictor, video: str, name: str, out_dir: str, overlay: bool,
                 crops_dir: str | None, html: bool = False) -> dict:
    try:
        overlay_to = output_path(out_dir, name, "_overlay.mp4") if overlay or html else None
        result = predictor(video, crops_dir, overlay_to)
        paths = write_outputs(result, out_dir, name, overlay=overlay, html=html)
    except AvaffectError as e:
        return {"video": video, "error": str(e)}
    return {"video": video, "summary": result.summary, "paths": {k: str(v) for k, v in paths.items()}}


def _predict_in_worker(video: str, name: str, out_dir: str, overlay: bool, html: bool = False) -> dict:
    return _predict_one(_WORKER, video, name, out_dir, overlay, None, html)


def predict_many(predictor, inputs: list[tuple[Path, str]], out_dir: str | Path, *, workers: int = 1,
                 overlay: bool = False, crops_dir: str | Path | None = None, html: bool = False):
    """Predict ``(video, output name)`` pairs into ``out_dir`` with ``predictor``, or in ``workers`` processes
    that each load its checkpoint once and run one torch thread; yields, as videos finish,
    ``{"video", "summary", "paths"}`` or ``{"video", "error"}`` (one bad video does not stop the others).
    ``predictor``: a :class:`Predictor` or a :class:`FaceModelPredictor`. ``crops_dir``: one video's own crops."""
    spawn = predictor.spawn_args()
    if workers <= 1 or len(inputs) <= 1:
        for video, name in inputs:
            yield _predict_one(predictor, str(video), name, str(out_dir), overlay,
                               None if crops_dir is None else str(crops_dir), html)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(inputs)), mp_context=ctx, initializer=_init_worker,
                             initargs=spawn) as pool:
        futures = {pool.submit(_predict_in_worker, str(v), n, str(out_dir), overlay, html): v for v, n in inputs}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except BrokenProcessPool:
                yield {"video": str(futures[fut]), "error": "its worker process died (out of memory?); run it "
                       "again alone with --workers 1"}


# ------------------------------------------------------------------ a face model's own valence/arousal (no training)


class FaceModelPredictor:
    """Per-frame valence/arousal straight from a face model (``predict --face-model``): an ONNX file in the
    EmotiEffLib layout, run by the ``face_onnx`` extractor on each detected face (the same face pipeline and
    streaming as :class:`Predictor`). No avaffect training and no audio are involved; frames without a face have
    no value (NaN). The numbers mean what the model's training set (AffectNet, for the EmotiEffLib files) made
    them mean: zero-shot still-image estimates, not a model trained on your data."""

    def __init__(self, face_model: str, device: str = "cpu", stream: bool = True, detect_every: int | None = None,
                 input_size: int | None = None, normalize: str | None = None) -> None:
        from avaffect.features.backbones.onnx_face import FaceOnnx  # lazy: onnxruntime is an optional extra

        if device != "cpu":
            raise AvaffectError("--face-model runs on the CPU (onnxruntime's CPU provider); drop --device")
        self.face_model, self.device, self.stream = face_model, device, stream
        self.detect_every, self.input_size, self.normalize = detect_every, input_size, normalize
        params = {"weights": face_model, "output": "va", "input_size": input_size, "normalize": normalize}
        if detect_every is not None:
            params["detect_every"] = int(detect_every)
        self.extractor: FaceOnnx = get_extractor("face_onnx", **params)
        self.path = self.extractor.weights_path()  # a missing file: where to get it and where to put it
        self.extractor.load_model()  # a broken file fails here, before any video

    def spawn_args(self) -> tuple:
        return type(self), (self.face_model, self.device, self.stream, self.detect_every, self.input_size,
                            self.normalize)

    def __call__(self, video: str | Path, crops_dir: str | Path | None = None,
                 overlay_to: str | Path | None = None) -> Prediction:
        """As :meth:`Predictor.__call__` (``overlay_to``: the overlay drawn in the streaming pass)."""
        t0 = time.perf_counter()
        rec = recording_from_video(video, crops_dir=crops_dir)
        extra: dict = {}
        if self.stream and can_stream(rec, self.extractor):
            values = np.zeros((rec.num_frames, 2), np.float32)
            detected = np.zeros(rec.num_frames, bool)
            boxes = np.full((rec.num_frames, 4), np.nan, np.float32)
            with _overlay_pass(rec, overlay_to, extra) as overlay:
                for c in iter_face_feature_chunks(rec, self.extractor, frame_sink=overlay.frame if overlay else None):
                    values[c.lo:c.hi], detected[c.lo:c.hi], boxes[c.lo:c.hi] = c.features, c.face_mask, c.boxes
                    if overlay:  # a frame's value is final with its chunk: no windows here
                        overlay.final(c.lo, np.where(c.face_mask[:, None], c.features, np.nan), c.boxes)
        else:
            values, detected, boxes = _whole_video_features(rec, self.extractor)
            if boxes is None:  # faces from a crops folder: where they sat in the video is not known
                boxes = np.full((rec.num_frames, 4), np.nan, np.float32)
        values = np.where(detected[:, None], values, np.nan)
        wall = time.perf_counter() - t0
        duration = _duration(rec)
        frame = pd.DataFrame({"frame": np.arange(rec.num_frames), "time": np.round(rec.times, 6),
                              "valence": values[:, 0], "arousal": values[:, 1], "face_detected": detected,
                              "trained_on": "face_model"})
        warnings = ["no face was found in any frame: there are no values"] if rec.num_frames and not detected.any() \
            else []
        for w in warnings:
            log.warning("%s: %s", video, w)
        with np.errstate(all="ignore"):
            stats = {f"{t}_{s}": (float(getattr(np, f"nan{s}")(values[:, k])) if detected.any() else None)
                     for k, t in enumerate(TARGETS) for s in ("mean", "std")}
        summary = {
            "video": str(video), "frames": rec.num_frames, "duration_s": round(duration, 3), "fps": rec.fps,
            "face_fraction": float(detected.mean()) if rec.num_frames else 0.0, "audio": "not used",
            "frames_without_face": int((~detected).sum()), "warnings": warnings, **stats,
            "model": f"face_onnx:{Path(self.path).name}", "checkpoint": str(self.path),
            "checkpoint_sha256_16": sha256_file(self.path)[:16], "face_source": "crops" if rec.crops_dir else
            self.extractor.params["detector"],
            "trained_on": "face_model", "meaning": prediction_meaning("face_model"),
            "timings_s": {"total": round(wall, 3)}, "streamed": bool(self.stream and can_stream(rec, self.extractor)),
            "detect_every": self.extractor.params["detect_every"],
            "realtime_factor": round(duration / wall, 2) if wall > 0 else None, "device": "cpu",
        }
        return Prediction(frame, summary, boxes, extra)
