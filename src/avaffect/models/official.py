"""Reference-compatible re-implementations of the authors' released fusion modules (SPEC §4.6, §9).

These modules reproduce the *released code*, not the papers, so that the authors' checkpoints load with
``load_state_dict(strict=True)`` under their own parameter names and give the same outputs. Variants:

=====================  ==========================================================================
``rja_icassp23``       RJA (recurrent joint attention): U-BLSTMs, audio-guided spatial attention,
                       recursive JCA, J-BLSTM, two regression heads.
``dca_icme24``         DCA (dynamic cross-attention): RJA plus a 2-way gate per modality.
``jca_tbiom23``        JCA: spatial attention on the normalised audio, co-attention, J-BLSTM, heads
                       (no U-BLSTMs).
``rjcma_dcn3_block``   The 3-modality recursive co-attention block of RJCMA: ``block(x1, x2, x3)``.
=====================  ==========================================================================

Entry points: :func:`from_official` (state dict → module in eval mode, sizes inferred from the tensors),
:func:`build_official` (fresh, randomly initialised module from explicit sizes), :func:`infer_sizes`,
:func:`convert_official` (authors' checkpoint file → ``model.safetensors``) and :func:`load_converted`.

Deviations of the released code from the papers, all reproduced here on purpose:

* **Dropout on the attention map**: ``C_m = Dropout(tanh(K_m Q / sqrt(d)))`` — the papers have no
  dropout there; it only matters in training mode.
* **Extra non-linearities**: ``H_m = ReLU(tanh(V_m C_m))`` and the output projection is followed by
  ReLU and Dropout before the residual sum.
* **Keys mix time**: ``K_m = Linear_{L→L}(X_m^T)`` with a bias; the window length L is part of the weights.
* **Joint order [video ; audio]**: the co-attention is called with (video, audio), so index 1 / ``key1``
  / ``linears.0`` is video and index 2 / ``linears.1`` is audio.
* **Dead query projection of the 3-modal block**: ``query_linear(J)`` is computed by the released block
  but the raw joint features ``J`` are used as the query; the parameters are kept (so the checkpoint loads
  strictly) but never used, and receive no gradient. The 2-modal CAM block *does* use its projection.
* **Spatial attention broadcast**: the projected audio term (``[N, K]``) is added as ``[N, K, 1]``, i.e.
  broadcast along the *last* axis of the ``[N, R, K]`` region scores (each region row gets one scalar of
  the audio term), not added to every region row as in the paper. This only type-checks because the
  attention width K equals the number of regions R (49).
* **Region rows in memory order**: the ``R·D`` video vector is viewed as ``R`` rows of ``D`` values in
  memory order. The released pipeline flattens a channel-major ``D x 7 x 7`` map, so a "row" is not one
  spatial cell; feed converted checkpoints features flattened exactly as the authors' pipeline does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avaffect.errors import AvaffectError, ConfigError
from avaffect.models.safetensors_io import read_tagged_metadata, write_tagged

FORMAT = "avaffect-official-1"
GATE_TEMPERATURE = 0.1

__all__ = [
    "FORMAT",
    "VARIANTS",
    "CAMSizes",
    "DCNSizes",
    "OfficialBLSTM",
    "SpatialAttention",
    "VideoAttention",
    "DenseCoAttention",
    "DCNLayer",
    "DCNStack",
    "OfficialCAM",
    "build_official",
    "infer_sizes",
    "guess_variant",
    "from_official",
    "convert_official",
    "load_converted",
]


# --------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class CAMSizes:
    """Sizes of the 2-modality systems (``rja_icassp23``, ``dca_icme24``, ``jca_tbiom23``).

    ``dim`` is D (512 in the released models; the audio input size and the per-region video size),
    ``head_hidden`` is H (128), ``length`` the window length L baked into the key projections,
    ``iterations`` the number of co-attention iterations, ``lstm_layers`` the layers of every BLSTM and
    ``regions`` the number of spatial regions R (49); the video input has ``regions * dim`` features.
    """

    dim: int
    head_hidden: int
    length: int
    iterations: int
    lstm_layers: int = 2
    regions: int = 49

    def __post_init__(self) -> None:
        for name in ("dim", "head_hidden", "length", "iterations", "lstm_layers", "regions"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"CAMSizes.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.dim % 2:
            raise ConfigError(f"CAMSizes.dim must be even (BLSTM with dim/2 units per direction), got {self.dim}")


@dataclass(frozen=True)
class DCNSizes:
    """Sizes of the multi-modality co-attention block (``rjcma_dcn3_block``): per-modality feature sizes
    ``dims`` (joint size d = sum), window length ``length`` and number of ``iterations``."""

    dims: tuple[int, ...]
    length: int
    iterations: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if len(self.dims) < 2 or min(self.dims) < 1 or self.length < 1 or self.iterations < 1:
            raise ConfigError(f"invalid DCNSizes {self!r}: need >= 2 positive dims, length >= 1, iterations >= 1")


# ------------------------------------------------------------------------------------------- modules


class OfficialBLSTM(nn.Module):
    """The authors' BLSTM wrapper (``audio_extract``, ``video_extract``, ``Joint``).

    With n = ``num_layers`` and X ``[B, L, d_in]``::

        (h_0, c_0) = (init_hidden[:2n], init_hidden[2n:])     learned, shared by the batch
        S = BiLSTM(X; h_0, c_0)                                [B, L, dim]  (dim/2 units per direction)
        Y = L2norm(Linear_{d_in+dim → dim}(Dropout([X ; S])))  [B, L, dim]

    ``init_hidden`` holds the 2n rows of h_0 (layer-major, forward before backward, as ``nn.LSTM``
    orders them) followed by the 2n rows of c_0. The dropout rates are not stored in a checkpoint;
    they only matter in training mode.
    """

    def __init__(self, d_in: int, dim: int, num_layers: int = 2, dropout: float = 0.5, lstm_dropout: float = 0.0,
                 ) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"BLSTM output size must be even, got {dim}")
        self.num_layers = num_layers
        self.rnn = nn.LSTM(d_in, dim // 2, num_layers=num_layers, batch_first=True, bidirectional=True,
                           dropout=lstm_dropout if num_layers > 1 else 0.0)
        self.init_hidden = nn.Parameter(torch.empty(4 * num_layers, dim // 2))
        self.linear = nn.Linear(d_in + dim, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.init_hidden, std=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        n = 2 * self.num_layers
        h0 = self.init_hidden[:n, None, :].expand(n, b, -1).contiguous()
        c0 = self.init_hidden[n:, None, :].expand(n, b, -1).contiguous()
        s, _ = self.rnn(x, (h0, c0))
        return F.normalize(self.linear(self.dropout(torch.cat([x, s], dim=-1))), p=2, dim=-1)


class SpatialAttention(nn.Module):
    """Audio-guided attention over R regions of one frame (``video_attn.attn``), released form.

    With V ``[N, R, D]`` (region rows), a ``[N, D]`` (audio) and K = R::

        v     = ReLU(V W_video + b_video)                      [N, R, D]
        g     = ReLU(a W_audio + b_audio)                      [N, D]
        z     = tanh(v W_v + (g W_g)[:, :, None]) w_h          [N, R]   W_v, W_g: D x K, w_h: K x 1, no biases
        alpha = softmax_R(z)                                   [N, R]
        y     = (sum_r alpha_r V_r) W_feat + b_feat            [N, D]

    Paper form: ``tanh(v W_v + 1_R (g W_g))`` — the audio term added to every region row. The released
    code indexes it ``[:, :, None]``, broadcasting it along the last (K) axis instead; reproduced here.
    The weighted sum is over the raw rows V, not over v.
    """

    def __init__(self, dim: int, regions: int = 49) -> None:
        super().__init__()
        self.dim, self.regions = dim, regions
        self.affine_video = nn.Linear(dim, dim)
        self.affine_audio = nn.Linear(dim, dim)
        self.affine_v = nn.Linear(dim, regions, bias=False)
        self.affine_g = nn.Linear(dim, regions, bias=False)
        self.affine_h = nn.Linear(regions, 1, bias=False)
        self.affine_feat = nn.Linear(dim, dim)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        v = torch.relu(self.affine_video(video))
        g = torch.relu(self.affine_audio(audio))
        z = self.affine_h(torch.tanh(self.affine_v(v) + self.affine_g(g)[:, :, None])).squeeze(-1)
        alpha = torch.softmax(z, dim=-1)
        return self.affine_feat((alpha[:, :, None] * video).sum(dim=1))


class VideoAttention(nn.Module):
    """Per-frame wrapper of :class:`SpatialAttention` (``video_attn``).

    ``video [B, L, R·D]`` is viewed as ``[B·L, R, D]`` in memory order, ``audio [B, L, D]`` as
    ``[B·L, D]``; ``y = attn(V, a)`` reshaped to ``[B, L, D]``.
    """

    def __init__(self, dim: int, regions: int = 49) -> None:
        super().__init__()
        self.attn = SpatialAttention(dim, regions)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b, l, d = audio.shape
        r = self.attn.regions
        if video.shape[:2] != (b, l) or video.shape[-1] != r * d:
            raise ValueError(f"video must be [B, L, {r}*{d}={r * d}] to match audio {tuple(audio.shape)}, "
                             f"got {tuple(video.shape)}")
        y = self.attn(video.reshape(b * l, r, d), audio.reshape(b * l, d))
        return y.reshape(b, l, d)


class DenseCoAttention(nn.Module):
    """Projections and attention maps of one co-attention iteration (``dense_coattn``), released form.

    For modalities m = 1..M with X_m ``[B, L, d_m]`` and J = [X_1 ; ... ; X_M] ``[B, L, d]``::

        Q   = J W_q + b_q                 [B, L, d]     (use_query=False: Q = J, W_q unused — 3-modal block)
        K_m = Linear_{L→L}(X_m^T)         [B, d_m, L]   key{m}_linear mixes time, with bias
        V_m = X_m W_vm + b_vm             [B, L, d_m]   value{m}_linear
        C_m = Dropout_p(tanh(K_m Q / sqrt(d)))          [B, d_m, d]  (dropout on the map: not in the papers)
        H_m = ReLU(tanh(V_m C_m))         [B, L, d]

    ``forward`` returns the list of H_m.
    """

    def __init__(self, dims: tuple[int, ...], length: int, use_query: bool = True, dropout: float = 0.6) -> None:
        super().__init__()
        self.dims, self.length, self.use_query = tuple(dims), length, use_query
        d = sum(self.dims)
        self.sqrt_d = math.sqrt(d)
        self.query_linear = nn.Linear(d, d)
        for m in range(1, len(self.dims) + 1):
            setattr(self, f"key{m}_linear", nn.Linear(length, length))
        for m, dm in enumerate(self.dims, start=1):
            setattr(self, f"value{m}_linear", nn.Linear(dm, dm))
        self.dropout = nn.Dropout(dropout)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        joint = torch.cat(xs, dim=-1)
        # The released 3-modal block computes query_linear(joint) and discards it; skipping it changes nothing.
        q = self.query_linear(joint) if self.use_query else joint
        out = []
        for m, x in enumerate(xs, start=1):
            k = getattr(self, f"key{m}_linear")(x.transpose(1, 2))  # [B, d_m, L]
            v = getattr(self, f"value{m}_linear")(x)  # [B, L, d_m]
            c = self.dropout(torch.tanh(k @ q / self.sqrt_d))  # [B, d_m, d]
            out.append(torch.relu(torch.tanh(v @ c)))  # [B, L, d]
        return out


class DCNLayer(nn.Module):
    """One co-attention iteration with residual outputs (``dcn_layers.<t>``), released form::

        (H_1, ..., H_M) = dense_coattn(X_1, ..., X_M)                       see DenseCoAttention
        X_m' = X_m + Dropout(ReLU(H_m W_om + b_om))     W_om: d x d_m       linears.<m-1>.0
    """

    def __init__(self, dims: tuple[int, ...], length: int, use_query: bool = True, dropout: float = 0.6) -> None:
        super().__init__()
        self.dense_coattn = DenseCoAttention(dims, length, use_query, dropout)
        d = sum(dims)
        self.linears = nn.ModuleList(
            [nn.Sequential(nn.Linear(d, dm), nn.ReLU(), nn.Dropout(dropout)) for dm in dims])

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        hs = self.dense_coattn(xs)
        return [x + lin(h) for x, h, lin in zip(xs, hs, self.linears, strict=True)]


class DCNStack(nn.Module):
    """Recursive co-attention: ``X^(t) = DCNLayer_t(X^(t-1))``, t = 1..T, own weights per iteration.

    Used as ``coattn`` inside :class:`OfficialCAM` (2 modalities, query projection used) and, on its own,
    as the ``rjcma_dcn3_block`` variant (3 modalities, ``use_query=False`` — the released block's dead
    query projection: ``Q = J``; its parameters stay for strict loading and get no gradient).
    ``forward(x_1, ..., x_M)`` with x_m ``[B, L, d_m]`` returns the tuple ``(x_1^(T), ..., x_M^(T))``.
    """

    def __init__(self, dims: tuple[int, ...], length: int, iterations: int, use_query: bool = True,
                 dropout: float = 0.6) -> None:
        super().__init__()
        self.dims, self.length = tuple(dims), length
        self.dcn_layers = nn.ModuleList([DCNLayer(self.dims, length, use_query, dropout) for _ in range(iterations)])

    @property
    def window_length(self) -> int:
        return self.length

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(xs) != len(self.dims):
            raise ValueError(f"this block fuses {len(self.dims)} modalities, got {len(xs)} inputs")
        for m, (x, dm) in enumerate(zip(xs, self.dims, strict=True), start=1):
            if x.dim() != 3 or x.shape[1] != self.length or x.shape[2] != dm:
                raise ValueError(f"input {m} must be [B, {self.length}, {dm}] (the window length is part of "
                                 f"the weights; window longer recordings), got {tuple(x.shape)}")
        out = list(xs)
        for layer in self.dcn_layers:
            out = layer(out)
        return tuple(out)


class OfficialCAM(nn.Module):
    """The authors' 2-modality systems (RJA, DCA, JCA) in released form; ``forward(audio, video) → [B, L, 2]``.

    Inputs: audio ``[B, L, D]``, video ``[B, L, R·D]`` (R = 49 regions of D features, memory order).
    Output channels: (valence, arousal); no output activation::

        a = L2norm(audio);  v = L2norm(video)                    (video over all R·D features)
        a = audio_extract(a)                                     RJA, DCA (extractors=True)
        v = video_attn(v, a)                                     [B, L, D]   audio-guided spatial attention
        v = video_extract(v)                                     RJA, DCA
        (v^(0), a^(0)) = (v, a)
        (v^(t), a^(t)) = coattn.dcn_layers[t-1](v^(t-1), a^(t-1)),  t = 1..T   joint order [video ; audio]
        DCA (gates=True), for m in (v, a):
            G_m = softmax(m_gating_fc_layer(m^(T)) / 0.1)        [B, L, 2]
            m   = ReLU(G_m[..., 0] * m^(0) + G_m[..., 1] * m^(T))  (column 0: unattended, 1: attended)
        j = Joint([v ; a])                                       [B, L, D]
        y = [vregressor(j) ; aregressor(j)]                      regressor: Linear(D→H), ReLU, Dropout(0.6), Linear(H→1)

    JCA = extractors off, no gates (the spatial attention then uses the normalised audio). The window
    length L is part of the co-attention weights. ``mask`` (optional, ``[B, L]``) only zeroes the output at
    padded steps: the released model has no masking, so padded steps still influence valid ones.
    """

    def __init__(self, sizes: CAMSizes, extractors: bool = True, gates: bool = False, dropout: float = 0.6,
                 blstm_dropout: float = 0.5) -> None:
        super().__init__()
        self.sizes, self.extractors, self.gates = sizes, extractors, gates
        d, h = sizes.dim, sizes.head_hidden
        if extractors:
            self.audio_extract = OfficialBLSTM(d, d, sizes.lstm_layers, blstm_dropout)
            self.video_extract = OfficialBLSTM(d, d, sizes.lstm_layers, blstm_dropout)
        self.video_attn = VideoAttention(d, sizes.regions)
        self.coattn = DCNStack((d, d), sizes.length, sizes.iterations, use_query=True, dropout=dropout)
        if gates:
            self.video_gating_fc_layer = nn.Linear(d, 2)
            self.audio_gating_fc_layer = nn.Linear(d, 2)
        self.Joint = OfficialBLSTM(2 * d, d, sizes.lstm_layers, blstm_dropout)
        self.vregressor = self._head(d, h)
        self.aregressor = self._head(d, h)

    @staticmethod
    def _head(d: int, h: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Dropout(0.6), nn.Linear(h, 1))

    @property
    def window_length(self) -> int:
        return self.sizes.length

    @staticmethod
    def _gate(layer: nn.Linear, x0: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        g = torch.softmax(layer(xt) / GATE_TEMPERATURE, dim=-1)
        return torch.relu(g[..., 0:1] * x0 + g[..., 1:2] * xt)

    def forward(self, audio: torch.Tensor, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        s = self.sizes
        if audio.dim() != 3 or audio.shape[1:] != (s.length, s.dim):
            raise ValueError(f"audio must be [B, {s.length}, {s.dim}] (the window length is part of the weights; "
                             f"window longer recordings), got {tuple(audio.shape)}")
        a = F.normalize(audio, p=2, dim=-1)
        v = F.normalize(video, p=2, dim=-1)
        if self.extractors:
            a = self.audio_extract(a)
        v = self.video_attn(v, a)
        if self.extractors:
            v = self.video_extract(v)
        v_t, a_t = self.coattn(v, a)
        if self.gates:
            v_t = self._gate(self.video_gating_fc_layer, v, v_t)
            a_t = self._gate(self.audio_gating_fc_layer, a, a_t)
        j = self.Joint(torch.cat([v_t, a_t], dim=-1))
        y = torch.cat([self.vregressor(j), self.aregressor(j)], dim=-1)
        if mask is not None:
            y = y * mask[..., None].to(y.dtype)
        return y


# ------------------------------------------------------------------------------------------ variants

VARIANTS: dict[str, dict] = {
    "rja_icassp23": {"kind": "cam", "extractors": True, "gates": False,
                     "summary": "RJA (ICASSP 2023): U-BLSTMs + recursive JCA + J-BLSTM"},
    "dca_icme24": {"kind": "cam", "extractors": True, "gates": True,
                   "summary": "DCA (ICME 2024): RJA + 2-way gates (T = 0.1)"},
    "jca_tbiom23": {"kind": "cam", "extractors": False, "gates": False,
                    "summary": "JCA (T-BIOM 2023): spatial attention + JCA + J-BLSTM"},
    "rjcma_dcn3_block": {"kind": "dcn", "summary": "RJCMA 3-modality recursive co-attention block"},
}


def _check_variant(variant: str) -> dict:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown official variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def build_official(variant: str, sizes: CAMSizes | DCNSizes | Mapping) -> nn.Module:
    """A fresh (randomly initialised, training mode) module of ``variant`` with explicit ``sizes``."""
    spec = _check_variant(variant)
    if spec["kind"] == "cam":
        if not isinstance(sizes, CAMSizes):
            sizes = CAMSizes(**dict(sizes))
        return OfficialCAM(sizes, extractors=spec["extractors"], gates=spec["gates"])
    if not isinstance(sizes, DCNSizes):
        sizes = DCNSizes(**dict(sizes))
    return DCNStack(sizes.dims, sizes.length, sizes.iterations, use_query=False)


def _sizes_of(module: nn.Module) -> CAMSizes | DCNSizes:
    if isinstance(module, OfficialCAM):
        return module.sizes
    if isinstance(module, DCNStack):
        return DCNSizes(module.dims, module.length, len(module.dcn_layers))
    raise TypeError(f"not an official module: {type(module).__name__}")


def guess_variant(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The variant whose key layout ``state_dict`` has, or None."""
    keys = set(_strip_prefix(state_dict))
    if any(k.startswith("dcn_layers.") for k in keys):
        return "rjcma_dcn3_block"
    if not any(k.startswith("coattn.dcn_layers.") for k in keys) or "Joint.init_hidden" not in keys:
        return None
    if "video_gating_fc_layer.weight" in keys:
        return "dca_icme24"
    if "audio_extract.init_hidden" in keys:
        return "rja_icassp23"
    return "jca_tbiom23"


