"""DLSTM regressors, embedding attention and decision-level fusions of DLSTM-ATT (docs/design.md §4.5; Lucas et al.,
"Deep, dimensional and multimodal emotion recognition using attention mechanisms").

Notation: ``B`` batch, ``L`` steps, ``K`` output dimensions (valence, arousal), ``n`` fused DLSTMs,
``H_i`` hidden size of DLSTM ``i``. Every block maps ``[B, L, *]`` to ``[B, L, *]``; padded steps
(``mask`` 0) never influence valid ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _window(x: torch.Tensor, n: int, fill: float | bool = 0.0) -> torch.Tensor:
    """``x [B, L, *d]`` → ``[B, L, *d, n]``: entry ``[b, t, ..., i] = x[b, t + i - (n - 1) / 2]`` (positions
    outside ``[0, L)`` hold ``fill``). The ``n`` shifted slices of a padded copy, stacked: the values of
    ``unfold``'s view, in a form the ONNX exporter can express with a dynamic batch size (``unfold`` it cannot)."""
    r = (n - 1) // 2
    if x.dim() == 2:
        padded = F.pad(x, (r, r), value=fill)
    else:
        padded = F.pad(x, (0, 0) * (x.dim() - 2) + (r, r), value=fill)
    length = x.shape[1]
    return torch.stack([padded[:, i:i + length] for i in range(n)], dim=-1)


