"""The fusion zoo (docs/design.md §4.4–4.5): cross-attention, JCA, gated RJCA variants and the seed systems.

Every model maps ``audio [B, L, d_a], video [B, L, d_v], mask [B, L]`` to ``[B, L, K]``. Padded steps
(mask 0) are zeroed before fusion and cannot influence valid outputs. Models with L x L weights carry
``window_length`` (attribute and config field). Every model here has ``last_gate_weights``: the gate
weights ``{name: [B, L, n]}`` of its last forward pass (empty for ungated models).

Presets: ``ca``, ``jca``, ``dca``, ``grjca``, ``hgrjca`` (generic: encoder per modality → fusion → MLP),
``rja_blstm``, ``hgrjca_abaw6``, ``rjca_abaw8``, ``grjca_abaw8``, ``hgrjca_abaw8``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, Field
from torch import nn

from avaffect.models.blocks.blstm import BLSTM
from avaffect.models.blocks.cross_attention import CrossAttention
from avaffect.models.blocks.encoders import Encoder
from avaffect.models.blocks.gates import DCAGate, GRJCAGate, HGRJCAGates
from avaffect.models.blocks.heads import MLPHead
from avaffect.models.blocks.jca import RecursiveJCA
from avaffect.models.blocks.spatial_attention import AudioGuidedSpatialAttention
from avaffect.models.blocks.tcn import TCN
from avaffect.models.presets.common import PresetConfig
from avaffect.models.registry import register_model

# ----------------------------------------------------------------------------------------------- configs


class ZooConfig(PresetConfig):
    """Generic fusion preset: one encoder per modality (size ``hidden``) → fusion → MLP head."""

    encoder: Literal["blstm", "linear", "tcn"] = Field(
        "blstm", description="per-modality encoder: Linear+ReLU then BLSTM, Linear+ReLU only, or a TCN")
    tcn_levels: int = Field(3, ge=1, description="TCN residual levels; level i has dilation 2^i")
    tcn_kernel_size: int = Field(3, ge=1, description="TCN convolution kernel size k")
    tcn_causal: bool = Field(False, description="TCN padding: causal (past only) instead of centred")
    fusion_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the attended A-V features before "
                                  "the head (ABAW6: 0.5; `dropout` is the linear layers' rate)")


class CAConfig(ZooConfig):
    """``ca``: encoders → cross-attention (FG 2021) → ``[X_att,a ; X_att,v]`` → MLP."""

    residual: bool = Field(False, description="add the unattended features to the attended ones (not in the paper)")


class JCAConfig(ZooConfig):
    """``jca``: encoders → one joint cross-attention iteration (M = 1) → ``[X_a^(1) ; X_v^(1)]`` → MLP."""

    window_length: int = Field(300, ge=1, description="L: the JCA weights include L x L matrices")
    orientation: Literal["time_major", "feature_major"] = Field(
        "time_major", description="JCA orientation: time-major (C_m is d_m x d) or feature-major (C_m is L x L)")
    joint_fc: bool = Field(False, description="joint features J = FC([X_a ; X_v]) instead of [X_a ; X_v]")
    time_norm: bool = Field(True, description="feature-major only: H_m = ReLU(X_m W_cm C_m / sqrt(L)); false = "
                            "the paper's printed form, which diverged in our runs (see FeatureMajorJCA)")
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on H_m inside each JCA block")
    init_residual_scale: float = Field(
        0.1, gt=0.0, le=1.0, description="every JCA weight starts Xavier-uniform, then W_h is multiplied by this: "
        "0.1 starts each block near the identity X_att = X (toolkit default); 1.0 is plain Xavier, the "
        "initialisation ABAW6 states ('the cross-attention matrix is initialized with Xavier method')")


class RecursiveFusionConfig(JCAConfig):
    """Fields of the recursive (M-iteration) and gated fusion presets."""

    num_iterations: int = Field(2, ge=1, description="M: number of JCA iterations")
    share_weights: bool = Field(False, description="one JCA block reused by every iteration")
    gate_temperature: float = Field(0.1, gt=0.0, description="T in softmax(logits / T) of every gate")
    gate_bias: bool = Field(True, description="a bias in the gates' linear layers; the papers' printed W_g has "
                            "none (false = the equations as printed)")
    gate_init: Literal["xavier", "xavier_temperature", "pytorch"] = Field(
        "pytorch", description="how the gate layers start: xavier (Xavier-uniform, zero bias: ABAW6's stated "
        "initialisation, selected by the paper configs), xavier_temperature (the same times T, so logits / T start "
        "at Xavier's scale) or pytorch (nn.Linear's Kaiming-uniform default)")
    oracle_gate_channels: int = Field(
        0, ge=0, description="benchmark control, not for real data: the last N audio input channels carry the true "
        "per-frame weak-segment state (benchmarks/zoo.py --condition writes them); they are cut off before the "
        "audio encoder and are every gate's only input. 0 = off")


class DCAConfig(RecursiveFusionConfig):
    """``dca``: encoders → RJCA → 2-way gate (input X^(0) vs attended X^(M)) per modality → MLP."""


class GRJCAConfig(RecursiveFusionConfig):
    """``grjca``: encoders → RJCA → (M+1)-way gate over all iterates per modality → MLP."""


class HGRJCAConfig(RecursiveFusionConfig):
    """``hgrjca``: encoders → RJCA with a 2-way gate per iteration and an M-way stage gate → MLP."""

    recursion_input: Literal["gated", "ungated"] = Field(
        "ungated", description="what iteration t+1 consumes and its gate weighs against X_att^(t+1): the ungated "
        "X_att^(t) (the printed equations: ABAW6 Eqs. 12-13, ABAW8 Eqs. 17-18) or the gated X_g^(t) (a variant)")


class HGRJCAABAW6Config(HGRJCAConfig):
    """``hgrjca_abaw6``: TCN per modality → HGRJCA (time-major) → MLP (ABAW6, 2024)."""

    encoder: Literal["tcn"] = Field("tcn", description="always a TCN per modality")


class ABAW8Defaults(BaseModel):
    """What the three ABAW8 presets share: TCN encoders, feature-major JCA with J = FC([X_a;X_v]), one
    model per target, M in 1..4 (Table 2; best 3). Listed first among the bases so these defaults win."""

    num_outputs: int = Field(1, ge=1, description="1: one model per target, as in ABAW8")
    encoder: Literal["tcn"] = Field("tcn", description="always a TCN per modality")
    orientation: Literal["time_major", "feature_major"] = Field("feature_major", description="JCA orientation")
    joint_fc: bool = Field(True, description="joint features J = FC([X_a ; X_v])")
    num_iterations: int = Field(3, ge=1, le=4, description="M (ABAW8 Table 2 ablates 1..4; best 3)")


class RJCAABAW8Config(ABAW8Defaults, RecursiveFusionConfig):
    """``rjca_abaw8``: TCN per modality → RJCA without gates (feature-major, J = FC([X_a;X_v])) → MLP with
    tanh — the ungated row of ABAW8 Table 2."""


class GRJCAABAW8Config(ABAW8Defaults, GRJCAConfig):
    """``grjca_abaw8``: TCN per modality → GRJCA (feature-major, J = FC([X_a;X_v])) → MLP with tanh (ABAW8)."""


class HGRJCAABAW8Config(ABAW8Defaults, HGRJCAConfig):
    """``hgrjca_abaw8``: TCN per modality → HGRJCA (feature-major, J = FC([X_a;X_v])) → MLP with tanh (ABAW8)."""


class RJABLSTMConfig(PresetConfig):
    """``rja_blstm`` (ICASSP 2023): [spatial attention] → U-BLSTM per modality → RJCA (time-major) →
    concat → J-BLSTM → one FC head per target. The flags reproduce its Table 1 ablations."""

    encoder: Literal["blstm"] = Field("blstm", description="the U-BLSTM (Linear+ReLU then BLSTM)")
    window_length: int = Field(300, ge=1, description="L: the time-major JCA weights are L x L")
    num_iterations: int = Field(2, ge=1, le=4, description="M (Table 1: 1..4; best 2)")
    share_weights: bool = Field(False, description="one JCA block reused by every iteration")
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on H_m inside each JCA block")
    use_u_blstm: bool = Field(True, description="False: per-modality Linear+ReLU only (no temporal modelling)")
    use_j_blstm: bool = Field(True, description="False: the heads read the RJCA output directly")
    spatial_attention: bool = Field(
        False, description="video input is R x C visual maps (R*C values per step, memory order (R, C)) pooled "
                           "by audio-guided spatial attention")
    spatial_regions: int = Field(49, ge=1, description="R: regions of a visual map (7 x 7 = 49)")
    spatial_attn_dim: int = Field(64, ge=1, description="k: size of the spatial attention's hidden layer")
    separate_heads: bool = Field(True, description="one MLP head per target (the paper) instead of one with K outputs")


# ----------------------------------------------------------------------------------------------- modules


def make_encoder(d_in: int, cfg: ZooConfig) -> nn.Module:
    """Per-modality encoder ``[B, L, d_in] → [B, L, hidden]`` chosen by ``cfg.encoder``."""
    if cfg.encoder == "tcn":
        return TCN(d_in, cfg.hidden, cfg.tcn_levels, cfg.tcn_kernel_size, cfg.dropout, cfg.tcn_causal)
    return Encoder(d_in, cfg.hidden, cfg.encoder, cfg.dropout)


class CAFusion(nn.Module):
    """``[X_att,a ; X_att,v]`` from :class:`CrossAttention`."""

    def __init__(self, d_audio: int, d_video: int, residual: bool = False) -> None:
        super().__init__()
        self.attention = CrossAttention(d_audio, d_video, residual)
        self.out_dim = d_audio + d_video

    def forward(self, x_a, x_v, mask):
        return torch.cat(self.attention(x_a, x_v, mask), dim=-1)


class GatedRJCAFusion(nn.Module):
    """RJCA followed (or interleaved) by a gate; output ``[Y_a ; Y_v]`` ``[B, L, d_a + d_v]``.

    ``gate``: ``"none"`` (Y = X^(M), plain (R)JCA), ``"dca"`` (:class:`DCAGate`), ``"grjca"``
    (:class:`GRJCAGate`) or ``"hgrjca"`` (:class:`HGRJCAGates`, which drives the iterations itself).
    """

    def __init__(self, d_audio: int, d_video: int, cfg: JCAConfig, num_iterations: int,
                 gate: Literal["none", "dca", "grjca", "hgrjca"]) -> None:
        super().__init__()
        self.rjca = RecursiveJCA(d_audio, d_video, cfg.window_length, num_iterations,
                                 getattr(cfg, "share_weights", False), cfg.attention_dropout,
                                 cfg.orientation, cfg.joint_fc, cfg.time_norm, cfg.init_residual_scale)
        temperature = getattr(cfg, "gate_temperature", 0.1)
        gate_args = {"bias": getattr(cfg, "gate_bias", True), "init": getattr(cfg, "gate_init", "pytorch"),
                     "state_dim": getattr(cfg, "oracle_gate_channels", 0) or None}
        self.gate_kind = gate
        if gate == "none":
            if gate_args["state_dim"]:
                raise ValueError("oracle_gate_channels needs a gated preset (dca, grjca, hgrjca, ...)")
            self.gate = None
        elif gate == "dca":
            self.gate = DCAGate(d_audio, d_video, temperature, **gate_args)
        elif gate == "grjca":
            self.gate = GRJCAGate(d_audio, d_video, num_iterations, temperature, **gate_args)
        elif gate == "hgrjca":
            self.gate = HGRJCAGates(d_audio, d_video, num_iterations, temperature, cfg.recursion_input, **gate_args)
        else:
            raise ValueError(f"unknown gate {gate!r}")
        self.out_dim = d_audio + d_video

    @property
    def last_gate_weights(self) -> dict[str, torch.Tensor]:
        return self.gate.last_gate_weights if self.gate is not None else {}

    def forward(self, x_a, x_v, mask, state=None):
        """``state``: the oracle gates' input ``[B, L, k]`` (only for a gate built with ``state_dim``)."""
        if self.gate_kind == "hgrjca":
            y = self.gate(self.rjca, x_a, x_v, mask, state)
        else:
            its = self.rjca.iterates(x_a, x_v, mask)
            if self.gate_kind == "none":
                y = its[-1]
            elif self.gate_kind == "dca":
                y = self.gate(its[0], its[-1], mask, state)
            else:
                y = self.gate(its, mask, state)
        return torch.cat(y, dim=-1)


