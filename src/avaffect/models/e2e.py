"""End-to-end model: per-step backbones fine-tuned jointly with a fusion preset (ABAW6/ABAW8, issue 12).

``y = head(f_a(segments), f_v(normalise(crops)), mask, face_mask)`` with ``f_v`` a face ResNet run on each
step's crop, ``f_a`` a spectrogram network (the RJA ResNet-18, VGGish) run on each step's log-mel segment, and
``head`` the same :class:`~avaffect.models.wrapper.AVRegressor` that cached-feature training builds — so that,
once trained, the backbones are exported as the weight files of their extractors and the head is an ordinary
checkpoint: ``predict`` and ``evaluate`` run it through the feature path unchanged.

The backbones are the extractors' own networks (:meth:`TorchExtractor.build_network`, same parameter names, same
weight loading), so a registered or user-supplied weight file loads into either. The head's input statistics
are fitted once on the initial backbones' features (:func:`avaffect.training.e2e.fit_head_normalization`).

**Gradual unfreezing.** Each backbone is split into layer groups (:func:`layer_groups`; ResNet: ``stem``,
``layer1`` … ``layer4``; VGGish: ``block1`` … ``block4``, ``embeddings``). A group is trainable from the epoch
its schedule gives and frozen before it (``requires_grad`` off, and in eval mode so its batch-norm statistics do
not move either); groups the schedule does not name stay frozen.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from avaffect.features.backbones.nets import ResNetFeatures, VGGishNet, VideoResNetFeatures, pixel_normalizer
from avaffect.features.backbones.resnet import IMAGE_NORMALIZATIONS
from avaffect.features.backbones.video import CLIP_NORMALIZATIONS
from avaffect.models.wrapper import AVRegressor

__all__ = ["FrameBackbone", "EndToEndRegressor", "layer_groups", "backbone_group_names"]

_RESNET_GROUPS = ("stem", "layer1", "layer2", "layer3", "layer4")
_VGGISH_GROUPS = ("block1", "block2", "block3", "block4", "embeddings")
_GROUPS_OF = {"resnet18_face": _RESNET_GROUPS, "resnet50_face": _RESNET_GROUPS, "spec_resnet18": _RESNET_GROUPS,
              "r2plus1d18_clip": _RESNET_GROUPS, "vggish": _VGGISH_GROUPS}


def backbone_group_names(extractor: str) -> tuple[str, ...]:
    """The layer groups of an extractor's network, by extractor name (what a config may name before any
    network is built); :func:`layer_groups` gives the same names on the built network."""
    return _GROUPS_OF.get(extractor, ())


def layer_groups(net: nn.Module) -> dict[str, list[nn.Module]]:
    """The backbone's layer groups, input side first (the unit of gradual unfreezing)."""
    if isinstance(net, ResNetFeatures):  # names: _RESNET_GROUPS
        return {"stem": [net.conv1, net.bn1], "layer1": [net.layer1], "layer2": [net.layer2],
                "layer3": [net.layer3], "layer4": [net.layer4]}
    if isinstance(net, VideoResNetFeatures):  # R(2+1)D / R3D / MC3: the same names, a 3-D stem
        return {"stem": [net.stem], "layer1": [net.layer1], "layer2": [net.layer2], "layer3": [net.layer3],
                "layer4": [net.layer4]}
    if isinstance(net, VGGishNet):
        groups: dict[str, list[nn.Module]] = {}
        block = 1
        for layer in net.features:
            groups.setdefault(f"block{block}", []).append(layer)
            if isinstance(layer, nn.MaxPool2d):
                block += 1
        groups["embeddings"] = [net.embeddings]
        assert tuple(groups) == _VGGISH_GROUPS
        return groups
    raise TypeError(f"no layer groups defined for {type(net).__name__}")