class EmbeddingAttention(nn.Module):
    """Luong "general" attention of the previous DLSTM state over a window of input embeddings.

    For step ``t``, with ``e_i`` (i = 1..n) the embeddings at steps ``t - (n-1)/2 .. t + (n-1)/2`` and
    ``h_{t-1}`` the top LSTM layer's hidden state at the previous step (``h_{-1} = 0``)::

        s_i = h_{t-1}^T W_a e_i                       W_a is H x d
        a   = softmax(s)                              over positions inside the window's recording part
        c_t = sum_i a_i e_i                           the LSTM input at step t

    Window positions before the start, after the end or on padded steps (``mask`` 0) are left out of
    the softmax (their weight is exactly 0); a step with no valid position gets ``c_t = 0``.

    ``bypass`` (a buffer, so a checkpoint records the state its weights were selected in) replaces the
    context by ``c_t = e_t``; :meth:`set_epoch` turns it on for epochs ``< bypass_epochs`` (the paper
    trains the first epochs without attention) and off afterwards. It is off on construction, so a
    model that is never given an epoch (inference) always attends.
    """

    def __init__(self, d_query: int, d_embed: int, window: int = 13, bypass_epochs: int = 5) -> None:
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"the embedding attention window must be a positive odd number, got {window}")
        self.window = window
        self.bypass_epochs = bypass_epochs
        self.key = nn.Linear(d_embed, d_query, bias=False)  # weight [H, d] = W_a, key_i = W_a e_i
        self.register_buffer("bypass", torch.tensor(False))
        self.last_weights: torch.Tensor | None = None  # [B, L, n] from the last attending forward

    @property
    def bypassed(self) -> bool:
        return bool(self.bypass.item())

    def set_epoch(self, epoch: int) -> None:
        self.bypass.fill_(epoch < self.bypass_epochs)

    def prepare(self, e: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Windowed keys ``[B, L, H, n]``, values ``[B, L, d, n]`` and validity ``[B, L, n]``."""
        b, l, _ = e.shape
        if mask is None:
            mask = torch.ones(b, l, dtype=torch.bool, device=e.device)
        e = e * mask[..., None].to(e.dtype)
        return _window(self.key(e), self.window), _window(e, self.window), _window(mask.bool(), self.window, False)

    @staticmethod
    def attend(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query [..., H]``, ``keys [..., H, n]``, ``values [..., d, n]``, ``valid [..., n]`` →
        ``(context [..., d], weights [..., n])``."""
        s = torch.einsum("...hn,...h->...n", keys, query)
        s = s.masked_fill(~valid, torch.finfo(s.dtype).min)  # finite: no NaN when no position is valid
        a = torch.softmax(s, dim=-1) * valid.to(s.dtype)  # invalid weights are exactly 0
        return torch.einsum("...dn,...n->...d", values, a), a

    def forward(self, queries: torch.Tensor, e: torch.Tensor, mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """All steps at once for given queries (``queries[:, t]`` is the state used at step ``t``, i.e.
        ``h_{t-1}``): ``queries [B, L, H]``, ``e [B, L, d]`` → ``(contexts [B, L, d], weights [B, L, n])``.
        The DLSTM calls :meth:`prepare` / :meth:`attend` step by step instead, since its queries depend
        on the contexts."""
        keys, values, valid = self.prepare(e, mask)
        return self.attend(queries, keys, values, valid)


class DLSTM(nn.Module):
    """Deep LSTM regressor: stacked unidirectional LSTM layers (dropout between) → linear layer per step.

    ::

        h_t^(1) = LSTM_1(x_t, h_{t-1}^(1)),  h_t^(j) = LSTM_j(Dropout(h_t^(j-1)), h_{t-1}^(j))
        y_t     = act(W_o h_t^(J) + b_o)       (act: identity, as in the paper, or tanh)

    With an :class:`EmbeddingAttention` the input ``x_t`` is replaced by the context ``c_t`` computed from
    ``h_{t-1}^(J)``, which forces a step-by-step loop (the same ``nn.LSTM`` weights are stepped one
    step at a time, so attending, bypassed and plain DLSTMs share one parametrisation and a
    bypassed / plain one runs the fused whole-sequence kernel).

    Truncated BPTT (``tbptt_steps = k > 0``, training only): the window is run in chunks of ``k`` steps; the
    LSTM state is carried from one chunk to the next but detached, so gradients stop at chunk boundaries (the
    forward values are those of the whole-window recursion). ``k = 0``: full BPTT over the window.

    ``forward(x [B, L, d], mask [B, L]) → (y [B, L, K], h [B, L, H])``; ``h`` is the top layer's
    hidden state. Inputs and outputs at padded steps are zeroed; padding sits at the end of a window,
    so the unidirectional recursion never carries it into a valid step, and the attention masks it.
    """

    def __init__(self, d_in: int, hidden: int, num_outputs: int, num_layers: int = 2, dropout: float = 0.0,
                 activation: str = "none", attention: EmbeddingAttention | None = None, tbptt_steps: int = 0) -> None:
        super().__init__()
        if activation not in ("tanh", "none"):
            raise ValueError(f"unknown DLSTM output activation {activation!r}")
        self.lstm = nn.LSTM(d_in, hidden, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.out = nn.Linear(hidden, num_outputs)
        self.attention = attention
        self.activation = activation
        self.hidden = hidden
        self.num_outputs = num_outputs
        self.tbptt_steps = tbptt_steps

    def set_epoch(self, epoch: int) -> None:
        if self.attention is not None:
            self.attention.set_epoch(epoch)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        m = None if mask is None else mask[..., None].to(x.dtype)
        if m is not None:
            x = x * m
        k = self.tbptt_steps if self.training else 0
        if self.attention is None or self.attention.bypassed:
            if k and x.shape[1] > k:
                parts, state = [], None
                for s in range(0, x.shape[1], k):
                    o, state = self.lstm(x[:, s:s + k], state)
                    state = tuple(t.detach() for t in state)  # carried forward, gradients truncated
                    parts.append(o)
                h = torch.cat(parts, dim=1)
            else:
                h, _ = self.lstm(x)
        else:
            h = self._attend_loop(x, mask)
        y = self.out(h)
        if self.activation == "tanh":
            y = torch.tanh(y)
        if m is not None:
            y, h = y * m, h * m
        return y, h

    def _attend_loop(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        keys, values, valid = self.attention.prepare(x, mask)
        b, l, _ = x.shape
        state = None
        query = x.new_zeros(b, self.hidden)  # h_{-1} = 0
        outs, weights = [], []
        k = self.tbptt_steps if self.training else 0
        for t in range(l):
            if k and t and t % k == 0:  # truncated BPTT: carry the state, cut the gradient
                state = tuple(s.detach() for s in state)
                query = query.detach()
            c, a = self.attention.attend(query, keys[:, t], values[:, t], valid[:, t])
            o, state = self.lstm(c[:, None], state)
            query = o[:, 0]
            outs.append(query)
            weights.append(a)
        self.attention.last_weights = torch.stack(weights, dim=1).detach()
        return torch.stack(outs, dim=1)


class BimodalAttentionFusion(nn.Module):
    """Attention over the predictions of ``n`` DLSTMs, per output dimension.

    With ``C_t = [h_t^1 ; ... ; h_t^n]`` (size ``D = sum_i H_i``; ``c n`` when all hidden sizes are ``c``)
    and ``y_{m,t}^i`` DLSTM ``i``'s prediction of dimension ``m``::

        S_m = C_t^T W_m (+ b_m)       W_m is D x n, one per output dimension m
        a_m = softmax(S_m)            over the n predictions
        z_m = sum_i a_mi y_mi

    ``last_weights`` holds ``a`` (``[B, L, K, n]``, detached) from the last forward, for plots.
    """

    def __init__(self, hidden_sizes: list[int], num_outputs: int, bias: bool = False) -> None:
        super().__init__()
        d, n = sum(hidden_sizes), len(hidden_sizes)
        self.weight = nn.Parameter(torch.empty(num_outputs, d, n))
        nn.init.uniform_(self.weight, -d**-0.5, d**-0.5)
        self.bias = nn.Parameter(torch.zeros(num_outputs, n)) if bias else None
        self.last_weights: torch.Tensor | None = None

    def forward(self, ys: list[torch.Tensor], hs: list[torch.Tensor]) -> torch.Tensor:
        c = torch.cat(hs, dim=-1)  # [B, L, D]
        s = torch.einsum("bld,kdn->blkn", c, self.weight)
        if self.bias is not None:
            s = s + self.bias
        a = torch.softmax(s, dim=-1)
        self.last_weights = a.detach()
        return (a * torch.stack(ys, dim=-1)).sum(-1)


class OLBFusion(nn.Module):
    """OLB baseline: a learned linear mix of the ``n`` predictions, per dimension.

    ``z_m = sum_i y_mi W_mi (+ b_m)``, i.e. ``z = Y W`` with ``Y`` the 1 x n row of predictions of
    dimension m; ``W`` starts at the average ``1/n``. ``shared=True`` is the paper's form: one n x 1 vector
    ``W`` for every dimension (``W_mi = W_i``); otherwise each dimension learns its own.
    """

    def __init__(self, num_inputs: int, num_outputs: int, bias: bool = False, shared: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1 if shared else num_outputs, num_inputs), 1.0 / num_inputs))
        self.bias = nn.Parameter(torch.zeros(num_outputs)) if bias else None

    def forward(self, ys: list[torch.Tensor], hs: list[torch.Tensor]) -> torch.Tensor:
        z = (torch.stack(ys, dim=-1) * self.weight).sum(-1)
        return z + self.bias if self.bias is not None else z


class HLBFusion(nn.Module):
    """HLB baseline: ``z = C_t^T W (+ b)`` with ``C_t = [h_t^1 ; ... ; h_t^n]`` and ``W`` D x K.

    The DLSTMs' own output layers do not enter ``z`` (they only serve their pre-training)."""

    def __init__(self, hidden_sizes: list[int], num_outputs: int, bias: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(sum(hidden_sizes), num_outputs, bias=bias)

    def forward(self, ys: list[torch.Tensor], hs: list[torch.Tensor]) -> torch.Tensor:
        return self.linear(torch.cat(hs, dim=-1))
