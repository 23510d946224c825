"""A face model's own valence/arousal, no avaffect training (``predict --face-model``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avaffect.data.folder import recording_from_video
from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError
from avaffect.features.backbones.onnx_face import FaceOnnx
from avaffect.features.extractors import get_extractor
from avaffect.features.face_stream import StreamStats, can_stream, iter_face_feature_chunks
from avaffect.files import sha256_file
from avaffect.workflows.predict.passes import DrawnOverlay, overlay_pass, whole_video_features
from avaffect.workflows.predict.result import ModelInfo, Traces, VideoPredictor


class FaceModelPredictor(VideoPredictor):
    """Per-frame valence/arousal straight from a face model: an ONNX file in the EmotiEffLib layout, run by the
    ``face_onnx`` extractor on each detected face (the same face pipeline and streaming as
    :class:`~avaffect.workflows.predict.checkpoint.Predictor`). No avaffect training and no audio are involved;
    frames without a face have no value (NaN). The numbers mean what the model's training set (AffectNet, for the
    EmotiEffLib files) made them mean: zero-shot still-image estimates, not a model trained on your data."""

    no_face_consequence = "there are no values"

    def __init__(self, face_model: str, device: str = "cpu", stream: bool = True, detect_every: int | None = None,
                 input_size: int | None = None, normalize: str | None = None) -> None:
        if device != "cpu":
            raise AvaffectError("--face-model runs on the CPU (onnxruntime's CPU provider); drop --device")
        self.face_model, self.device, self.stream = face_model, device, stream
        self.detect_every, self.input_size, self.normalize = detect_every, input_size, normalize
        params = {"weights": face_model, "output": "va", "input_size": input_size, "normalize": normalize}
        if detect_every is not None:
            params["detect_every"] = int(detect_every)
        self.extractor: FaceOnnx = get_extractor("face_onnx", **params)
        self.path = self.extractor.weights_path()  # a missing file: where to get it and where to put it
        self.extractor.load_model()  # a broken file fails here, before any video (onnxruntime imported here)
        self.info = ModelInfo(model=f"face_onnx:{Path(self.path).name}", checkpoint=Path(self.path),
                              checkpoint_sha256_16=sha256_file(self.path)[:16], trained_on="face_model",
                              targets=("valence", "arousal"), detect_every=self.extractor.params["detect_every"],
                              device="cpu", faces=self.extractor.face_pipeline())

    def spawn_args(self) -> tuple[type, tuple]:
        return type(self), (self.face_model, self.device, self.stream, self.detect_every, self.input_size,
                            self.normalize)

    def recording(self, video: str | Path, crops_dir: str | Path | None = None) -> Recording:
        return recording_from_video(video, crops_dir=crops_dir)

    def traces(self, rec: Recording, overlay_to: Path | None) -> Traces:
        n = rec.num_steps
        if self.stream and can_stream(rec, self.extractor):
            values = np.zeros((n, 2), np.float32)
            detected = np.zeros(n, bool)
            boxes = np.full((n, 4), np.nan, np.float32)
            st, drawn = StreamStats(), DrawnOverlay()
            with overlay_pass(rec, overlay_to, drawn) as overlay:
                for c in iter_face_feature_chunks(rec, self.extractor, stats=st,
                                                  frame_sink=overlay.frame if overlay else None):
                    values[c.lo:c.hi], detected[c.lo:c.hi], boxes[c.lo:c.hi] = c.features, c.face_mask, c.boxes
                    if overlay:  # a frame's value is final with its chunk: no windows here
                        overlay.final(c.lo, np.where(c.face_mask[:, None], c.features, np.nan), c.boxes)
            stages = st.as_dict()
            stages["video"] = stages.pop("total")
            tr = Traces(values, detected, boxes, True, stages=stages, overlay=drawn.path,
                        overlay_frames_buffered=drawn.frames_buffered, faces=st.faces)
        else:
            values, detected, boxes = whole_video_features(rec, self.extractor)
            if boxes is None:  # faces from a crops folder: where they sat in the video is not known
                boxes = np.full((n, 4), np.nan, np.float32)
            tr = Traces(values, detected, boxes, False)
        tr.values = np.where(tr.face[:, None], tr.values, np.nan)
        tr.audio = "not used"
        return tr
