"""Bidirectional LSTM encoder (docs/design.md §4.1)."""

from __future__ import annotations

import torch
from torch import nn


class BLSTM(nn.Module):
    """Bidirectional LSTM with ``dim // 2`` hidden units per direction, so output size = ``dim``.

    ``y = [LSTM_fwd(x) ; LSTM_bwd(x)]``, ``x [B, L, d_in] → y [B, L, dim]``. Padded steps (``mask`` 0)
    are zeroed on input and output; they sit at the end of a window so they cannot affect valid steps
    of the forward direction, and the backward direction sees only zeros from them.
    """

    def __init__(self, d_in: int, dim: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"BLSTM output size must be even, got {dim}")
        self.lstm = nn.LSTM(d_in, dim // 2, num_layers=num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.out_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x * mask[..., None].to(x.dtype)
        y, _ = self.lstm(x)
        if mask is not None:
            y = y * mask[..., None].to(y.dtype)
        return y