def _iteration_count(keys, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in keys if (m := pat.match(k))}
    if not idx:
        return 0
    if idx != set(range(len(idx))):
        raise ConfigError(f"co-attention iterations {sorted(idx)} are not numbered 0..{len(idx) - 1} "
                          f"(keys {prefix}<t>.*); the state dict is incomplete")
    return len(idx)


def _mismatch(variant: str, state_dict: Mapping, missing: list[str], unexpected: list[str], extra: str = "",
              ) -> ConfigError:
    def show(keys: list[str]) -> str:
        keys = sorted(keys)
        more = f" … (+{len(keys) - 8} more)" if len(keys) > 8 else ""
        return ", ".join(keys[:8]) + more

    parts = [f"the state dict does not match official variant {variant!r}"]
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if extra:
        parts.append(extra)
    guess = guess_variant(state_dict)
    if guess is not None and guess != variant:
        parts.append(f"its keys look like variant {guess!r} — pass variant={guess!r}")
    else:
        parts.append("check that the checkpoint comes from the authors' code for this variant "
                     f"(variants: {', '.join(VARIANTS)})")
    return ConfigError("; ".join(parts))


_SIZE_KEYS = {
    "cam": ("Joint.init_hidden", "Joint.linear.weight", "vregressor.0.weight",
            "coattn.dcn_layers.0.dense_coattn.key1_linear.weight", "video_attn.attn.affine_v.weight"),
    "dcn": ("dcn_layers.0.dense_coattn.key1_linear.weight", "dcn_layers.0.dense_coattn.value1_linear.weight"),
}


