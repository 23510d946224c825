"""Audio-guided spatial attention over visual feature maps (RJA-BLSTM front end, docs/design.md §4.5)."""

from __future__ import annotations

import torch
from torch import nn


class AudioGuidedSpatialAttention(nn.Module):
    """Pool R regions of a visual map (R = 7 x 7 = 49 by default) with weights guided by the audio.

    The visual input per step is ``R * C`` values stored region-major, i.e. in memory order ``(R, C)``:
    row r of ``V [R, C]`` is region r's C-dimensional feature. With x_a the audio feature of the step::

        v_r   = ReLU(W_v V_r + b_v)                    W_v: k x C
        a     = ReLU(W_a x_a + b_a)                    W_a: k x d_a
        z_r   = w_h^T tanh(W_1 v_r + W_2 a + b)        W_1, W_2: k x k, w_h: k (the audio term is the
                                                       same for every region)
        alpha = softmax_r(z)                           over the R regions
        y     = W_f (sum_r alpha_r V_r) + b_f          W_f: d_out x C

    ``audio [B, L, d_a]``, ``video [B, L, R*C]`` → ``[B, L, d_out]``, zero at padded steps (``mask`` 0).
    The last forward's region weights are kept, detached, in ``last_attention [B, L, R]``. (w_h and W_1
    have no bias: a constant shift of z is removed by the softmax and would receive no gradient.)
    """

    def __init__(self, d_audio: int, channels: int, d_out: int, attn_dim: int = 64, regions: int = 49) -> None:
        super().__init__()
        self.channels, self.regions = channels, regions
        self.w_v = nn.Linear(channels, attn_dim)
        self.w_a = nn.Linear(d_audio, attn_dim)
        self.w_1 = nn.Linear(attn_dim, attn_dim, bias=False)
        self.w_2 = nn.Linear(attn_dim, attn_dim)
        self.w_h = nn.Linear(attn_dim, 1, bias=False)
        self.w_f = nn.Linear(channels, d_out)
        self.out_dim = d_out
        self.last_attention: torch.Tensor | None = None

    def forward(self, audio: torch.Tensor, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, l, d = video.shape
        if d != self.regions * self.channels:
            raise ValueError(f"spatial attention expects {self.regions} x {self.channels} = "
                             f"{self.regions * self.channels} visual values per step, got {d}")
        maps = video.reshape(b, l, self.regions, self.channels)  # [B, L, R, C]
        v = torch.relu(self.w_v(maps))  # [B, L, R, k]
        a = torch.relu(self.w_a(audio))  # [B, L, k]
        z = self.w_h(torch.tanh(self.w_1(v) + self.w_2(a)[:, :, None, :])).squeeze(-1)  # [B, L, R]
        alpha = torch.softmax(z, dim=-1)
        self.last_attention = alpha.detach()
        y = self.w_f((alpha[..., None] * maps).sum(dim=2))  # [B, L, d_out]
        return y * mask[..., None].to(y.dtype) if mask is not None else y