class FrameBackbone(nn.Module):
    """A per-step network over windows: ``[B, L, *input] → [B, L, C]``, run on ``B*L`` inputs at once or in
    chunks of ``chunk`` (bounded activation memory). ``prepare`` maps the raw batch (uint8 crops, float
    segments) to the network's input on its device. ``unfreeze`` maps a layer group to the epoch it starts
    training."""

    def __init__(self, net: nn.Module, dim: int, prepare: Callable[[torch.Tensor], torch.Tensor],
                 unfreeze: dict[str, int], chunk: int = 0, channels_last: bool = False) -> None:
        super().__init__()
        self.net = net
        self.dim = dim
        self.prepare = prepare
        self.groups = layer_groups(net)
        unknown = sorted(set(unfreeze) - set(self.groups))
        if unknown:
            raise ValueError(f"unknown layer group(s) {', '.join(unknown)}; this backbone has "
                             f"{', '.join(self.groups)}")
        self.unfreeze = dict(unfreeze)
        self.chunk = int(chunk)
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.epoch = 0
        self.set_epoch(0)

    def compile_network(self) -> None:
        """``torch.compile`` the network's forward (kept out of the state dict: the weights keep their names)."""
        object.__setattr__(self, "_compiled", torch.compile(self.net))

    def trainable_groups(self, epoch: int | None = None) -> list[str]:
        e = self.epoch if epoch is None else epoch
        return [g for g in self.groups if g in self.unfreeze and self.unfreeze[g] <= e]

    def set_epoch(self, epoch: int) -> None:
        """Release the groups whose epoch has come; keep the others frozen (no gradient, eval mode)."""
        self.epoch = int(epoch)
        live = set(self.trainable_groups())
        for name, modules in self.groups.items():
            for m in modules:
                for p in m.parameters():
                    p.requires_grad_(name in live)
        self.train(self.training)

    def train(self, mode: bool = True) -> FrameBackbone:
        super().train(mode)
        live = set(self.trainable_groups())
        for name, modules in self.groups.items():
            if name not in live:
                for m in modules:
                    m.eval()
        return self

    def group_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {name: [p for m in modules for p in m.parameters()] for name, modules in self.groups.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[:2]
        flat = x.reshape(b * n, *x.shape[2:])
        size = self.chunk or len(flat)
        outs = []
        for lo in range(0, len(flat), size):
            inp = self.prepare(flat[lo:lo + size])
            if self.channels_last:
                inp = inp.contiguous(memory_format=torch.channels_last)
            outs.append(self.__dict__.get("_compiled", self.net)(inp).reshape(len(inp), -1))
        return torch.cat(outs).reshape(b, n, -1)


def image_preparer(normalize: str, input_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 crops ``[N, S, S, 3]`` → float ``[N, 3, input_size, input_size]`` normalised as the extractor does
    (crops arrive already cut to ``input_size`` from the data path; other sizes are resized bilinearly)."""
    normalise = pixel_normalizer(*IMAGE_NORMALIZATIONS[normalize])

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = normalise(x)
        if x.shape[-1] != input_size:
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
        return x

    return prepare


def clip_preparer(normalize: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 clips ``[N, k, s, s, 3]`` → float ``[N, 3, k, s, s]`` normalised as the clip extractor does."""
    return pixel_normalizer(*CLIP_NORMALIZATIONS[normalize])


def float_preparer(x: torch.Tensor) -> torch.Tensor:
    return x.float()


class EndToEndRegressor(nn.Module):
    """Backbones + fusion head (see the module docstring). ``forward(crops [B, L, s, s, 3] uint8, segments
    [B, L, 1, ...], mask [B, L], face_mask [B, L]) → [B, L, K]``. ``black_frames`` (the video extractor's
    ``missing_face: black_frame``): steps without a face feed their black crop's features to the head
    (ABAW6/ABAW8) instead of a zero visual vector."""

    def __init__(self, video: FrameBackbone, audio: FrameBackbone, head: AVRegressor,
                 black_frames: bool = True) -> None:
        super().__init__()
        self.video = video
        self.audio = audio
        self.head = head
        self.black_frames = black_frames

    def set_epoch(self, epoch: int, stage: int | None = None) -> None:
        """The epoch starting; the backbones count their unfreeze schedule in ``stage`` when given (stages
        released on a validation plateau), else in epochs. The head sees the epoch."""
        self.video.set_epoch(epoch if stage is None else stage)
        self.audio.set_epoch(epoch if stage is None else stage)
        if hasattr(self.head.net, "set_epoch"):
            self.head.net.set_epoch(epoch)

    def forward(self, crops: torch.Tensor, segments: torch.Tensor, mask: torch.Tensor,
                face_mask: torch.Tensor) -> torch.Tensor:
        """``face_mask``: the steps whose visual vector the head keeps — with ``black_frames`` the recording's
        own face mask (a black crop's features count, as the exported extractor's do), else the found faces."""
        a, v = self.audio(segments), self.video(crops)
        # under mixed precision the backbones (nearly all the compute) run in bf16/fp16; the fusion head stays in
        # fp32: it is cheap, its CCC-trained outputs are small differences, and oneDNN has no bf16 LSTM on CPUs
        # without AMX/AVX512-BF16
        with torch.autocast(device_type=v.device.type, enabled=False):
            return self.head(a.float(), v.float(), mask, face_mask)

    def param_groups(self, lr: float, video_scale: dict[str, float], audio_scale: dict[str, float]) -> list[dict]:
        """Optimizer parameter groups: the head at ``lr``, each backbone layer group at ``lr`` times its scale
        (frozen groups are included: they get no gradient, hence no update, until released)."""
        groups = [{"params": list(self.head.parameters()), "lr": lr, "name": "head"}]
        for prefix, backbone, scale in (("video", self.video, video_scale), ("audio", self.audio, audio_scale)):
            for name, params in backbone.group_parameters().items():
                if params:
                    groups.append({"params": params, "lr": lr * scale.get(name, 1.0), "name": f"{prefix}.{name}"})
        for g in groups:
            g["base_lr"] = g["lr"]  # what a new stage restarts from
        return groups
