"""Named presets (SPEC §4.5). Every model maps ``audio [B, L, d_a], video [B, L, d_v], mask [B, L]``
to ``[B, L, K]``."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from avaffect.models.blocks.blstm import BLSTM
from avaffect.models.blocks.heads import MLPHead
from avaffect.models.blocks.jca import RecursiveJCA
from avaffect.models.registry import register_model


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_outputs: int = Field(2, ge=1, description="2 = joint valence+arousal, 1 = one model per target")
    hidden: int = Field(64, ge=2, description="encoder size (even: BLSTM halves it per direction)")
    head_hidden: int = Field(64, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    encoder: Literal["blstm", "linear"] = "blstm"
    activation: Literal["tanh", "none"] = "tanh"


class UnimodalConfig(_Config):
    pass


class ConcatConfig(_Config):
    pass


class RJCAConfig(_Config):
    window_length: int = Field(300, ge=1, description="L: the time-major weights are L x L")
    num_iterations: int = Field(2, ge=1, description="M")
    share_weights: bool = False
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)


class Encoder(nn.Module):
    """Per-step projection ``ReLU(W x + b)`` then, for ``kind="blstm"``, a BLSTM over time."""

    def __init__(self, d_in: int, dim: int, kind: str, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, dim), nn.ReLU())
        self.rnn = BLSTM(dim, dim) if kind == "blstm" else None
        self.out_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.proj(x) * mask[..., None].to(x.dtype)
        return self.rnn(y, mask) if self.rnn is not None else y


class UnimodalModel(nn.Module):
    """One modality: encoder → MLP head. The other modality is ignored."""

    def __init__(self, modality: str, d_in: int, cfg: UnimodalConfig) -> None:
        super().__init__()
        self.modality = modality
        self.encoder = Encoder(d_in, cfg.hidden, cfg.encoder, cfg.dropout)
        self.head = MLPHead(cfg.hidden, cfg.head_hidden, cfg.num_outputs, cfg.dropout, cfg.activation)

    def forward(self, audio, video, mask):
        x = audio if self.modality == "audio" else video
        return self.head(self.encoder(x, mask))


class ConcatModel(nn.Module):
    """Early fusion: ``[X_a ; X_v]`` → encoder (BLSTM) → MLP head."""

    def __init__(self, d_audio: int, d_video: int, cfg: ConcatConfig) -> None:
        super().__init__()
        self.encoder = Encoder(d_audio + d_video, cfg.hidden, cfg.encoder, cfg.dropout)
        self.head = MLPHead(cfg.hidden, cfg.head_hidden, cfg.num_outputs, cfg.dropout, cfg.activation)

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
        self.head = MLPHead(2 * cfg.hidden, cfg.head_hidden, cfg.num_outputs, cfg.dropout, cfg.activation)

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