class FusionModel(nn.Module):
    """``Y = head(Dropout_f(fusion(enc_a(audio), enc_v(video))))`` with per-step MLP head (docs/design.md §4.4–4.5);
    ``Dropout_f`` has rate ``fusion_dropout`` (the attended features), the head and encoders ``dropout``."""

    def __init__(self, d_audio: int, d_video: int, cfg: ZooConfig, fusion_factory) -> None:
        super().__init__()
        if hasattr(cfg, "window_length"):
            self.window_length = cfg.window_length
        self.oracle_channels = getattr(cfg, "oracle_gate_channels", 0)
        if self.oracle_channels >= d_audio:
            raise ValueError(f"oracle_gate_channels={self.oracle_channels} leaves no audio features of {d_audio}")
        d_audio -= self.oracle_channels
        self.audio_encoder = make_encoder(d_audio, cfg)
        self.video_encoder = make_encoder(d_video, cfg)
        self.fusion = fusion_factory(cfg.hidden, cfg.hidden)
        self.fusion_dropout = nn.Dropout(cfg.fusion_dropout)
        self.head = MLPHead(self.fusion.out_dim, cfg.head_hidden, cfg.num_outputs, cfg.head_rate(), cfg.activation)

    @property
    def last_gate_weights(self) -> dict[str, torch.Tensor]:
        return getattr(self.fusion, "last_gate_weights", {})

    def forward(self, audio, video, mask):
        state = None
        if self.oracle_channels:  # the benchmark's oracle control: the last channels are the gates' input
            audio, state = audio[..., :-self.oracle_channels], audio[..., -self.oracle_channels:]
        x_a = self.audio_encoder(audio, mask)
        x_v = self.video_encoder(video, mask)
        fused = self.fusion(x_a, x_v, mask) if state is None else self.fusion(x_a, x_v, mask, state)
        return self.head(self.fusion_dropout(fused))


