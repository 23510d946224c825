"""Joint cross-attention (JCA) and its recursion (RJCA), time-major form (SPEC §4.2–4.3)."""

from __future__ import annotations

import math

import torch
from torch import nn


class TimeMajorJCA(nn.Module):
    """One JCA iteration in the time-major orientation (RJA-BLSTM, HGRJCA-ABAW6).

    For each modality m in (a, v), with X_m ``[L, d_m]`` and J = [X_a ; X_v] ``[L, d]``, d = d_a + d_v::

        C_m     = tanh(X_m^T W_jm J / sqrt(d))      W_jm: L x L (mixes time)   C_m: d_m x d
        H_m     = ReLU(X_m W_cm C_m)                W_cm: d_m x d_m            H_m: L x d
        X_att,m = H_m W_hm + X_m                    W_hm: d x d_m

    The window length L is part of the weights. Padded steps (``mask`` 0) are zeroed before fusion
    so they never enter the joint correlation, and zeroed again on output.
    """

    def __init__(self, d_audio: int, d_video: int, length: int, dropout: float = 0.0,
                 init_residual_scale: float = 0.1) -> None:
        super().__init__()
        self.dims = (d_audio, d_video)
        self.length = length
        d = d_audio + d_video
        self.scale = 1.0 / math.sqrt(d)
        self.w_j = nn.ParameterList([nn.Parameter(torch.empty(length, length)) for _ in self.dims])
        self.w_c = nn.ParameterList([nn.Parameter(torch.empty(dm, dm)) for dm in self.dims])
        self.w_h = nn.ParameterList([nn.Parameter(torch.empty(d, dm)) for dm in self.dims])
        self.dropout = nn.Dropout(dropout)
        for p in self.parameters():
            nn.init.xavier_uniform_(p)
        for w in self.w_h:  # start close to the identity map X_att = X (the residual path)
            w.data.mul_(init_residual_scale)

    def forward(self, x_a: torch.Tensor, x_v: torch.Tensor, mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if x_a.shape[1] != self.length:
            raise ValueError(f"time-major JCA was built for windows of {self.length} steps, got {x_a.shape[1]}")
        if mask is not None:
            m = mask[..., None].to(x_a.dtype)
            x_a, x_v = x_a * m, x_v * m
        joint = torch.cat([x_a, x_v], dim=-1)  # [B, L, d]
        outs = []
        for i, x in enumerate((x_a, x_v)):
            # X^T W_j J: [B, d_m, L] @ [L, L] @ [B, L, d] -> [B, d_m, d]
            corr = torch.tanh(x.transpose(1, 2) @ self.w_j[i] @ joint * self.scale)
            h = torch.relu(x @ self.w_c[i] @ corr)  # [B, L, d]
            outs.append(self.dropout(h) @ self.w_h[i] + x)
        if mask is not None:
            outs = [o * m for o in outs]
        return outs[0], outs[1]


class RecursiveJCA(nn.Module):
    """RJCA: ``X^(t) = JCA_t(X^(t-1))`` for t = 1..M; output ``[X_a^(M) ; X_v^(M)]`` (SPEC §4.3).

    Each iteration has its own weights unless ``share_weights``. ``forward`` returns the concatenated
    output ``[B, L, d_a + d_v]``; ``iterates`` returns every ``(X_a^(t), X_v^(t))``, t = 0..M, for gates.
    """

    def __init__(self, d_audio: int, d_video: int, length: int, num_iterations: int = 2,
                 share_weights: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if num_iterations < 1:
            raise ValueError("RJCA needs at least one iteration")
        n_blocks = 1 if share_weights else num_iterations
        self.blocks = nn.ModuleList([TimeMajorJCA(d_audio, d_video, length, dropout) for _ in range(n_blocks)])
        self.num_iterations = num_iterations

    def iterates(self, x_a, x_v, mask=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = [(x_a, x_v)]
        for t in range(self.num_iterations):
            block = self.blocks[min(t, len(self.blocks) - 1)]
            out.append(block(*out[-1], mask))
        return out

    def forward(self, x_a, x_v, mask=None) -> torch.Tensor:
        return torch.cat(self.iterates(x_a, x_v, mask)[-1], dim=-1)
