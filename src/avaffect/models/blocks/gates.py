"""Gates over RJCA iterations for weak complementarity (docs/design.md §4.4): DCA, GRJCA, HGRJCA.

A gate is a linear layer on attended features followed by a softmax with temperature T (0.1 in the
papers); each output column weights one candidate feature set per time step (broadcast over
features), and the weighted sum goes through ReLU. Every gate module keeps the gate weights of its
last forward pass, detached, in ``last_gate_weights: dict[str, Tensor [B, L, n]]`` (for plots).

``gate_init`` picks how the gate layers start: ``"xavier"`` (Xavier-uniform weights, zero bias: ABAW6's stated
initialisation, which the paper configs select), ``"pytorch"`` (``nn.Linear``'s own Kaiming-uniform, the
toolkit default) or ``"xavier_temperature"`` (Xavier-uniform times T, so that ``logits / T`` start at Xavier's
scale). With T = 0.1 the logits are multiplied by 10, so the initial scale decides how many frames start near
one-hot; Xavier's bound sqrt(6 / (d + n)) is about 2.4x nn.Linear's 1 / sqrt(d) for a 2-way gate on d = 64
(``benchmarks/zoo.py --init-collapse`` measures the fraction of collapsed frames per preset and init).

**Oracle control** (``state_dim``): built with ``state_dim = k``, every gate of a module reads a ``[B, L, k]``
``state`` tensor given to ``forward`` instead of the attended features, e.g. the synthetic plan's true per-frame
weak-segment flags. The gate keeps its form (candidates, softmax, T) and learns a weighting per state, which
bounds what a gate that detected the weak segments perfectly could do with those candidates. A benchmark
control, not a model for real data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from avaffect.models.blocks.jca import RecursiveJCA

MODALITIES = ("audio", "video")
GateInit = Literal["xavier", "xavier_temperature", "pytorch"]
GATE_INITS = ("xavier", "xavier_temperature", "pytorch")


class SoftmaxGate(nn.Module):
    """``G = softmax((X W_g + b_g) / T)`` over the n candidates: ``x [B, L, d_in] → G [B, L, n]``.

    ``bias=False`` gives the papers' printed ``G = softmax(X W_g / T)`` (their W_gl has no bias term).
    ``init``: ``"xavier"`` (Xavier-uniform W_g, zero b_g), ``"xavier_temperature"`` (the same times T) or
    ``"pytorch"`` (``nn.Linear``'s default)."""

    def __init__(self, d_in: int, num_candidates: int, temperature: float = 0.1, bias: bool = True,
                 init: GateInit = "pytorch") -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"gate temperature must be > 0, got {temperature}")
        if init not in GATE_INITS:
            raise ValueError(f"gate init must be one of {GATE_INITS}, got {init!r}")
        self.fc = nn.Linear(d_in, num_candidates, bias=bias)
        if init != "pytorch":
            nn.init.xavier_uniform_(self.fc.weight, gain=temperature if init == "xavier_temperature" else 1.0)
            if self.fc.bias is not None:
                nn.init.zeros_(self.fc.bias)
        self.temperature = temperature
        self.num_candidates = num_candidates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(x) / self.temperature, dim=-1)


