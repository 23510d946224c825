"""Per-modality encoders."""

from __future__ import annotations

import torch
from torch import nn

from avaffect.models.blocks.blstm import BLSTM


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
