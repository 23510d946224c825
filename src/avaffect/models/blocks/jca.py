"""Joint cross-attention (JCA) and its recursion (RJCA), in both orientations (docs/design.md §4.2–4.3)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Orientation = Literal["time_major", "feature_major"]


def _joint(x_a: torch.Tensor, x_v: torch.Tensor, fc: nn.Module | None, m: torch.Tensor | None) -> torch.Tensor:
    """``J = [X_a ; X_v]`` (or ``FC([X_a ; X_v])``) as ``[B, L, d]``, zero at padded steps."""
    joint = torch.cat([x_a, x_v], dim=-1)
    if fc is not None:
        joint = fc(joint)
        if m is not None:
            joint = joint * m
    return joint


class TimeMajorJCA(nn.Module):
    """One JCA iteration in the time-major orientation (RJA-BLSTM, HGRJCA-ABAW6).

    For each modality m in (a, v), with X_m ``[L, d_m]`` and J = [X_a ; X_v] ``[L, d]``, d = d_a + d_v::

        C_m     = tanh(X_m^T W_jm J / sqrt(d))      W_jm: L x L (mixes time)   C_m: d_m x d
        H_m     = ReLU(X_m W_cm C_m)                W_cm: d_m x d_m            H_m: L x d
        X_att,m = H_m W_hm + X_m                    W_hm: d x d_m

    With ``joint_fc`` the joint features are ``J = FC([X_a ; X_v])`` (a d x d linear layer with bias).
    The window length L is part of the weights. Padded steps (``mask`` 0) are zeroed before fusion
    so they never enter the joint correlation, and zeroed again on output.
    """

    def __init__(self, d_audio: int, d_video: int, length: int, dropout: float = 0.0,
                 init_residual_scale: float = 0.1, joint_fc: bool = False) -> None:
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
        self.joint_fc = nn.Linear(d, d) if joint_fc else None

    def forward(self, x_a: torch.Tensor, x_v: torch.Tensor, mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if x_a.shape[1] != self.length:
            raise ValueError(f"time-major JCA was built for windows of {self.length} steps, got {x_a.shape[1]}")
        m = None
        if mask is not None:
            m = mask[..., None].to(x_a.dtype)
            x_a, x_v = x_a * m, x_v * m
        joint = _joint(x_a, x_v, self.joint_fc, m)  # [B, L, d]
        outs = []
        for i, x in enumerate((x_a, x_v)):
            # X^T (W_j / sqrt(d)) J: [B, d_m, L] @ [L, L] @ [B, L, d] -> [B, d_m, d]. The scale goes on the small
            # L x L weight, not on the d_m x d map (~32x the activations; one elementwise pass less over it)
            corr = torch.tanh(x.transpose(1, 2) @ (self.w_j[i] * self.scale) @ joint)
            h = torch.relu(x @ self.w_c[i] @ corr)  # [B, L, d]
            outs.append(self.dropout(h) @ self.w_h[i] + x)
        if m is not None:
            outs = [o * m for o in outs]
        return outs[0], outs[1]


class FeatureMajorJCA(nn.Module):
    """One JCA iteration in the feature-major orientation (GRJCA/HGRJCA-ABAW8).

    For each modality m in (a, v), with X_m ``[d_m, L]`` (features as rows) and J = [X_a ; X_v]
    ``[d, L]`` stacked along features, d = d_a + d_v (or ``J = FC([X_a ; X_v])`` with ``joint_fc``,
    a d x d linear layer with bias applied per step)::

        C_m     = tanh(X_m^T W_jm J / sqrt(d))      W_jm: d_m x d                C_m: L x L (temporal correlation)
        H_m     = ReLU(X_m W_cm C_m / s)            W_cm: L x L (mixes time)     H_m: d_m x L
        X_att,m = H_m W_hm + X_m                    W_hm: L x L (mixes time)

    ``s = sqrt(L)`` with ``time_norm`` (default), ``s = 1`` without (the equation as the paper prints it).
    X_m W_cm C_m sums over time twice, so its scale grows with L; measured on the synthetic set at
    L = 150 with Adam (lr 2e-3), the unscaled form drives the tanh head into saturation within a few
    steps and the model never learns, while the scaled one trains (like the 1/sqrt(d) of C_m, it is a
    normalisation the paper leaves implicit; ``time_norm=False`` reproduces the printed form).

    Tensors enter and leave as ``[B, L, d_m]``; the transposes are internal. The window length L is
    part of the weights. Padded steps (``mask`` 0) are zeroed before fusion (J included, also after the
    FC): their rows and columns of C_m are then tanh(0) = 0, so they cannot reach valid outputs.
    Outputs are zeroed at padded steps.
    """

    def __init__(self, d_audio: int, d_video: int, length: int, dropout: float = 0.0,
                 init_residual_scale: float = 0.1, joint_fc: bool = False, time_norm: bool = True) -> None:
        super().__init__()
        self.dims = (d_audio, d_video)
        self.length = length
        d = d_audio + d_video
        self.scale = 1.0 / math.sqrt(d)
        self.time_scale = 1.0 / math.sqrt(length) if time_norm else 1.0
        self.w_j = nn.ParameterList([nn.Parameter(torch.empty(dm, d)) for dm in self.dims])
        self.w_c = nn.ParameterList([nn.Parameter(torch.empty(length, length)) for _ in self.dims])
        self.w_h = nn.ParameterList([nn.Parameter(torch.empty(length, length)) for _ in self.dims])
        self.dropout = nn.Dropout(dropout)
        for p in self.parameters():
            nn.init.xavier_uniform_(p)
        for w in self.w_h:  # start close to the identity map X_att = X (the residual path)
            w.data.mul_(init_residual_scale)
        self.joint_fc = nn.Linear(d, d) if joint_fc else None

    def forward(self, x_a: torch.Tensor, x_v: torch.Tensor, mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if x_a.shape[1] != self.length:
            raise ValueError(f"feature-major JCA was built for windows of {self.length} steps, got {x_a.shape[1]}")
        m = None
        if mask is not None:
            m = mask[..., None].to(x_a.dtype)
            x_a, x_v = x_a * m, x_v * m
        joint_f = _joint(x_a, x_v, self.joint_fc, m).transpose(1, 2)  # J: [B, d, L]
        outs = []
        for i, x in enumerate((x_a, x_v)):
            x_f = x.transpose(1, 2)  # X_m: [B, d_m, L]
            # X^T W_j J: [B, L, d_m] @ [d_m, d] @ [B, d, L] -> [B, L, L]
            corr = torch.tanh(x @ (self.w_j[i] * self.scale) @ joint_f)  # scales on the weights: see TimeMajorJCA
            h = torch.relu(x_f @ (self.w_c[i] * self.time_scale) @ corr)  # [B, d_m, L]
            outs.append((self.dropout(h) @ self.w_h[i] + x_f).transpose(1, 2))
        if m is not None:
            outs = [o * m for o in outs]
        return outs[0], outs[1]


class RecursiveJCA(nn.Module):
    """RJCA: ``X^(t) = JCA_t(X^(t-1))`` for t = 1..M; output ``[X_a^(M) ; X_v^(M)]`` (docs/design.md §4.3).

    Each iteration has its own weights unless ``share_weights``. ``orientation`` picks
    :class:`TimeMajorJCA` (default) or :class:`FeatureMajorJCA`; ``joint_fc`` uses J = FC([X_a ; X_v]);
    ``time_norm`` is the feature-major block's 1/sqrt(L) (see :class:`FeatureMajorJCA`).
    Every weight matrix starts Xavier-uniform; ``init_residual_scale`` then multiplies W_h (0.1: each block
    starts near the identity X_att = X, the toolkit's default; 1.0: plain Xavier, what ABAW6 states).
    ``forward`` returns the concatenated output ``[B, L, d_a + d_v]``; ``iterates`` returns every
    ``(X_a^(t), X_v^(t))``, t = 0..M, for gates; ``block_for(t)`` is the JCA block of iteration t.
    """

    def __init__(self, d_audio: int, d_video: int, length: int, num_iterations: int = 2,
                 share_weights: bool = False, dropout: float = 0.0, orientation: Orientation = "time_major",
                 joint_fc: bool = False, time_norm: bool = True, init_residual_scale: float = 0.1) -> None:
        super().__init__()
        if num_iterations < 1:
            raise ValueError("RJCA needs at least one iteration")
        blocks = {"time_major": TimeMajorJCA, "feature_major": FeatureMajorJCA}
        if orientation not in blocks:
            raise ValueError(f"unknown JCA orientation {orientation!r}; use one of {sorted(blocks)}")
        n_blocks = 1 if share_weights else num_iterations
        extra = {"time_norm": time_norm} if orientation == "feature_major" else {}
        self.blocks = nn.ModuleList([blocks[orientation](d_audio, d_video, length, dropout, init_residual_scale,
                                                         joint_fc=joint_fc, **extra)
                                     for _ in range(n_blocks)])
        self.num_iterations = num_iterations
        self.orientation = orientation
        self.dims = (d_audio, d_video)
        self.length = length

    def block_for(self, t: int) -> nn.Module:
        """The JCA block applied at iteration ``t`` (1..M)."""
        if not 1 <= t <= self.num_iterations:
            raise IndexError(f"iteration {t} outside 1..{self.num_iterations}")
        return self.blocks[min(t - 1, len(self.blocks) - 1)]

    def iterates(self, x_a, x_v, mask=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = [(x_a, x_v)]
        for t in range(1, self.num_iterations + 1):
            out.append(self.block_for(t)(*out[-1], mask))
        return out

    def forward(self, x_a, x_v, mask=None) -> torch.Tensor:
        return torch.cat(self.iterates(x_a, x_v, mask)[-1], dim=-1)
