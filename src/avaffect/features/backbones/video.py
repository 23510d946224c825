"""3-D CNN clip extractor: R(2+1)D-18 (or R3D-18 / MC3-18; torchvision's weight files) on face-crop clips
(RJA visual branch)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError
from avaffect.features.backbones.base import IMAGENET_MEAN, IMAGENET_STD, TorchExtractor, TorchParams
from avaffect.features.backbones.resnet import prepare_crops
from avaffect.features.extractors.base import Positive, register_extractor
from avaffect.features.face_stream import face_features
from avaffect.features.faces.pipeline import FacePipeline, face_field
from avaffect.features.temporal_align import CONTEXTS
from avaffect.features.weights import TORCHVISION_LICENSE, TORCHVISION_URL, public_file

__all__ = ["R2Plus1D18Clip", "clip_indices", "CLIP_NORMALIZATIONS", "KINETICS_MEAN", "KINETICS_STD"]

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

# (mean, std) per RGB channel on [0, 1] pixels; pm1: (x - 0.5) / 0.5 = x/127.5 - 1 on uint8
CLIP_NORMALIZATIONS = {"kinetics": (KINETICS_MEAN, KINETICS_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                       "pm1": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}

# the weight file of each architecture, declared here beside the network that loads it
_ARCH_WEIGHTS = {
    arch: public_file(name, TORCHVISION_URL + file, TORCHVISION_LICENSE, ("r2plus1d18_clip",),
                      f"torchvision {title} video network, Kinetics-400" + note).name
    for arch, name, file, title, note in (
        ("r2plus1d_18", "r2plus1d18_kinetics400", "r2plus1d_18-91a641e6.pth", "R(2+1)D-18", " (KINETICS400_V1)"),
        ("r3d_18", "r3d18_kinetics400", "r3d_18-b3b3357e.pth", "R3D-18", " (r2plus1d18_clip with arch='r3d_18')"),
        ("mc3_18", "mc3_18_kinetics400", "mc3_18-a90a0ba3.pth", "MC3-18", " (r2plus1d18_clip with arch='mc3_18')"),
    )
}


def clip_indices(num_steps: int, clip_len: int, stride: int, context: str) -> np.ndarray:
    """``[T, clip_len]`` step indices of the clip of each step: ending at it (``causal``), starting at
    it (``forward``) or centred on it (``centered``: the step is frame ``clip_len // 2``), frames
    ``stride`` steps apart. Indices outside ``[0, T)`` are ``-1`` (a blank frame)."""
    offsets = np.arange(clip_len) * stride
    if context == "causal":
        offsets = offsets - offsets[-1]
    elif context == "centered":
        offsets = offsets - offsets[clip_len // 2]
    elif context != "forward":
        raise ConfigError(f"unknown context {context!r}; use causal, forward or centered")
    idx = np.arange(num_steps)[:, None] + offsets[None, :]
    return np.where((idx >= 0) & (idx < num_steps), idx, -1)


@register_extractor
class R2Plus1D18Clip(TorchExtractor):
    """R(2+1)D-18 features (512-d) of an ``clip_len``-frame clip of face crops per step.

    The clip of step i holds the crops of steps ``i - (clip_len-1)*frame_stride .. i`` (``context=
    "causal"``, the default: the clip ends at the step), or starts at / is centred on it. Crops come
    from :func:`avaffect.features.faces.load_face_crops` at ``crop_size``, are resized to
    ``input_size`` (112 as for Kinetics), scaled to [0, 1] and normalised (``normalize``:
    ``"kinetics"`` — torchvision's video mean/std, the default — ``"imagenet"`` or ``"pm1"``,
    ``x/127.5 - 1`` as in the RJA/JCA authors' loader). Frames without a face and frames before the
    start or after the end of the recording are blank (zero) images; a step without a face gets a
    zero vector. ``arch`` selects ``r2plus1d_18`` (default), ``r3d_18`` or ``mc3_18``; parameter
    names are torchvision's (``stem``, ``layer1`` .. ``layer4``; ``fc`` ignored). Default weights:
    the registered Kinetics-400 file of the architecture.

    ``clip_every`` = k > 1 runs the network on every k-th face step's clip only and gives each face step the
    features of the nearest such step: about k times less compute, an approximation (neighbouring clips overlap
    in ``clip_len - 1`` of their frames, so their features are close but not equal; measured in
    ``docs/benchmarks/clip_every.md``). 1 (default): every step's own clip.

    ``spatial_map``: ``true`` keeps the last convolution's spatial map, averaged over time only: ``512 x S x S``
    (S = input_size / 16: 7 at 112 px) flattened **channel-major** (``c * S * S + y * S + x``), the memory order of
    the 512 x 7 x 7 map that the RJA / DCA / JCA authors' fusion modules view as 49 rows of 512 (RJA Sec. 2 B: "the
    output of the last convolution layer is 512 x 7 x 7"). Default ``false``: global average pooling, 512.
    """

    name = "r2plus1d18_clip"
    fine_tunable = True
    modality = "video"
    version = "1"
    default_weights = _ARCH_WEIGHTS["r2plus1d_18"]

    class Params(TorchParams):
        batch_size: Positive = Field(8, description="clips per forward pass (does not change the features)")
        arch: Literal[tuple(_ARCH_WEIGHTS)] = Field("r2plus1d_18", description="torchvision video network")
        clip_len: int = Field(8, ge=1, description="frames per clip")
        frame_stride: int = Field(1, ge=1, description="steps between a clip's frames")
        context: Literal[CONTEXTS] = Field("causal", description="the clip ends at the step (causal), starts at it "
                                           "(forward) or is centred on it")
        crop_size: int = face_field("crop_size", 112)
        input_size: int = Field(112, ge=16, description="side the network sees (px)")
        normalize: Literal[tuple(CLIP_NORMALIZATIONS)] = Field("kinetics", description="pixel normalisation")
        detector: str = face_field("detector")
        clip_every: int = Field(1, ge=1, description="one clip every k steps, its features held over the k steps")
        spatial_map: bool = Field(False, description="the layer4 map (RJA's spatial attention) instead of the "
                                  "pooled vector")

        @model_validator(mode="after")
        def _map_stride(self) -> R2Plus1D18Clip.Params:
            if self.spatial_map and self.input_size % 16:
                raise ValueError(f"spatial_map needs input_size a multiple of 16 (the network's stride), got "
                                 f"{self.input_size}")
            return self

    late_defaults = {"clip_every": 1, "spatial_map": False}

    @property
    def dim(self) -> int:
        return 512 * (self.params["input_size"] // 16) ** 2 if self.params["spatial_map"] else 512

    @property
    def weights_name(self) -> str | None:
        return _ARCH_WEIGHTS[self.params["arch"]]

    def build_network(self):
        from avaffect.features.backbones.nets import video_resnet_features  # lazy: nets imports torch

        return video_resnet_features(self.params["arch"], spatial_map=self.params["spatial_map"])

    def adapt_state_dict(self, state, net):
        return {k: v for k, v in state.items() if not k.startswith("fc.")}

    def describe_weights_format(self) -> str:
        return f"torchvision's {self.params['arch']} naming (stem, layer1..layer4; fc ignored)"

    def clip_plan(self, num_steps: int) -> np.ndarray:
        """``[T, clip_len]`` the step indices of each step's clip (-1: a blank frame), as extraction uses them."""
        p = self.params
        return clip_indices(num_steps, int(p["clip_len"]), int(p["frame_stride"]), p["context"])

    def input_step(self):
        from avaffect.features.backbones.nets import pixel_normalizer  # lazy: nets imports torch

        return pixel_normalizer(*CLIP_NORMALIZATIONS[self.params["normalize"]])

    def features_from_crops(self, crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[T, 512]`` from uint8 RGB crops ``[T, S, S, 3]`` and the face mask ``[T]``."""
        p = self.params
        mask = np.asarray(mask, dtype=bool)
        t = len(mask)
        out = np.zeros((t, self.dim), dtype=np.float32)
        steps = np.flatnonzero(mask)
        if len(steps) == 0:
            return out
        every = int(p["clip_every"])
        anchors = steps[::every]  # the steps whose clip runs through the network
        feats = self.clip_features(crops, mask, anchors)
        # each face step takes its nearest anchor's features (itself when clip_every = 1)
        nearest = np.minimum(np.rint(np.arange(len(steps)) / every).astype(np.int64), len(anchors) - 1)
        out[steps] = feats[nearest]
        return out

    def clip_features(self, crops: np.ndarray, mask: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """``[len(anchors), dim]``: the features of the clips of the steps ``anchors`` (see :meth:`clip_plan`), frames
        without a face blank. What :meth:`features_from_crops` runs for its anchor steps; the authors'-model path of
        ``predict`` calls it for one clip per ``clip_len`` frames (non-overlapping clips)."""
        p = self.params
        mask = np.asarray(mask, dtype=bool)
        steps = np.flatnonzero(mask)
        size = int(p["input_size"])
        frames = np.zeros((len(mask) + 1, size, size, 3), dtype=np.uint8)  # last row: the blank frame (index -1)
        frames[steps] = prepare_crops(np.asarray(crops)[steps], size, "resize")  # steps without a face stay blank
        idx = self.clip_plan(len(mask))[np.asarray(anchors, dtype=np.int64)]
        chunk = int(p["batch_size"])
        feats = np.empty((len(idx), self.dim), dtype=np.float32)
        for lo in range(0, len(idx), chunk):
            clips = frames[idx[lo : lo + chunk]]  # [B, L, H, W, 3]; -1 picks the blank last row
            feats[lo : lo + chunk] = self.run_batches(clips)
        return feats

    def crop_request(self, rec: Recording) -> FacePipeline | None:
        """Streams a video's crops when every face step runs its own clip (``clip_every`` = 1): with ``clip_every``
        = k > 1 a step may take the features of the next chunk's anchor, so that path holds the whole video's."""
        return super().crop_request(rec) if self.params["clip_every"] == 1 else None

    def crop_context(self) -> tuple[int, int]:
        """The clip's reach: ``(clip_len - 1) * frame_stride`` steps before a step (causal), after it (forward), or
        split around it (centered)."""
        offsets = self._offsets()
        return int(max(0, -offsets.min())), int(max(0, offsets.max()))

    def _offsets(self) -> np.ndarray:
        p = self.params
        n = (int(p["clip_len"]) - 1) * int(p["frame_stride"]) + 1
        return self.clip_plan(2 * n + 1)[n] - n  # the clip of a step far from either end, relative to it

    def features_in_context(self, crops: np.ndarray, mask: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """The clips of the face steps in ``lo:hi``, their frames taken from the whole run (``clip_every`` = 1)."""
        mask = np.asarray(mask, dtype=bool)
        out = np.zeros((hi - lo, self.dim), dtype=np.float32)
        steps = np.flatnonzero(mask[lo:hi]) + lo
        if len(steps):
            out[steps - lo] = self.clip_features(crops, mask, steps)
        return out

    def extract(self, rec: Recording) -> np.ndarray:
        """A video streams (one chunk of crops and its clips' reach); a crops folder, or ``clip_every`` > 1, is
        described from all its crops at once (:func:`~avaffect.features.face_stream.face_features` decides)."""
        return face_features(rec, self)