def gated_sum(candidates: Sequence[torch.Tensor], weights: torch.Tensor,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """``ReLU(sum_i X_i * G[..., i])`` with each weight column broadcast over features; 0 at padded steps."""
    if len(candidates) != weights.shape[-1]:
        raise ValueError(f"{len(candidates)} candidates but {weights.shape[-1]} gate columns")
    y = torch.relu(sum(x * weights[..., i:i + 1] for i, x in enumerate(candidates)))
    return y * mask[..., None].to(y.dtype) if mask is not None else y


def _check_state(oracle: bool, state: torch.Tensor | None) -> None:
    if oracle and state is None:
        raise ValueError("an oracle gate (built with state_dim) needs the state tensor in forward")
    if not oracle and state is not None:
        raise ValueError("a state tensor was given to a gate built without state_dim")


class DCAGate(nn.Module):
    """Dynamic cross-attention gate: one 2-way gate per modality after the last RJCA iteration::

        G_m   = softmax(X_att,m^(M) W_gm / T)                 W_gm: d_m x 2, G_m: L x 2
        Y_m   = ReLU(X_m^(0) * G_m[:, 0] + X_att,m^(M) * G_m[:, 1])

    Column 0 weights the unattended input, column 1 the attended features.
    ``last_gate_weights``: ``{"audio": [B, L, 2], "video": [B, L, 2]}``.
    """

    def __init__(self, d_audio: int, d_video: int, temperature: float = 0.1, bias: bool = True,
                 init: GateInit = "pytorch", state_dim: int | None = None) -> None:
        super().__init__()
        self.gates = nn.ModuleList([SoftmaxGate(state_dim or dm, 2, temperature, bias, init)
                                    for dm in (d_audio, d_video)])
        self.oracle = state_dim is not None
        self.last_gate_weights: dict[str, torch.Tensor] = {}

    def forward(self, x0: tuple[torch.Tensor, torch.Tensor], x_att: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None = None, state: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_state(self.oracle, state)
        outs, weights = [], {}
        for i, name in enumerate(MODALITIES):
            g = self.gates[i](state if self.oracle else x_att[i])
            weights[name] = g.detach()
            outs.append(gated_sum([x0[i], x_att[i]], g, mask))
        self.last_gate_weights = weights
        return outs[0], outs[1]


class GRJCAGate(nn.Module):
    """Gated RJCA: one (M+1)-way gate per modality over all iterates, computed from the last one::

        G_m = softmax(X_att,m^(M) W_gm / T)                   W_gm: d_m x (M+1), G_m: L x (M+1)
        Y_m = ReLU(sum_{t=0..M} X_m^(t) * G_m[:, t])          X_m^(0) = the unattended input

    ``last_gate_weights``: ``{"audio": [B, L, M+1], "video": [B, L, M+1]}``.
    """

    def __init__(self, d_audio: int, d_video: int, num_iterations: int, temperature: float = 0.1,
                 bias: bool = True, init: GateInit = "pytorch", state_dim: int | None = None) -> None:
        super().__init__()
        self.num_iterations = num_iterations
        self.gates = nn.ModuleList([SoftmaxGate(state_dim or dm, num_iterations + 1, temperature, bias, init)
                                    for dm in (d_audio, d_video)])
        self.oracle = state_dim is not None
        self.last_gate_weights: dict[str, torch.Tensor] = {}

    def forward(self, iterates: Sequence[tuple[torch.Tensor, torch.Tensor]],
                mask: torch.Tensor | None = None, state: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``iterates``: ``[(X_a^(t), X_v^(t)) for t = 0..M]`` as returned by ``RecursiveJCA.iterates``."""
        if len(iterates) != self.num_iterations + 1:
            raise ValueError(f"expected {self.num_iterations + 1} iterates, got {len(iterates)}")
        _check_state(self.oracle, state)
        outs, weights = [], {}
        for i, name in enumerate(MODALITIES):
            g = self.gates[i](state if self.oracle else iterates[-1][i])
            weights[name] = g.detach()
            outs.append(gated_sum([it[i] for it in iterates], g, mask))
        self.last_gate_weights = weights
        return outs[0], outs[1]


class HGRJCAGates(nn.Module):
    """Hierarchical gated RJCA: a 2-way gate per iteration, then an M-way stage gate, per modality::

        X_att^(t)  = JCA_t(X_in^(t-1))                                    t = 1..M, X_in^(0) = X^(0)
        G^(t)      = softmax(X_att^(t) W_g^(t) / T)                        W_g^(t): d_m x 2
        X_g^(t)    = ReLU(X_in^(t-1) * G^(t)[:, 0] + X_att^(t) * G^(t)[:, 1])
        X_in^(t)   = X_att^(t)  (recursion_input="ungated", default)  or  X_g^(t)  ("gated")
        G^(f)      = softmax(X_g^(M) W_f / T)                              W_f: d_m x M
        X^(f)      = ReLU(sum_{t=1..M} X_g^(t) * G^(f)[:, t])

    ``"ungated"`` is the printed form (ABAW6 Eqs. 12-13, ABAW8 Eqs. 17-18): the per-iteration gate weighs
    X_att^(t-1) against X_att^(t), both ungated, and the RJCA recursion X_att^(t) = JCA_t(X_att^(t-1)) is the
    plain one, untouched by the gates. ``"gated"`` (a variant the papers do not print) feeds the gated
    X_g^(t) to the next iteration, so it is also the next gate's "previous" candidate.
    With M = 1 the stage gate is the constant 1 and has no weights. The JCA blocks belong to the
    :class:`RecursiveJCA` passed to ``forward``; this module holds only the gates.
    ``last_gate_weights``: ``{"audio/iter<t>": [B, L, 2] for t = 1..M, "audio/stage": [B, L, M], video alike}``.
    """

    def __init__(self, d_audio: int, d_video: int, num_iterations: int, temperature: float = 0.1,
                 recursion_input: Literal["gated", "ungated"] = "ungated", bias: bool = True,
                 init: GateInit = "pytorch", state_dim: int | None = None) -> None:
        super().__init__()
        if recursion_input not in ("gated", "ungated"):
            raise ValueError(f"recursion_input must be 'gated' or 'ungated', got {recursion_input!r}")
        dims = [state_dim or dm for dm in (d_audio, d_video)]
        self.num_iterations = num_iterations
        self.recursion_input = recursion_input
        self.oracle = state_dim is not None
        self.iteration_gates = nn.ModuleList([
            nn.ModuleList([SoftmaxGate(dm, 2, temperature, bias, init) for dm in dims]) for _ in range(num_iterations)
        ])
        self.stage_gates = (nn.ModuleList([SoftmaxGate(dm, num_iterations, temperature, bias, init) for dm in dims])
                            if num_iterations > 1 else None)
        self.last_gate_weights: dict[str, torch.Tensor] = {}

    def forward(self, rjca: RecursiveJCA, x_a: torch.Tensor, x_v: torch.Tensor,
                mask: torch.Tensor | None = None, state: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if rjca.num_iterations != self.num_iterations:
            raise ValueError(f"gates built for {self.num_iterations} iterations, RJCA has {rjca.num_iterations}")
        _check_state(self.oracle, state)
        weights: dict[str, torch.Tensor] = {}
        x_in = (x_a, x_v)
        gated: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in range(1, self.num_iterations + 1):
            x_att = rjca.block_for(t)(*x_in, mask)
            x_g = []
            for i, name in enumerate(MODALITIES):
                g = self.iteration_gates[t - 1][i](state if self.oracle else x_att[i])
                weights[f"{name}/iter{t}"] = g.detach()
                x_g.append(gated_sum([x_in[i], x_att[i]], g, mask))
            gated.append((x_g[0], x_g[1]))
            x_in = gated[-1] if self.recursion_input == "gated" else x_att
        outs = []
        for i, name in enumerate(MODALITIES):
            if self.stage_gates is None:
                g = torch.ones(*gated[-1][i].shape[:-1], 1, dtype=x_a.dtype, device=x_a.device)
            else:
                g = self.stage_gates[i](state if self.oracle else gated[-1][i])
            weights[f"{name}/stage"] = g.detach()
            outs.append(gated_sum([xg[i] for xg in gated], g, mask))
        self.last_gate_weights = weights
        return outs[0], outs[1]
