"""A converted authors' model as something ``predict`` runs on a video: the module behind the regressor interface,
and the authors' preprocessing rebuilt as a typed spec stored in the converted file.

The preprocessing of the RJA / DCA / JCA systems, as their papers and released modules describe it:

* **clip sampling** — "L non-overlapping video clips are uniformly sampled" (RJA Sec. 2 A): one timeline step per
  8-frame clip (``step_frames = 8``), the clip's face crops (112 px, ``x / 127.5 - 1``) through R3D-18
  (``r2plus1d18_clip``, ``arch: r3d_18``); the L-clip windows are the model's sub-sequences, taken
  non-overlapping (``hop = L``; the papers do not say how test videos were cut: our choice). Each frame gets
  the prediction of the clip it belongs to.
* **visual feature flattening** — the last convolution's 512 x 7 x 7 map averaged over time, flattened
  channel-major (``spatial_map: true``), the memory order the released ``video_attn`` views as 49 rows.
* **spectrogram front end** — ``spec_resnet18``'s defaults, the authors' loader: 44.1 kHz, 64 mel bands,
  20 ms / 10 ms frames, ``(dB + 14.8) / 19.895``, 107 frames (1.07 s) ending at the clip's last frame.

Backbone weights: the authors fine-tuned their R3D and ResNet-18; give those files to ``convert-official``
(``--audio-weights`` / ``--video-weights``, in torchvision's naming). They are copied beside the converted model;
without them the registered torchvision / ImageNet files are recorded, and a missing file says where to get it.
Clips without any face get a zero visual vector (our missing-face rule; the released loader is not specified).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.extractors.base import ExtractorSpec, get_extractor
from avaffect.features.preprocessing_spec import ExtractorRecord, FaceSpec, PreprocessingSpec
from avaffect.files import atomic_path
from avaffect.models.official.modules import OfficialCAM

__all__ = ["CLIP_FRAMES", "OfficialRegressor", "official_preprocessing", "copy_backbone"]

CLIP_FRAMES = 8  # frames per clip of the authors' R3D features
BACKBONES_DIR = "backbones"


class OfficialRegressor(nn.Module):
    """``y = official(audio, video * face_mask, mask)``: a converted CAM module behind the interface of
    :class:`~avaffect.models.wrapper.AVRegressor` (``[B, L, d]`` inputs → ``[B, L, 2]``). The module normalises
    its inputs itself (L2, as released), so there are no statistics: ``audio_mean`` is zero (a video without
    audio feeds zero audio features)."""

    def __init__(self, module: OfficialCAM, variant: str) -> None:
        super().__init__()
        self.module, self.variant = module, variant
        d = module.sizes.dim
        self.register_buffer("audio_mean", torch.zeros(d))
        self.d_audio, self.d_video = d, d * module.sizes.regions

    @property
    def window_length(self) -> int:
        return self.module.sizes.length

    def forward(self, audio: torch.Tensor, video: torch.Tensor, mask: torch.Tensor,
                face_mask: torch.Tensor | None = None) -> torch.Tensor:
        if face_mask is not None:
            video = video * face_mask[..., None].to(video.dtype)
        return self.module(audio, video, mask)


def copy_backbone(src: str | Path, out_dir: Path, name: str) -> str:
    """Copy a backbone weight file beside the converted model (``backbones/<name><suffix>``); returns the
    relative name the spec records (read back relative to the model's folder)."""
    src = Path(src).expanduser()
    if not src.is_file():
        raise AvaffectError(f"{src}: backbone weight file not found — pass the authors' fine-tuned file (a state "
                            "dict in torchvision's naming)")
    rel = f"{BACKBONES_DIR}/{name}{src.suffix}"
    with atomic_path(out_dir / rel) as tmp:  # a killed copy leaves no partial file behind
        shutil.copyfile(src, tmp)
    return rel


def official_preprocessing(module: OfficialCAM, variant: str, audio_params: dict[str, Any] | None = None,
                           video_params: dict[str, Any] | None = None, hop: int | None = None) -> PreprocessingSpec:
    """The spec of the module docstring for a module of these sizes (``audio_params`` / ``video_params`` add to
    the extractors' parameters: their weights, ``allow_random`` for tests)."""
    s = module.sizes
    if s.dim != 512 or s.regions != 49:
        raise ConfigError(f"{variant}: D = {s.dim}, {s.regions} regions: predict rebuilds the released models' "
                          "inputs (ResNet-18 audio 512, R3D 512 x 7 x 7 video), which need D = 512 and 49 regions")
    audio = ExtractorSpec(name="spec_resnet18", params={"context": "causal", **(audio_params or {})})
    video = ExtractorSpec(name="r2plus1d18_clip", params={"arch": "r3d_18", "clip_len": CLIP_FRAMES,
                                                           "context": "causal", "normalize": "pm1",
                                                           "spatial_map": True, **(video_params or {})})
    records = [ExtractorRecord.of(spec, get_extractor(spec.name, **spec.params)) for spec in (audio, video)]
    return PreprocessingSpec(audio_extractor=records[0], video_extractor=records[1],
                             faces=FaceSpec(source="video", pipeline=get_extractor(video.name, **video.params)
                                            .face_pipeline()),
                             window=s.length, hop=int(hop or s.length), fps=30.0, targets=["valence", "arousal"],
                             trained_on=f"authors:{variant}", step_frames=CLIP_FRAMES)
