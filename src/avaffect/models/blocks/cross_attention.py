"""Cross-attention (CA) between audio and visual sequences (FG 2021 baseline, docs/design.md §4.5)."""

from __future__ import annotations

import math

import torch
from torch import nn


class CrossAttention(nn.Module):
    """Audio-visual cross-attention through one learned cross-correlation matrix.

    With X_a ``[L, d_a]``, X_v ``[L, d_v]`` and d = d_a + d_v::

        C       = X_a W X_v^T / sqrt(d)                 W: d_a x d_v, C: L x L (C[i, j]: audio i, video j)
        A_a     = softmax_i(C)      (column-wise)       weights over audio steps i for each step j
        A_v     = softmax_j(C^T)    (row-wise of C)     weights over video steps j for each step i
        X_att,a = A_a^T X_a                             [L, d_a]: audio attended by the visual steps
        X_att,v = A_v^T X_v                             [L, d_v]: video attended by the audio steps
        Y_m     = X_att,m (+ X_m with ``residual``)

    Padded steps (``mask`` 0) are zeroed on input, excluded from both softmaxes as keys, and zeroed on
    output. No weight depends on L, so any window length works.
    """

    def __init__(self, d_audio: int, d_video: int, residual: bool = False) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(d_audio, d_video))
        nn.init.xavier_uniform_(self.w)
        self.scale = 1.0 / math.sqrt(d_audio + d_video)
        self.residual = residual

    def forward(self, x_a: torch.Tensor, x_v: torch.Tensor, mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if mask is not None:
            m = mask[..., None].to(x_a.dtype)
            x_a, x_v = x_a * m, x_v * m
        c = (x_a @ self.w @ x_v.transpose(1, 2)) * self.scale  # [B, L_a, L_v]
        if mask is not None:
            neg = torch.finfo(c.dtype).min
            a_a = torch.softmax(c.masked_fill(~mask[:, :, None], neg), dim=1)  # over audio steps i
            a_v = torch.softmax(c.masked_fill(~mask[:, None, :], neg), dim=2)  # over video steps j
        else:
            a_a = torch.softmax(c, dim=1)
            a_v = torch.softmax(c, dim=2)
        att_a = a_a.transpose(1, 2) @ x_a  # [B, L_v, d_a]
        att_v = a_v @ x_v  # [B, L_a, d_v]
        if self.residual:
            att_a, att_v = att_a + x_a, att_v + x_v
        if mask is not None:
            att_a, att_v = att_a * m, att_v * m
        return att_a, att_v