class PerTargetHeads(nn.Module):
    """K independent MLP heads with one output each, concatenated: ``[B, L, d] → [B, L, K]``."""

    def __init__(self, d_in: int, hidden: int, num_outputs: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.heads = nn.ModuleList([MLPHead(d_in, hidden, 1, dropout, activation) for _ in range(num_outputs)])

    def forward(self, x):
        return torch.cat([h(x) for h in self.heads], dim=-1)


class RJABLSTM(nn.Module):
    """RJA-BLSTM (ICASSP 2023), our clean form::

        X_a  = U-BLSTM_a(audio)
        V    = SpatialAtt(video, X_a)       (optional: video holds R x C maps per step)
        X_v  = U-BLSTM_v(V)
        (X_a^(M), X_v^(M)) = RJCA_M(X_a, X_v)              time-major, M iterations
        Z    = J-BLSTM([X_a^(M) ; X_v^(M)])                 (optional)
        Y    = [head_k(Z) for each target k]

    Without U-BLSTM each modality gets only the per-step projection ReLU(W x + b) to size ``hidden``.
    """

    def __init__(self, d_audio: int, d_video: int, cfg: RJABLSTMConfig) -> None:
        super().__init__()
        self.window_length = cfg.window_length
        kind = "blstm" if cfg.use_u_blstm else "linear"
        self.audio_encoder = Encoder(d_audio, cfg.hidden, kind, cfg.dropout)
        if cfg.spatial_attention:
            if d_video % cfg.spatial_regions:
                raise ValueError(f"spatial attention: d_video={d_video} is not a multiple of "
                                 f"spatial_regions={cfg.spatial_regions}")
            self.spatial = AudioGuidedSpatialAttention(cfg.hidden, d_video // cfg.spatial_regions, cfg.hidden,
                                                       cfg.spatial_attn_dim, cfg.spatial_regions)
            d_video = cfg.hidden
        else:
            self.spatial = None
        self.video_encoder = Encoder(d_video, cfg.hidden, kind, cfg.dropout)
        self.fusion = RecursiveJCA(cfg.hidden, cfg.hidden, cfg.window_length, cfg.num_iterations,
                                   cfg.share_weights, cfg.attention_dropout, "time_major")
        self.joint_blstm = BLSTM(2 * cfg.hidden, 2 * cfg.hidden) if cfg.use_j_blstm else None
        head_cls = PerTargetHeads if cfg.separate_heads else MLPHead
        self.head = head_cls(2 * cfg.hidden, cfg.head_hidden, cfg.num_outputs, cfg.head_rate(), cfg.activation)

    @property
    def last_gate_weights(self) -> dict[str, torch.Tensor]:
        return {}

    def forward(self, audio, video, mask):
        x_a = self.audio_encoder(audio, mask)
        if self.spatial is not None:
            video = self.spatial(x_a, video, mask)
        x_v = self.video_encoder(video, mask)
        z = self.fusion(x_a, x_v, mask)
        if self.joint_blstm is not None:
            z = self.joint_blstm(z, mask)
        return self.head(z)


# ----------------------------------------------------------------------------------------------- presets


def _gated(gate: str, num_iterations=None):
    def build(d_audio: int, d_video: int, cfg) -> nn.Module:
        m = num_iterations or cfg.num_iterations
        return FusionModel(d_audio, d_video, cfg, lambda da, dv: GatedRJCAFusion(da, dv, cfg, m, gate))

    return build


register_model("ca", CAConfig, "encoders → audio-visual cross-attention (FG 2021) → MLP")(
    lambda d_audio, d_video, cfg: FusionModel(d_audio, d_video, cfg,
                                              lambda da, dv: CAFusion(da, dv, cfg.residual)))
register_model("jca", JCAConfig, "encoders → joint cross-attention, one iteration (M=1) → MLP")(_gated("none", 1))
register_model("dca", DCAConfig, "encoders → RJCA → 2-way input/attended gate (DCA) → MLP")(_gated("dca"))
register_model("grjca", GRJCAConfig, "encoders → RJCA → (M+1)-way gate over iterations (GRJCA) → MLP")(
    _gated("grjca"))
register_model("hgrjca", HGRJCAConfig, "encoders → RJCA with per-iteration and stage gates (HGRJCA) → MLP")(
    _gated("hgrjca"))
register_model("hgrjca_abaw6", HGRJCAABAW6Config, "TCN per modality → HGRJCA (time-major) → MLP (ABAW6)")(
    _gated("hgrjca"))
register_model("rjca_abaw8", RJCAABAW8Config,
               "TCN per modality → RJCA (feature-major, J=FC, no gate) → MLP with tanh, one model per target (ABAW8)")(
    _gated("none"))
register_model("grjca_abaw8", GRJCAABAW8Config,
               "TCN per modality → GRJCA (feature-major, J=FC) → MLP with tanh, one model per target (ABAW8)")(
    _gated("grjca"))
register_model("hgrjca_abaw8", HGRJCAABAW8Config,
               "TCN per modality → HGRJCA (feature-major, J=FC) → MLP with tanh, one model per target (ABAW8)")(
    _gated("hgrjca"))


@register_model("rja_blstm", RJABLSTMConfig,
                "[audio-guided spatial attention] → U-BLSTM → RJCA (M=2) → J-BLSTM → FC heads (ICASSP 2023)")
def rja_blstm(d_audio: int, d_video: int, cfg: RJABLSTMConfig) -> nn.Module:
    return RJABLSTM(d_audio, d_video, cfg)
