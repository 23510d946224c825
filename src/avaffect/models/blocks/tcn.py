"""Temporal convolutional network (TCN) encoder (docs/design.md §4.1), as ABAW6/ABAW8 put on each modality."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class TemporalBlock(nn.Module):
    """One residual level of a TCN with dilation ``delta`` and kernel size ``k``.

    With ``conv_delta`` a weight-normalised dilated 1-D convolution (``W = g * V / ||V||`` per output
    channel) and ``m`` the step mask (1 valid, 0 padded)::

        h_1 = m * Dropout(ReLU(conv_delta^(1)(x)))
        h_2 = m * Dropout(ReLU(conv_delta^(2)(h_1)))
        y   = m * ReLU(h_2 + R x)           R = 1x1 convolution if c_in != c_out, else identity

    Each convolution sees ``(k - 1) * delta`` zero steps of padding: all on the left (``causal``: step t
    depends on steps <= t only) or split around the step (centred, the left half rounded down).
    Multiplying by ``m`` after every convolution keeps padded steps exactly zero, so they act like the
    convolution's own zero padding and cannot influence valid steps.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float = 0.0,
                 causal: bool = False) -> None:
        super().__init__()
        self.conv1 = weight_norm(nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(c_out, c_out, kernel_size, dilation=dilation))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None
        for conv in (self.conv1, self.conv2):  # zero biases: about half the ReLUs start active
            nn.init.zeros_(conv.bias)
        self.dropout = nn.Dropout(dropout)
        total = (kernel_size - 1) * dilation
        self.pad = (total, 0) if causal else (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``x [B, c_in, L]``, ``m [B, 1, L]`` → ``[B, c_out, L]``."""
        h = self.dropout(torch.relu(self.conv1(F.pad(x, self.pad)))) * m
        h = self.dropout(torch.relu(self.conv2(F.pad(h, self.pad)))) * m
        res = x if self.residual is None else self.residual(x)
        return torch.relu(h + res) * m


class TCN(nn.Module):
    """Stack of ``num_levels`` :class:`TemporalBlock` with dilation ``2^i`` at level i = 0..n-1.

    ``x [B, L, d_in] → y [B, L, d_out]``. Level 0 maps ``d_in → channels``, the last level
    ``channels → d_out`` (a single level maps ``d_in → d_out``). The receptive field is
    ``1 + 2 (k - 1) (2^n - 1)`` steps. Padded steps (``mask`` 0) are zeroed on input and after every
    convolution, so outputs at valid steps do not depend on the values at padded ones.
    """

    def __init__(self, d_in: int, d_out: int, num_levels: int = 3, kernel_size: int = 3, dropout: float = 0.0,
                 causal: bool = False, channels: int | None = None) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError("a TCN needs at least one level")
        if kernel_size < 1:
            raise ValueError(f"kernel size must be >= 1, got {kernel_size}")
        channels = channels or d_out
        sizes = [d_in] + [channels] * (num_levels - 1) + [d_out]
        self.levels = nn.ModuleList([
            TemporalBlock(sizes[i], sizes[i + 1], kernel_size, 2**i, dropout, causal) for i in range(num_levels)
        ])
        self.out_dim = d_out
        self.receptive_field = 1 + 2 * (kernel_size - 1) * (2**num_levels - 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        m = mask[:, None, :].to(x.dtype)
        h = x.transpose(1, 2) * m
        for level in self.levels:
            h = level(h, m)
        return h.transpose(1, 2)