def infer_sizes(state_dict: Mapping[str, torch.Tensor], variant: str) -> CAMSizes | DCNSizes:
    """Read the sizes of ``variant`` off the tensors of ``state_dict`` (authors' names).

    CAM variants: D = rows of ``Joint.linear.weight``, H = rows of ``vregressor.0.weight``, L = size of
    ``key1_linear``, iterations = number of ``coattn.dcn_layers.<t>``, LSTM layers = rows of
    ``Joint.init_hidden`` / 4, regions = rows of ``affine_v``. 3-modal block: d_m = size of
    ``value<m>_linear``, L = size of ``key1_linear``, iterations = number of ``dcn_layers.<t>``.
    """
    spec = _check_variant(variant)
    sd = _strip_prefix(state_dict)
    missing = [k for k in _SIZE_KEYS[spec["kind"]] if k not in sd]
    if missing:
        raise _mismatch(variant, sd, missing, [], "cannot infer the sizes")
    try:
        if spec["kind"] == "dcn":
            p = "dcn_layers.0.dense_coattn."
            n_mod = len([k for k in sd if re.fullmatch(re.escape(p) + r"value\d+_linear\.weight", k)])
            dims = tuple(int(sd[f"{p}value{m}_linear.weight"].shape[0]) for m in range(1, n_mod + 1))
            return DCNSizes(dims, int(sd[p + "key1_linear.weight"].shape[0]), _iteration_count(sd, "dcn_layers."))
        return CAMSizes(
            dim=int(sd["Joint.linear.weight"].shape[0]),
            head_hidden=int(sd["vregressor.0.weight"].shape[0]),
            length=int(sd["coattn.dcn_layers.0.dense_coattn.key1_linear.weight"].shape[0]),
            iterations=_iteration_count(sd, "coattn.dcn_layers."),
            lstm_layers=max(1, int(sd["Joint.init_hidden"].shape[0]) // 4),
            regions=int(sd["video_attn.attn.affine_v.weight"].shape[0]),
        )
    except KeyError as e:  # e.g. value2_linear missing while value3_linear is present
        raise _mismatch(variant, sd, [str(e.args[0])], [], "cannot infer the sizes") from None
    except (AttributeError, IndexError, TypeError) as e:
        raise _mismatch(variant, sd, [], [], f"cannot infer the sizes ({e})") from None


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a DataParallel ``module.`` prefix (from every key that has it)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def from_official(state_dict: Mapping[str, torch.Tensor], variant: str) -> nn.Module:
    """Build ``variant`` with sizes inferred from ``state_dict`` (authors' names; a ``module.`` prefix is
    dropped), load it strictly and return it in eval mode.

    ``rja_icassp23`` / ``dca_icme24`` / ``jca_tbiom23``: ``forward(audio, video) → [B, L, 2]`` (valence,
    arousal). ``rjcma_dcn3_block``: ``forward(x1, x2, x3) → (y1, y2, y3)``. Raises ConfigError naming the
    missing / unexpected keys when the state dict does not match the variant.
    """
    _check_variant(variant)
    if not isinstance(state_dict, Mapping) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise ConfigError("from_official needs a state dict (a mapping of parameter names to tensors); "
                          "for a checkpoint file use convert_official")
    sd = _strip_prefix(state_dict)
    model = build_official(variant, infer_sizes(sd, variant))
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise _mismatch(variant, sd, missing, unexpected)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # shape mismatches
        detail = " ".join(str(e).split())
        raise _mismatch(variant, sd, [], [], f"tensor shapes disagree with the inferred sizes ({detail})") from None
    return model.eval()


# ----------------------------------------------------------------------------------------- converter


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise AvaffectError(f"{path}: checkpoint file not found — pass the path of the authors' .pt/.pth file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors of several types for files that hold more than tensors
        raise AvaffectError(
            f"{path}: cannot be read as tensors with torch.load(weights_only=True) ({type(e).__name__}: it holds "
            "pickled Python objects or is not a torch file); if you trust the file, re-save its state dict alone, "
            "e.g. torch.save(torch.load(p, weights_only=False)['state_dict'], 'clean.pt'), and convert that"
        ) from None
    for key in ("state_dict", "net", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise AvaffectError(f"{path}: no state dict found (expected a dict of tensors, or one under a "
                            "'state_dict', 'net' or 'model' key) — is this an authors' fusion checkpoint?")
    return {str(k): v for k, v in obj.items()}


def convert_official(checkpoint_path: str | Path, variant: str, out_dir: str | Path) -> Path:
    """Convert an authors' checkpoint of ``variant`` to ``out_dir/model.safetensors`` (atomic write).

    The file may hold a plain state dict or one under ``state_dict`` / ``net`` / ``model``; a DataParallel
    ``module.`` prefix is stripped. The metadata records ``format``, ``variant`` and the inferred ``sizes``
    (JSON), which :func:`load_converted` uses to rebuild the module.
    """
    _check_variant(variant)
    path = Path(checkpoint_path)
    model = from_official(_read_checkpoint(path), variant)
    dst = Path(out_dir) / "model.safetensors"
    meta = {"format": FORMAT, "variant": variant, "sizes": json.dumps(asdict(_sizes_of(model)))}
    write_tagged(dst, model.state_dict(), meta)
    return dst


def load_converted(path: str | Path) -> nn.Module:
    """Rebuild a module written by :func:`convert_official` (a ``model.safetensors`` file or its folder),
    in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    meta = read_tagged_metadata(path, FORMAT, "a converted official model",
                                "convert the authors' checkpoint with convert_official")
    variant = meta.get("variant", "")
    try:
        sizes = json.loads(meta["sizes"])
    except (KeyError, json.JSONDecodeError) as e:
        raise AvaffectError(f"{path}: metadata 'sizes' missing or invalid ({e}) — re-run convert_official") from None
    model = build_official(variant, sizes)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as e:
        raise AvaffectError(f"{path}: weights do not match the recorded sizes ({' '.join(str(e).split())[:400]}) "
                            "— re-run convert_official") from None
    return model.eval()
