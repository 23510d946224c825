"""2-D ResNet extractors: per face crop (``resnet18_face``, ``resnet50_face``) and on audio
spectrograms (``spec_resnet18``, the RJA audio branch).

All use the ResNet architecture in torchvision's parameter names (``conv1``, ``bn1``, ``layer1`` ...
``layer4``); the classifier ``fc`` is removed, so ``fc.*`` entries of a weight file are ignored.
Any state dict in torchvision's naming loads: the registered ImageNet files, or your own
face-pretrained / fine-tuned ResNet (``weights=PATH``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from avaffect.data.recording import Recording
from avaffect.features.audio import mel_filterbank, stft_magnitude
from avaffect.features.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentPlan,
    TorchExtractor,
    TorchParams,
    window_starts,
)
from avaffect.features.extractors.base import Positive, register_extractor
from avaffect.features.face_stream import face_features
from avaffect.features.faces.pipeline import face_field
from avaffect.features.temporal_align import CONTEXTS
from avaffect.features.weights import (
    TORCHVISION_LICENSE,
    TORCHVISION_URL,
    UserSupplied,
    WeightFile,
    public_file,
    register_weights,
)
from avaffect.media import read_audio

__all__ = ["IMAGE_NORMALIZATIONS", "FaceResNet", "ImageNormalization", "ResNet18Face", "ResNet50Face", "SpecResNet18",
           "rja_log_mel"]

_WIDTH = {"resnet18": 512, "resnet50": 2048}


# image normalisations of the face ResNets: (mean, std) per RGB channel on [0, 1] pixels. "half" is ABAW8's
# "normalized in order to have a mean and standard deviation of 0.5" read as torchvision's Normalize(0.5, 0.5).
IMAGE_NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # VGG-Face's inputs: 0-255 RGB minus the training set's mean pixel (129.186, 104.762, 93.594), unit scale
    "vggface": ((129.186279296875 / 255, 104.76238250732422 / 255, 93.59396362304688 / 255), (1 / 255,) * 3),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
#: a parameter naming one of :data:`IMAGE_NORMALIZATIONS`
ImageNormalization = Literal[tuple(IMAGE_NORMALIZATIONS)]


# the weight files these networks load, declared here beside them (avaffect weights list)
RESNET18_IMAGENET = public_file("resnet18_imagenet", TORCHVISION_URL + "resnet18-f37072fd.pth", TORCHVISION_LICENSE,
                                ("resnet18_face", "spec_resnet18"),
                                "torchvision ResNet-18, ImageNet-1k (IMAGENET1K_V1)")
RESNET50_IMAGENET = public_file("resnet50_imagenet", TORCHVISION_URL + "resnet50-0676ba61.pth", TORCHVISION_LICENSE,
                                ("resnet50_face",), "torchvision ResNet-50, ImageNet-1k (IMAGENET1K_V1)")
public_file("resnet50_imagenet_v2", TORCHVISION_URL + "resnet50-11ad3fa6.pth", TORCHVISION_LICENSE, ("resnet50_face",),
            "torchvision ResNet-50, ImageNet-1k (IMAGENET1K_V2, the newer training recipe)")
register_weights(WeightFile(
    name="resnet50_msceleb_ferplus", filename="resnet50_msceleb_ferplus.pth",
    source=UserSupplied("the authors of the ABAW6 / ABAW8 papers (R. G. Praveen et al.); it is not published"),
    license="unknown: ask the file's authors", used_by=("resnet50_face",),
    description="ResNet-50 pretrained on MS-Celeb-1M and fine-tuned on FER+, the visual backbone of the ABAW6 and "
    "ABAW8 systems (Praveen et al.); not publicly served — obtain it from the papers' authors",
    note="needs torchvision's resnet50 parameter names (conv1, bn1, layer1..layer4; fc ignored); a file in another "
    "naming must be converted first. Its checksum is unknown, so it is not checked."))


def _drop_fc(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def prepare_crops(crops: np.ndarray, input_size: int, resize: str) -> np.ndarray:
    """uint8 ``[N, S, S, 3]`` crops → uint8 ``[N, input_size, input_size, 3]``: centre crop
    (``resize="center_crop"``, needs ``input_size <= S``; the ABAW 48 → 40 test-time crop) or
    resize (``"resize"``, area interpolation when shrinking)."""
    import cv2

    n, s = crops.shape[0], crops.shape[1]
    if s == input_size:
        return crops
    if resize == "center_crop" and input_size < s:
        off = (s - input_size) // 2
        return crops[:, off : off + input_size, off : off + input_size]
    interp = cv2.INTER_AREA if input_size < s else cv2.INTER_LINEAR
    out = np.empty((n, input_size, input_size, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = cv2.resize(crops[i], (input_size, input_size), interpolation=interp)
    return out


class FaceResNet(TorchExtractor):
    """ResNet features (torchvision's weight files) of each face crop.

    Crops come from :func:`avaffect.features.faces.load_face_crops` at ``crop_size`` (48 for the
    ABAW6/ABAW8 setting, 112 or 224), are brought to ``input_size`` (``resize``: ``center_crop``
    — 48 → 40 as at ABAW test time — or ``resize``), scaled to [0, 1] and normalised with the
    ImageNet mean/std (``normalize="imagenet"``; ``"half"``: mean and std 0.5, ABAW8; ``"vggface"``: VGG-Face's
    mean pixel on the 0-255 scale; ``"none"`` keeps [0, 1]).

    Output per step: the global average pool of ``layer4`` (``dim`` = 512 for ResNet-18, 2048 for
    ResNet-50), or with ``spatial=S`` (e.g. 7) the ``layer4`` map average-pooled to S x S and
    flattened region-major — ``[S*S*C]`` with region r's C features contiguous — for the RJA
    audio-guided spatial attention (``L x 49 x C`` after reshaping). ``detect_every``: run the face detector on
    every k-th frame and carry the tracked box in between (1: every frame; the speed and faces lost per k are in
    ``docs/benchmarks/face_tracking.md``). Steps without a face are zeros
    (``missing_face="zeros"``), or the network's output on a black frame (``"black_frame"``: the ABAW6/ABAW8
    rule, "black frames" for the frames without a face).
    """

    modality = "video"
    version = "1"
    arch = "resnet18"
    fine_tunable = True

    class Params(TorchParams):
        crop_size: int = face_field("crop_size", 112)
        input_size: int = Field(112, ge=32, description="side the network sees (px)")
        resize: Literal["resize", "center_crop"] = Field("resize", description="crop_size to input_size by resizing "
                                                         "or by a centre crop (ABAW: 48 → 40)")
        normalize: ImageNormalization = Field("imagenet", description="pixel normalisation: " +
                                              ", ".join(IMAGE_NORMALIZATIONS))
        spatial: int = Field(0, ge=0, description="0: the pooled layer4 vector; S: the layer4 map pooled to S x S")
        detector: str = face_field("detector")
        detect_every: int = face_field("detect_every")
        eyes_every: int = face_field("eyes_every")
        missing_face: Literal["zeros", "black_frame"] = Field("zeros", description="a step without a face: zeros, or "
                                                              "the network's output on a black frame (ABAW)")

    late_defaults = {"missing_face": "zeros", "detect_every": 1, "eyes_every": 1}

    @property
    def channels(self) -> int:
        return _WIDTH[self.arch]

    @property
    def dim(self) -> int:
        s = int(self.params["spatial"])
        return self.channels * (s * s if s else 1)

    def build_network(self):
        from avaffect.features.backbones.nets import resnet_features  # lazy: nets imports torch

        return resnet_features(self.arch, in_channels=3, spatial=int(self.params["spatial"]))

    def adapt_state_dict(self, state, net):
        return _drop_fc(state)

    def describe_weights_format(self) -> str:
        return f"torchvision's {self.arch} naming (conv1, bn1, layer1..layer4; fc ignored)"

    def input_step(self):
        from avaffect.features.backbones.nets import pixel_normalizer  # lazy: nets imports torch

        return pixel_normalizer(*IMAGE_NORMALIZATIONS[self.params["normalize"]])

    def features_from_crops(self, crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[T, dim]`` from uint8 RGB crops ``[T, S, S, 3]`` and the face mask ``[T]`` (zeros where no face)."""
        mask = np.asarray(mask, dtype=bool)
        out = np.zeros((len(mask), self.dim), dtype=np.float32)
        if self.params["missing_face"] == "black_frame":  # the crops of steps without a face are black (zeros)
            crops = np.where(mask[:, None, None, None], crops, 0).astype(np.uint8)
            mask = np.ones_like(mask)
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return out
        p = self.params
        inputs = prepare_crops(np.asarray(crops)[idx], int(p["input_size"]), p["resize"])
        out[idx] = self.run_batches(inputs)
        return out

    def extract(self, rec: Recording) -> np.ndarray:
        return face_features(rec, self)


