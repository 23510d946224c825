"""A trained checkpoint's predictor: exactly the preprocessing stored in the checkpoint — the same extractors with
the same settings, the same face source, the same window length and hop — with window predictions stitched over
the whole video. Three paths give the same values:

- **streamed** (the default, when the visual extractor describes single face crops or clips): one decode in a
  background thread, the face pipeline frame by frame, crops described in chunks, each window run as soon as its
  steps are there (:mod:`avaffect.features.face_stream`, :mod:`avaffect.evaluation.streaming`), so memory does not
  grow with the video's length;
- **whole video** (``stream=False``, a crops folder, or ``clip_every`` > 1): every crop and feature held first;
- **authors' clips** (``step_frames`` k > 1, a model converted by ``avaffect convert-official``): one timeline
  step per non-overlapping k-frame clip ending at its last frame, streamed or whole; every frame gets its clip's
  prediction, so the CSV stays one row per frame.

The model runs with ONNX Runtime when the checkpoint has a matching export beside it (``model.onnx``, written by
``train`` and ``avaffect export``; :mod:`avaffect.deploy.onnx_model`) and the device is the CPU: torch is then never
imported (about 2 s of the command's start-up). Otherwise, and for ``runtime="torch"``, the torch model runs: the
imports of torch below sit inside the functions that need it, for that reason.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from avaffect.data.folder import recording_from_video
from avaffect.data.recording import Recording
from avaffect.deploy.formats import (
    DEPLOY_FILE,
    OFFICIAL_FORMAT,
    read_array,
    read_checkpoint_meta,
    read_deploy_meta,
    read_format,
)
from avaffect.deploy.onnx_model import OnnxWindows, find_deployed, find_export
from avaffect.errors import AvaffectError, NoAudioStreamError
from avaffect.evaluation.explain import contribution_columns, occlusion_runner, split_occlusion
from avaffect.evaluation.overlay import va_columns
from avaffect.evaluation.streaming import WindowRunner, predict_chunks, predict_windows
from avaffect.features.extractors import Extractor, get_extractor
from avaffect.features.face_stream import (
    FeatureChunk,
    StreamStats,
    can_stream,
    iter_crop_chunks,
    iter_face_feature_chunks,
    video_streamable,
)
from avaffect.features.faces import load_face_crops
from avaffect.features.faces.detectors import AUTO, resolve_detector
from avaffect.features.faces.pipeline import face_pipeline
from avaffect.features.faces.quality import QUALITY_RULE, QualityLog
from avaffect.features.faces.source import resolve_face_source
from avaffect.features.preprocessing_spec import ExtractorRecord
from avaffect.files import sha256_file
from avaffect.media import prefetch
from avaffect.onnxrt import onnxruntime_available
from avaffect.workflows.predict.passes import DrawnOverlay, overlay_pass, whole_video_features
from avaffect.workflows.predict.result import ModelInfo, PredictionRun, PredictorOptions, Traces, VideoPredictor

log = logging.getLogger(__name__)

#: ``avaffect calibrate``'s record beside a checkpoint: the post-processing fitted on the user's labels
CALIBRATION_FILE, CALIBRATION_FORMAT = "calibration.json", "avaffect-calibration-1"


def _clip_faces(mask: np.ndarray, k: int) -> np.ndarray:
    """The face mask of consecutive ``k``-frame clips (the last may be shorter): a clip has a face where any of its
    frames has one."""
    return np.logical_or.reduceat(mask, np.arange(0, len(mask), k)) if len(mask) else np.zeros(0, bool)


def _stream_stages(st: StreamStats, elsewhere_s: float) -> dict[str, float]:
    """The streamed pass's seconds per stage; the chunks' clock ran on while their consumer worked between chunks
    (the model, the audio features), so ``elsewhere_s`` is taken out of ``crop`` and of the video stage."""
    st.crop, st.total = max(0.0, st.crop - elsewhere_s), max(0.0, st.total - elsewhere_s)
    stages = st.as_dict()
    stages["video"] = stages.pop("total")
    return stages


class Predictor(VideoPredictor):
    """A checkpoint (``model.safetensors`` of a run) loaded once, ready for many videos."""

    CLIP_CHUNK = 32  # clips per streamed chunk on the authors'-model path

    def __init__(self, checkpoint: str | Path, options: PredictorOptions | None = None) -> None:
        """``checkpoint``: ``model.safetensors`` of a run (or a folder written by ``avaffect export --out``);
        ``options``: how it runs and what it adds (:class:`PredictorOptions`)."""
        o = options or PredictorOptions()
        self.options = o
        device, stream, detect_every, runtime = o.device, o.stream, o.detect_every, o.runtime
        explain, face_quality, min_face_quality = o.explain, o.face_quality, o.min_face_quality
        self.checkpoint = Path(checkpoint)
        # a folder written by `avaffect export --out`: the ONNX model and deploy.safetensors, no torch weights
        self.deployed = self.checkpoint.is_dir() and (self.checkpoint / DEPLOY_FILE).is_file()
        self.home = self.checkpoint if self.deployed else self.checkpoint.parent  # where side files sit
        self.device, self.stream, self.detect_every, self.runtime = device, stream, detect_every, runtime
        self.explain = explain
        self._gates: tuple[list[str], WindowRunner] | None = None  # --explain: the gate columns and their runner
        if min_face_quality is not None and not 0 <= min_face_quality <= 1:
            raise AvaffectError(f"--min-face-quality must be in [0, 1], got {min_face_quality}")
        self.face_quality, self.min_face_quality = face_quality or min_face_quality is not None, min_face_quality
        sha = sha256_file(self.checkpoint / DEPLOY_FILE if self.deployed else self.checkpoint) \
            if self.deployed or self.checkpoint.is_file() else ""
        self.run, self.meta, self.audio_mean = self._load(sha)
        self.calibration = self._calibration(sha)
        self.spec = self.meta["preprocessing"]
        self.targets = list(self.spec.targets)
        self.audio_ex = self._extractor("audio extractor", self.spec.audio_extractor)
        self.video_ex = self._extractor("video extractor", self.spec.video_extractor)
        # the face pipeline of the checkpoint: the authors'-model path cuts its crops with it, and the people pass
        # of --faces all and the whole-video path's boxes use it
        self.faces = self.spec.faces.pipeline
        if detect_every is not None:
            if self.spec.step_frames > 1:
                self.faces = face_pipeline(**{**self.faces.model_dump(), "detect_every": detect_every})
            elif "detect_every" not in self.video_ex.params:
                raise AvaffectError(f"--detect-every: the video extractor {self.video_ex.name} of {self.checkpoint} "
                                    "does not detect faces frame by frame")
            else:
                params = {**self.video_ex.params, "detect_every": int(detect_every)}
                self.video_ex = get_extractor(self.video_ex.name, **params)
        if self.spec.step_frames == 1 and self.video_ex.face_pipeline() is not None:
            self.faces = self.video_ex.face_pipeline()
        every = self.faces.detect_every if self.spec.step_frames > 1 else self.video_ex.params.get("detect_every")
        self.info = ModelInfo(model=self.meta["model"]["name"], checkpoint=self.checkpoint,
                              checkpoint_sha256_16=sha[:16], trained_on=self.spec.trained_on,
                              targets=tuple(self.targets), detect_every=every, device=device, faces=self.faces,
                              runtime="onnxruntime" if isinstance(self.run, OnnxWindows) else "torch",
                              modality_dropout=(self.meta.get("extra") or {}).get("modality_dropout"))

    def _load(self, sha: str) -> tuple[WindowRunner, dict, np.ndarray]:
        """The model's runner, the checkpoint's metadata and the audio features' training mean (what a video
        without audio gets), from the ONNX export or the torch model (module docstring)."""
        if self.runtime not in ("auto", "torch", "onnx"):
            raise AvaffectError(f"runtime must be auto, torch or onnx, not {self.runtime!r}")
        if self.device not in ("cpu", "cuda"):
            raise AvaffectError(f"--device must be cpu or cuda, not {self.device!r}")
        if self.deployed:  # an exported folder: ONNX Runtime only
            if self.runtime == "torch":
                raise AvaffectError(f"{self.checkpoint} is an exported model (ONNX): it runs with ONNX Runtime, not "
                                    "--runtime torch; give the checkpoint it came from for torch")
            if self.device != "cpu":
                raise AvaffectError(f"{self.checkpoint} is an exported model: it runs on the CPU (drop --device)")
            deploy = self.checkpoint / DEPLOY_FILE
            return OnnxWindows(find_deployed(self.checkpoint)), read_deploy_meta(deploy), read_array(deploy,
                                                                                                       "audio_mean")
        official = read_format(self.checkpoint) == OFFICIAL_FORMAT
        # --explain reads a gated model's gate weights, which only the torch model gives: torch unless onnx is asked
        onnx_ok = self.runtime == "onnx" or (self.runtime == "auto" and not self.explain)
        if onnx_ok and self.device == "cpu" and not official:
            meta = read_checkpoint_meta(self.checkpoint)
            export = find_export(self.checkpoint, sha)
            if export is not None and onnxruntime_available():
                return OnnxWindows(export), meta, read_array(self.checkpoint, "audio_mean")
        if self.runtime == "onnx":
            raise AvaffectError(f"{self.checkpoint}: --runtime onnx needs its ONNX export beside it, made from this "
                                f"very file, and the CPU: run `avaffect export {self.checkpoint}` (an authors' model "
                                "runs with torch only)")
        import torch  # lazy: only where the torch model runs (module docstring)

        from avaffect.evaluation.inference import torch_runner  # lazy: imports torch
        from avaffect.models.checkpoint import load_for_prediction  # lazy: imports torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise AvaffectError("--device cuda asked for, but no CUDA device is available here; use --device cpu")
        model, meta = load_for_prediction(self.checkpoint, device=self.device)
        self._model = model
        return torch_runner(model, self.device), meta, model.audio_mean.cpu().numpy()

    def _calibration(self, sha: str) -> tuple[Any, dict] | None:
        """``avaffect calibrate``'s chain beside the checkpoint, when it was fitted for this very file."""
        path = self.home / CALIBRATION_FILE
        if not path.is_file():
            return None
        from avaffect.evaluation.postprocess import PostProcessor  # lazy: imports the config, which imports torch

        try:
            record = json.loads(path.read_text())
            if record.get("format") != CALIBRATION_FORMAT:
                raise ValueError(f"format {record.get('format')!r}")
            pp = PostProcessor.from_dict(record["postprocess"])
        except (ValueError, KeyError, TypeError) as e:
            raise AvaffectError(f"{path}: not a calibration record ({e}); run `avaffect calibrate` again or remove "
                                "the file") from None
        if record.get("checkpoint_sha256") != sha:
            log.warning("%s was fitted for another checkpoint than %s: not applied", path, self.checkpoint)
            return None
        return pp, {"file": str(path), "heldout_ccc": record.get("heldout_ccc"),
                    "delay": pp.delay, "window": pp.window}

    def _extractor(self, what: str, record: ExtractorRecord) -> Extractor:
        try:
            ex = get_extractor(record.name, **record.params_beside(self.home))
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
            if record.id in ex.auto_ids():  # its face detector auto runs another detector here than where it was made
                log.info("%s: the face detector auto runs %s here (feature id %s; the checkpoint was made where it "
                         "ran another: %s)", self.checkpoint, resolve_detector(AUTO), ex.id, record.id)
            else:
                log.warning("%s: extractor %s has id %s here but %s in the checkpoint (another version?)",
                            self.checkpoint, record.name, ex.id, record.id)
        return ex

    def make_run(self, video: str, rec: Recording, tr: Traces, wall: float) -> PredictionRun:
        run = super().make_run(video, rec, tr, wall)
        if self.calibration is not None:
            run.summary.calibration = self.calibration[1]
        if self.face_quality:
            run.summary.face_quality = {"rule": QUALITY_RULE, "min_face_quality": self.min_face_quality,
                                        "frames_masked": tr.faces.get("quality_masked")}
        return run

    def spawn_args(self) -> tuple[type, tuple]:
        return type(self), (str(self.checkpoint), self.options)

    def recording(self, video: str | Path, crops_dir: str | Path | None = None) -> Recording:
        rec = recording_from_video(video, crops_dir=crops_dir)
        if self.spec.faces.source == "crops" and crops_dir is None:
            log.info("%s: the model was trained on a dataset's face crops; without --crops the %s detector runs "
                     "on the video instead", video, self.faces.detector)
        return rec

    def traces(self, rec: Recording, overlay_to: Path | None) -> Traces:
        t0 = time.perf_counter()
        streams = self.spec.step_frames == 1 and self.stream and can_stream(rec, self.video_ex)
        if self.face_quality and not streams:  # measured frame by frame as the face pipeline runs: said, not skipped
            why = ("an authors' clip model" if self.spec.step_frames > 1 else "--no-stream" if not self.stream
                   else f"the faces come from a crops folder or {self.video_ex.name} does not describe single crops")
            raise AvaffectError(f"{rec.video_path}: --face-quality / --min-face-quality are measured on the streaming "
                                f"path (the face pipeline frame by frame), which this prediction does not take ({why});"
                                " drop --no-stream, or the quality options")
        if self.spec.step_frames > 1:
            if self.explain:
                raise AvaffectError(f"{self.checkpoint}: --explain does not cover an authors' clip model yet")
            tr = self._clip_traces(rec)
        else:
            if streams:
                tr = self._streamed(rec, overlay_to)
            else:
                audio, state = self._audio(rec)
                stages = {"audio": round(time.perf_counter() - t0, 3)}
                tr = self._whole(rec, audio)
                tr.audio, tr.stages = state, {**stages, **tr.stages}
        if self.explain:
            tr.values, parts, gates = split_occlusion(tr.values, len(self.targets))
            voicing = tr.extra.pop("voicing", None)  # (NaN where there is no audio)
            known = voicing is not None and tr.audio == "present" and len(voicing) == rec.num_steps
            tr.extra = {"voicing": voicing if known else np.full(rec.num_steps, np.nan, np.float32),
                        **contribution_columns(parts, self.targets)}
            names = self._gates[0] if self._gates else []
            tr.extra.update({name: gates[:, j].astype(np.float32) for j, name in enumerate(names)})
        if self.calibration is not None:  # avaffect calibrate's chain, on the whole video's values
            pp = self.calibration[0]
            cols = [self.targets.index(t) for t in pp.targets]
            tr.values = tr.values.copy()
            tr.values[:, cols] = pp.apply(tr.values[:, cols])
        if not np.isfinite(tr.values).all():
            raise AvaffectError(f"{self.checkpoint}: the model gave NaN/Inf predictions on {rec.video_path}; the "
                                "checkpoint is broken (train it again)")
        return tr

    def _audio(self, steps: Recording) -> tuple[np.ndarray, str]:
        """The audio features of ``steps``' timeline, or the training mean when the video has no audio track."""
        try:
            return self.audio_ex.extract(steps), "present"
        except NoAudioStreamError:
            log.info("%s has no audio track: audio features set to the training mean", steps.video_path)
            return np.tile(self.audio_mean, (steps.num_steps, 1)), "missing"

    def _audio_blocks(self, rec: Recording, clock: dict[str, float], voicing: list[np.ndarray] | None = None
                      ) -> tuple[Iterator, str]:
        """The audio features of ``rec`` in blocks of steps, computed as the windows need them (memory independent
        of the video's length; :meth:`_streamed` runs them in a thread of their own, a couple of blocks ahead), the
        seconds spent in them summed into ``clock["audio"]``; the training mean,
        block by block, when the video has no audio track. ``voicing``: each block's voicing column appended
        there (``--explain``; a float a step), where the audio extractor has one."""
        try:
            blocks = self.audio_ex.iter_steps(rec)
        except NoAudioStreamError:
            log.info("%s has no audio track: audio features set to the training mean", rec.video_path)
            n, size = rec.num_steps, 4096
            return ((lo, min(n, lo + size), np.tile(self.audio_mean, (min(n, lo + size) - lo, 1)))
                    for lo in range(0, n, size)), "missing"

        column = getattr(self.audio_ex, "voicing_column", None) if voicing is not None else None

        def timed() -> Iterator:
            while True:
                t0 = time.perf_counter()
                block = next(blocks, None)
                clock["audio"] += time.perf_counter() - t0
                if block is None:
                    return
                if column is not None:
                    voicing.append(block[2][:, column()].astype(np.float32))
                yield block

        return timed(), "present"

    def _streamed(self, rec: Recording, overlay_to: Path | None) -> Traces:
        """One decode, chunks of crops, windows as they fill (the overlay drawn as values become final); the audio
        features computed block by block as the windows reach them."""
        st, timing, drawn, clock = StreamStats(), {}, DrawnOverlay(), {"audio": 0.0}
        quality = QualityLog() if self.face_quality else None
        voicing: list[np.ndarray] | None = [] if self.explain else None
        t0 = time.perf_counter()
        audio, state = self._audio_blocks(rec, clock, voicing)
        if state == "present":  # computed in a thread of their own, two blocks ahead of the windows
            audio = prefetch(audio, depth=2, stats=clock)
        opening = time.perf_counter() - t0  # before the pass: not in its clock
        with overlay_pass(rec, overlay_to, drawn) as overlay:
            chunks = iter_face_feature_chunks(rec, self.video_ex, stats=st,
                                              frame_sink=overlay.frame if overlay else None, quality=quality,
                                              min_quality=self.min_face_quality)
            on_final = (lambda lo, v, b: overlay.final(lo, va_columns(v, self.targets), b)) if overlay else None
            pred, face, boxes = predict_chunks(self._runner(), audio, chunks, rec.num_steps, self.spec.window,
                                               self.spec.hop, timings=timing,
                                               on_final=on_final if not self.explain else self._first(on_final))
        model_s = timing.get("model", 0.0)
        # the audio's own thread: its busy time; this thread's chunk clock ran on only while it waited for a block
        stages = {"audio": round(opening + clock["audio"], 3),
                  **_stream_stages(st, model_s + clock.get("wait_seconds", 0.0))}
        tr = Traces(pred, face, boxes, True, audio=state, stages=stages, model_s=model_s, overlay=drawn.path,
                    overlay_frames_buffered=drawn.frames_buffered, faces=st.faces)
        if voicing:
            tr.extra["voicing"] = np.concatenate(voicing)
        if quality is not None:
            tr.extra.update(quality.columns(rec.num_steps))
            tr.faces["quality_masked"] = quality.masked
        return tr

    def _runner(self) -> WindowRunner:
        """The model's runner; with ``explain``, the occlusion runner around it (values, then contributions, then a
        gated model's gate weights when the torch model runs)."""
        if not self.explain:
            return self.run
        if self._gates is None:
            self._gates = ([], self.run)
            model = getattr(self, "_model", None)
            if model is not None:
                from avaffect.evaluation.inference import gate_source, gated_runner  # lazy: imports torch

                source = gate_source(model)
                if source is not None:
                    m = self.meta["model"]
                    run, names = gated_runner(self.run, source, self.spec.window, m["d_audio"], m["d_video"])
                    self._gates = (names, run)
        names, run = self._gates
        return occlusion_runner(run, self.audio_mean, len(self.targets), plain=self.run)

    def _first(self, on_final):
        """``on_final`` given the values only (the occlusion runner's first columns)."""
        if on_final is None:
            return None
        k = len(self.targets)
        return lambda lo, v, b: on_final(lo, v[:, :k], b)

    def _whole(self, rec: Recording, audio: np.ndarray) -> Traces:
        """Every crop and feature first, then the windows."""
        t0 = time.perf_counter()
        feats, face, boxes = whole_video_features(rec, self.video_ex, self.faces)
        t1 = time.perf_counter()
        pred = predict_windows(self._runner(), audio, feats, face, self.spec.window, self.spec.hop)
        tr = Traces(pred, face, boxes, False, stages={"video": round(t1 - t0, 3)}, model_s=time.perf_counter() - t1)
        column = getattr(self.audio_ex, "voicing_column", None) if self.explain else None
        if column is not None:
            tr.extra["voicing"] = np.asarray(audio[:, column()], np.float32)
        return tr

    # ------------------------------------------------------------------------------- the authors' models' clips

    def _clip_traces(self, rec: Recording) -> Traces:
        """``spec.step_frames`` = k > 1: one step per k-frame clip; each frame carries its clip's prediction."""
        k, n = int(self.spec.step_frames), rec.num_steps
        if not hasattr(self.video_ex, "clip_features"):
            raise AvaffectError(f"{self.checkpoint}: step_frames {k} needs a clip extractor, not {self.video_ex.name}")
        ends = np.minimum(np.arange(k - 1, n + k - 1, k), n - 1)  # the last frame of each clip
        clips = dataclasses.replace(rec, times=np.asarray(rec.times)[ends], labels=np.asarray(rec.labels)[ends],
                                    face_mask=np.asarray(rec.face_mask)[ends], extra={})
        t0 = time.perf_counter()
        audio, state = self._audio(clips)
        stages = {"audio": round(time.perf_counter() - t0, 3)}
        # the whole-video path's face source rule decides too: a crops folder is read, not streamed
        if self.stream and video_streamable(rec) and resolve_face_source(rec, "auto", self.faces.detector) == "video":
            tr = self._clips_streamed(rec, audio, ends)
        else:
            tr = self._clips_whole(rec, audio, ends)
        tr.values, tr.audio, tr.stages = tr.values[np.arange(n) // k], state, {**stages, **tr.stages}
        return tr

    def _clips_whole(self, rec: Recording, audio: np.ndarray, ends: np.ndarray) -> Traces:
        t0, k = time.perf_counter(), int(self.spec.step_frames)
        track = load_face_crops(rec, self.faces)
        crops, boxes = track.crops, track.boxes
        mask = track.crop_present & np.asarray(rec.face_mask, bool)
        video = self.video_ex.clip_features(crops, mask, ends)
        t1 = time.perf_counter()
        pred = predict_windows(self.run, audio, video, _clip_faces(mask, k), self.spec.window, self.spec.hop)
        return Traces(pred, mask, boxes, False, stages={"video": round(t1 - t0, 3)},
                      model_s=time.perf_counter() - t1)

    def _clips_streamed(self, rec: Recording, audio: np.ndarray, ends: np.ndarray) -> Traces:
        """One decode, the crops of ``k * CLIP_CHUNK`` frames at a time with the clip's reach before them, the clips
        of those frames described and the windows run as they fill, so memory does not grow with the video (the
        49 x 512 maps of a long video would)."""
        k, n = int(self.spec.step_frames), rec.num_steps
        mask = np.zeros(n, bool)
        boxes = np.full((n, 4), np.nan, np.float32)
        st, timing = StreamStats(), {}
        before, _ = self.video_ex.crop_context()

        def clip_chunks() -> Iterator[FeatureChunk]:
            for c in iter_crop_chunks(rec, self.faces, chunk=k * self.CLIP_CHUNK, before=before, stats=st):
                mask[c.lo:c.hi], boxes[c.lo:c.hi] = c.mask[c.own], c.boxes
                j0, j1 = c.lo // k, -(-c.hi // k)  # the clips that end in c.lo:c.hi (c.lo is a multiple of k)
                t1 = time.perf_counter()
                feats = self.video_ex.clip_features(c.crops, c.mask, ends[j0:j1] - c.start)
                st.features += time.perf_counter() - t1
                yield FeatureChunk(j0, j1, feats, _clip_faces(c.mask[c.own], k),
                                   np.full((j1 - j0, 4), np.nan, np.float32))

        pred, _, _ = predict_chunks(self.run, audio, clip_chunks(), len(ends), self.spec.window, self.spec.hop,
                                    timings=timing)
        model_s = timing.get("model", 0.0)
        return Traces(pred, mask, boxes, True, stages=_stream_stages(st, model_s), model_s=model_s, faces=st.faces)
