"""Regression heads."""

from __future__ import annotations

import torch
from torch import nn


class MLPHead(nn.Module):
    """Per-step MLP ``y = act(W_2 Dropout(ReLU(W_1 x + b_1)) + b_2)``, ``[B, L, d] → [B, L, K]``.

    ``activation`` is ``"tanh"`` (outputs in [-1, 1]) or ``"none"`` (the RJA code).
    """

    def __init__(self, d_in: int, hidden: int, num_outputs: int = 2, dropout: float = 0.0,
                 activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ("tanh", "none"):
            raise ValueError(f"unknown head activation {activation!r}")
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, num_outputs))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return torch.tanh(y) if self.activation == "tanh" else y