@register_extractor
class ResNet18Face(FaceResNet):
    __doc__ = FaceResNet.__doc__
    name = "resnet18_face"
    arch = "resnet18"
    default_weights = RESNET18_IMAGENET.name


@register_extractor
class ResNet50Face(FaceResNet):
    __doc__ = FaceResNet.__doc__
    name = "resnet50_face"
    arch = "resnet50"
    default_weights = RESNET50_IMAGENET.name

    class Params(FaceResNet.Params):
        crop_size: int = face_field("crop_size", 48)
        input_size: int = Field(40, ge=32, description="side the network sees (px)")
        resize: Literal["resize", "center_crop"] = Field("center_crop", description="crop_size to input_size by "
                                                         "resizing or by a centre crop (ABAW: 48 → 40)")
        batch_size: Positive = Field(64, description="inputs per forward pass (does not change the features)")


def rja_log_mel(
    wav: np.ndarray,
    sample_rate: int = 44100,
    frame_window: float = 0.020,
    frame_hop: float = 0.010,
    fft_size: int = 1024,
    n_mels: int = 64,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mel power spectrogram in dB ``[F, n_mels]`` (``10 log10(max(mel, 1e-10))``) and frame centre times."""
    wav = np.asarray(wav, dtype=np.float32)
    win = int(round(frame_window * sample_rate))
    if len(wav) < win:
        wav = np.pad(wav, (0, win - len(wav)))
    mag, times = stft_magnitude(wav, sample_rate, frame_window, frame_hop, fft_size)
    bank = mel_filterbank(n_mels, mag.shape[1], sample_rate, fmin, fmax or sample_rate / 2.0).astype(np.float32)
    mel = (mag * mag) @ bank
    return 10.0 * np.log10(np.maximum(mel, 1e-10)), times


@register_extractor
class SpecResNet18(TorchExtractor):
    """RJA audio branch: ResNet-18 on a 64-mel spectrogram segment per timeline step → 512-d.

    Front end (as in the RJA / JCA authors' data loader): audio at 44.1 kHz mono, Hann windows of
    20 ms every 10 ms, 1024-point FFT, power spectrum → 64 HTK-mel bands 0–22.05 kHz, in dB
    (``10 log10``), standardised with the authors' constants ``(x + 14.8) / 19.895``
    (``norm_mean``, ``norm_std``). Per step a segment of ``segment_frames`` (107 ≈ 1.07 s) frames
    ending at the step (``context="causal"``, the RJA code; ``forward`` / ``centered`` also
    work); audio before 0 or past the end counts as silence. The ``[1, 64, frames]`` image (mel x
    time) goes through ResNet-18 with a 1-channel first convolution and global average pooling.

    Loading torchvision's 3-channel ImageNet weights: ``conv1.weight [64, 3, 7, 7]`` is summed
    over its colour channels to ``[64, 1, 7, 7]`` (exactly the 3-channel network fed the grey image
    in all three channels); a 1-channel ``conv1`` (a model trained on spectrograms) loads as is.
    ``fc.*`` is ignored. Weights default to the registered ``"resnet18_imagenet"``.
    """

    name = "spec_resnet18"
    modality = "audio"
    version = "1"
    default_weights = RESNET18_IMAGENET.name

    class Params(TorchParams):
        context: Literal[CONTEXTS] = Field("causal", description="the segment ends at the step (causal), starts at "
                                           "it (forward) or is centred on it")
        sample_rate: Positive = Field(44100, description="audio decoded to this rate (Hz)")
        n_mels: int = Field(64, ge=32, description="mel bands")
        frame_window: float = Field(0.020, gt=0, description="analysis frame (s)")
        frame_hop: float = Field(0.010, gt=0, description="analysis hop (s)")
        fft_size: Positive = Field(1024, description="FFT size (samples), at least frame_window * sample_rate")
        fmin: float = Field(0.0, ge=0, description="lowest mel frequency (Hz)")
        fmax: float | None = Field(None, description="highest mel frequency (Hz); None: sample_rate / 2")
        segment_frames: int = Field(107, ge=32, description="spectrogram frames per step's segment (~1.07 s)")
        norm_mean: float = Field(-14.8, description="log-mel standardisation mean")
        norm_std: float = Field(19.895, gt=0, description="log-mel standardisation std")

        @model_validator(mode="after")
        def _ranges(self) -> SpecResNet18.Params:
            fmax = self.fmax if self.fmax is not None else self.sample_rate / 2
            if not self.fmin < fmax <= self.sample_rate / 2:
                raise ValueError("need 0 <= fmin < fmax <= sample_rate / 2")
            if int(round(self.frame_window * self.sample_rate)) > self.fft_size:
                raise ValueError("fft_size must be at least frame_window * sample_rate samples")
            return self

    @property
    def dim(self) -> int:
        return 512

    def build_network(self):
        from avaffect.features.backbones.nets import resnet_features  # lazy: nets imports torch

        return resnet_features("resnet18", in_channels=1)

    def adapt_state_dict(self, state, net):
        from avaffect.features.backbones.nets import conv1_to_gray  # lazy: nets imports torch

        state = _drop_fc(state)
        w = state.get("conv1.weight")
        if w is not None and w.ndim == 4 and w.shape[1] == 3:
            state["conv1.weight"] = conv1_to_gray(w)
        return state

    def describe_weights_format(self) -> str:
        return "torchvision's resnet18 naming (conv1 with 1 or 3 input channels, bn1, layer1..layer4; fc ignored)"

    def log_mel(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        return rja_log_mel(
            wav, int(p["sample_rate"]), p["frame_window"], p["frame_hop"], int(p["fft_size"]), int(p["n_mels"]),
            p["fmin"], p["fmax"],
        )

    def segment_plan(self, wav: np.ndarray, timeline: np.ndarray) -> SegmentPlan:
        """The standardised log-mel frames and each step's segment start (see :class:`SegmentPlan`)."""
        p = self.params
        db, _ = self.log_mel(wav)
        db = ((db - p["norm_mean"]) / p["norm_std"]).astype(np.float32)
        silence = float((-100.0 - p["norm_mean"]) / p["norm_std"])  # 10 log10(1e-10), standardised
        n = int(p["segment_frames"])
        starts = window_starts(np.asarray(timeline, dtype=np.float64), n * p["frame_hop"], p["context"])
        first = np.round(starts / p["frame_hop"]).astype(np.int64)
        return SegmentPlan(db, first, n, silence, time_major=False)

    def features_from_waveform(self, wav: np.ndarray, timeline: np.ndarray) -> np.ndarray:
        """``[len(timeline), 512]`` from mono audio at ``sample_rate`` starting at time 0."""
        timeline = np.asarray(timeline, dtype=np.float64)
        if len(timeline) == 0:
            return np.zeros((0, self.dim), np.float32)
        plan = self.segment_plan(wav, timeline)
        out = np.empty((len(timeline), self.dim), dtype=np.float32)
        bs = int(self.params["batch_size"]) * 8  # build segments in chunks to bound memory on long recordings
        for lo in range(0, len(timeline), bs):
            out[lo : lo + bs] = self.run_batches(plan.segments(slice(lo, lo + bs)))
        return out

    def extract(self, rec: Recording) -> np.ndarray:
        wav = read_audio(self.audio_source(rec), sample_rate=int(self.params["sample_rate"]))
        return self.features_from_waveform(wav, rec.times)
