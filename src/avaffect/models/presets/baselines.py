"""Baseline presets (docs/design.md §4.5): unimodal, concatenation, RJCA. Every model maps
``audio [B, L, d_a], video [B, L, d_v], mask [B, L]`` to ``[B, L, K]``."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from avaffect.models.blocks.encoders import Encoder
from avaffect.models.blocks.heads import MLPHead
from avaffect.models.blocks.jca import RecursiveJCA
from avaffect.models.presets.common import PresetConfig
from avaffect.models.registry import register_model


class UnimodalConfig(PresetConfig):
    pass


class ConcatConfig(PresetConfig):
    pass


class RJCAConfig(PresetConfig):
    window_length: int = Field(300, ge=1, description="L: the time-major weights are L x L")
    num_iterations: int = Field(2, ge=1, description="M")
    share_weights: bool = False
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)


class UnimodalModel(nn.Module):
    """One modality: encoder → MLP head. The other modality is ignored."""

    def __init__(self, modality: str, d_in: int, cfg: UnimodalConfig) -> None:
        super().__init__()
        self.modality = modality
        self.encoder = Encoder(d_in, cfg.hidden, cfg.encoder, cfg.dropout)
        self.head = MLPHead(cfg.hidden, cfg.head_hidden, cfg.num_outputs, cfg.head_rate(), cfg.activation)

    def forward(self, audio, video, mask):
        x = audio if self.modality == "audio" else video
        return self.head(self.encoder(x, mask))


class ConcatModel(nn.Module):
    """Early fusion: ``[X_a ; X_v]`` → encoder (BLSTM) → MLP head."""

    def __init__(self, d_audio: int, d_video: int, cfg: ConcatConfig) -> None:
        super().__init__()
        self.encoder = Encoder(d_audio + d_video, cfg.hidden, cfg.encoder, cfg.dropout)
        self.head = MLPHead(cfg.hidden, cfg.head_hidden, cfg.num_outputs, cfg.head_rate(), cfg.activation)

    def forward(self, audio, video, mask):
        return self.head(self.encoder(torch.cat([audio, video], dim=-1), mask))


class RJCAModel(nn.Module):
    """Per-modality encoders → RJCA (time-major, M iterations) → ``[X_a^(M) ; X_v^(M)]`` → MLP head."""

    def __init__(self, d_audio: int, d_video: int, cfg: RJCAConfig) -> None:
        super().__init__()
        self.window_length = cfg.window_length
        self.audio_encoder = Encoder(d_audio, cfg.hidden, cfg.encoder, cfg.dropout)
        self.video_encoder = Encoder(d_video, cfg.hidden, cfg.encoder, cfg.dropout)
        self.fusion = RecursiveJCA(cfg.hidden, cfg.hidden, cfg.window_length, cfg.num_iterations,
                                   cfg.share_weights, cfg.attention_dropout)
        self.head = MLPHead(2 * cfg.hidden, cfg.head_hidden, cfg.num_outputs, cfg.head_rate(), cfg.activation)

    def forward(self, audio, video, mask):
        x_a = self.audio_encoder(audio, mask)
        x_v = self.video_encoder(video, mask)
        return self.head(self.fusion(x_a, x_v, mask))


@register_model("audio_only", UnimodalConfig, "audio features → BLSTM → MLP")
def audio_only(d_audio: int, d_video: int, cfg: UnimodalConfig) -> nn.Module:
    return UnimodalModel("audio", d_audio, cfg)


@register_model("video_only", UnimodalConfig, "visual features → BLSTM → MLP")
def video_only(d_audio: int, d_video: int, cfg: UnimodalConfig) -> nn.Module:
    return UnimodalModel("video", d_video, cfg)


@register_model("concat", ConcatConfig, "feature concatenation → BLSTM → MLP")
def concat(d_audio: int, d_video: int, cfg: ConcatConfig) -> nn.Module:
    return ConcatModel(d_audio, d_video, cfg)


@register_model("rjca", RJCAConfig, "U-BLSTM per modality → recursive joint cross-attention (M=2) → MLP")
def rjca(d_audio: int, d_video: int, cfg: RJCAConfig) -> nn.Module:
    return RJCAModel(d_audio, d_video, cfg)
