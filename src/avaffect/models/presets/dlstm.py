"""DLSTM-ATT presets (docs/design.md §4.5; Lucas et al., "Deep, dimensional and multimodal emotion recognition using
attention mechanisms"): DLSTM regressors per modality, embedding attention on the video DLSTM, and
decision-level fusion of their predictions.

- ``dlstm``: one DLSTM on one input (``modality``: audio, video, or their concatenation ``joint``) —
  the unimodal rows, and stage 1 of the pre-train → freeze → fuse recipe.
- ``dlstm_att``: audio DLSTM + video DLSTM with embedding attention → bimodal attention fusion.
- ``dlstm_olb`` / ``dlstm_hlb``: the same DLSTMs fused by the linear baselines OLB (on the predictions)
  and HLB (on the hidden states).
- ``dlstm_early_late``: a third DLSTM on ``[audio ; video]`` fused with the two unimodal ones.

The ablations of the paper's tables are config flags: ``embedding_attention``, ``fusion``,
``early_late``, ``attention_window``, ``bypass_epochs``. Every model maps
``audio [B, L, d_a], video [B, L, d_v], mask [B, L]`` to ``[B, L, K]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from avaffect.models.blocks.dlstm import DLSTM, BimodalAttentionFusion, EmbeddingAttention, HLBFusion, OLBFusion
from avaffect.models.presets.common import PresetConfig
from avaffect.models.registry import register_model

BRANCHES = ("audio", "video", "joint")
UNUSED_FIELDS = ("hidden", "head_hidden", "head_dropout", "encoder")


class DLSTMBranchConfig(PresetConfig):
    """Settings shared by every DLSTM. ``hidden``, ``head_hidden``, ``head_dropout`` and ``encoder`` (inherited) do
    not apply: setting them is an error; the sizes are ``audio_hidden`` / ``video_hidden`` / ``joint_hidden``."""

    yaml_exclude: ClassVar[tuple[str, ...]] = UNUSED_FIELDS

    activation: Literal["tanh", "none"] = Field("none", description="DLSTM output layer: linear (paper) or tanh")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="between the stacked LSTM layers")
    num_layers: int = Field(2, ge=1, description="stacked LSTM layers per DLSTM")
    tbptt_steps: int = Field(0, ge=0, description="truncated BPTT: the LSTM state is carried across chunks of this "
                             "many steps, gradients stop at chunk boundaries (0 = full BPTT over the window)")
    audio_hidden: int = Field(32, ge=1, description="hidden size of the audio DLSTM (paper: 32)")
    video_hidden: int = Field(128, ge=1, description="hidden size of the video DLSTM (paper: 128)")
    joint_hidden: int = Field(128, ge=1, description="hidden size of the early-fusion DLSTM on [audio ; video] "
                              "(paper: 128)")
    embedding_attention: bool = Field(
        True, description="video DLSTM attends over a window of video embeddings (Table 1 ablation)")
    attention_window: int = Field(13, ge=1, description="n: embeddings t-(n-1)/2 .. t+(n-1)/2 (paper: 13; odd)")
    bypass_epochs: int = Field(
        5, ge=0, description="the embedding attention is bypassed (c_t = e_t) for the first epochs (paper: 5)")

    @field_validator("attention_window")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"attention_window must be odd (a window centred on t), got {v}")
        return v

    @model_validator(mode="after")
    def _no_unused(self):
        given = sorted(self.model_fields_set & set(UNUSED_FIELDS))
        if given:
            raise ValueError(f"{', '.join(given)} not used by the DLSTM presets; set audio_hidden, video_hidden "
                             "or joint_hidden instead")
        return self


class DLSTMConfig(DLSTMBranchConfig):
    modality: Literal["audio", "video", "joint"] = Field(
        "video", description="audio | video | joint (= [audio ; video], early fusion)")


class DLSTMFusionConfig(DLSTMBranchConfig):
    yaml_note: ClassVar[str] = ("Train the fusion presets with avaffect.training.recipes.pretrain_then_fuse "
                                "(pre-train the DLSTMs, freeze, fuse).")
    fusion: Literal["attention", "olb", "hlb"] = Field(
        "attention", description="attention (bimodal attention fusion) | olb (z = Y W) | hlb (z = C^T W)")
    early_late: bool = Field(False, description="add a DLSTM on [audio ; video] to the fused predictions")
    fusion_bias: bool = Field(False, description="bias in the fusion (the paper's equations have none)")
    olb_shared_weights: bool = Field(False, description="OLB: one n x 1 weight vector W shared by every output "
                                     "dimension (the paper's z = Y W) instead of one per dimension")
    freeze_unimodal: bool = Field(False, description="freeze the DLSTMs (stage 2 of pre-train → freeze → fuse)")


class DLSTMAttConfig(DLSTMFusionConfig):
    pass


class DLSTMOLBConfig(DLSTMFusionConfig):
    fusion: Literal["attention", "olb", "hlb"] = Field("olb", description=DLSTMFusionConfig.model_fields[
        "fusion"].description)


class DLSTMHLBConfig(DLSTMFusionConfig):
    fusion: Literal["attention", "olb", "hlb"] = Field("hlb", description=DLSTMFusionConfig.model_fields[
        "fusion"].description)


class DLSTMEarlyLateConfig(DLSTMFusionConfig):
    early_late: bool = True


def build_branch(name: str, d_audio: int, d_video: int, cfg: DLSTMBranchConfig) -> DLSTM:
    """The DLSTM for input ``name`` (audio, video with optional embedding attention, or joint)."""
    d_in, hidden = {"audio": (d_audio, cfg.audio_hidden), "video": (d_video, cfg.video_hidden),
                    "joint": (d_audio + d_video, cfg.joint_hidden)}[name]
    attention = None
    if name == "video" and cfg.embedding_attention:
        attention = EmbeddingAttention(hidden, d_video, cfg.attention_window, cfg.bypass_epochs)
    return DLSTM(d_in, hidden, cfg.num_outputs, cfg.num_layers, cfg.dropout, cfg.activation, attention,
                 cfg.tbptt_steps)


def branch_input(name: str, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    if name == "joint":
        return torch.cat([audio, video], dim=-1)
    return audio if name == "audio" else video


class DLSTMModel(nn.Module):
    """One DLSTM on one input: ``y = DLSTM(x)`` with ``x`` = audio, video or ``[audio ; video]``."""

    def __init__(self, d_audio: int, d_video: int, cfg: DLSTMConfig) -> None:
        super().__init__()
        self.modality = cfg.modality
        self.dlstm = build_branch(cfg.modality, d_audio, d_video, cfg)

    def set_epoch(self, epoch: int) -> None:
        self.dlstm.set_epoch(epoch)

    def forward(self, audio, video, mask):
        return self.dlstm(branch_input(self.modality, audio, video), mask)[0]


class DLSTMFusionModel(nn.Module):
    """DLSTMs on audio, video (and ``[audio ; video]``) → decision-level fusion of their predictions.

    ``(y_i, h_i) = DLSTM_i(x_i)`` for each branch ``i``; ``z = fusion(y_1..y_n, h_1..h_n)`` (bimodal
    attention, OLB or HLB; see :mod:`avaffect.models.blocks.dlstm`). ``branches`` is an ordered
    ``ModuleDict`` (audio, video[, joint]). After :meth:`freeze_branches` the DLSTMs get no gradient,
    stay in eval mode (no dropout) and keep the embedding-attention bypass state they were trained
    to: a frozen branch runs exactly as it was selected.
    """

    def __init__(self, d_audio: int, d_video: int, cfg: DLSTMFusionConfig) -> None:
        super().__init__()
        names = ["audio", "video"] + (["joint"] if cfg.early_late else [])
        self.branches = nn.ModuleDict({n: build_branch(n, d_audio, d_video, cfg) for n in names})
        sizes = [b.hidden for b in self.branches.values()]
        if cfg.fusion == "attention":
            self.fusion = BimodalAttentionFusion(sizes, cfg.num_outputs, cfg.fusion_bias)
        elif cfg.fusion == "olb":
            self.fusion = OLBFusion(len(names), cfg.num_outputs, cfg.fusion_bias, cfg.olb_shared_weights)
        else:
            self.fusion = HLBFusion(sizes, cfg.num_outputs, cfg.fusion_bias)
        self.branches_frozen = False

    def set_epoch(self, epoch: int) -> None:
        if not self.branches_frozen:
            for b in self.branches.values():
                b.set_epoch(epoch)

    def freeze_branches(self) -> None:
        self.branches_frozen = True
        for p in self.branches.parameters():
            p.requires_grad_(False)
        self.branches.eval()

    def load_branches(self, states: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Load one ``state_dict`` per branch (exactly the model's branches, strict)."""
        if set(states) != set(self.branches):
            raise ValueError(f"need weights for branches {sorted(self.branches)}, got {sorted(states)}")
        for name, state in states.items():
            self.branches[name].load_state_dict(state)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.branches_frozen:
            self.branches.eval()
        return self

    def forward_branches(self, audio, video, mask) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {n: b(branch_input(n, audio, video), mask) for n, b in self.branches.items()}

    def forward(self, audio, video, mask):
        outs = list(self.forward_branches(audio, video, mask).values())
        z = self.fusion([y for y, _ in outs], [h for _, h in outs])
        return z * mask[..., None].to(z.dtype)


def _fusion(d_audio: int, d_video: int, cfg: DLSTMFusionConfig) -> DLSTMFusionModel:
    model = DLSTMFusionModel(d_audio, d_video, cfg)
    if cfg.freeze_unimodal:
        model.freeze_branches()
    return model


@register_model("dlstm", DLSTMConfig, "one DLSTM (2 stacked LSTMs → linear) on audio, video or [audio ; video]")
def dlstm(d_audio: int, d_video: int, cfg: DLSTMConfig) -> nn.Module:
    return DLSTMModel(d_audio, d_video, cfg)


@register_model("dlstm_att", DLSTMAttConfig,
                "DLSTM-ATT: audio DLSTM + video DLSTM with embedding attention → bimodal attention fusion")
def dlstm_att(d_audio: int, d_video: int, cfg: DLSTMFusionConfig) -> nn.Module:
    return _fusion(d_audio, d_video, cfg)


@register_model("dlstm_olb", DLSTMOLBConfig,
                "audio + video DLSTMs → OLB baseline: a learned linear mix of their predictions")
def dlstm_olb(d_audio: int, d_video: int, cfg: DLSTMFusionConfig) -> nn.Module:
    return _fusion(d_audio, d_video, cfg)


@register_model("dlstm_hlb", DLSTMHLBConfig,
                "audio + video DLSTMs → HLB baseline: a linear map of their concatenated hidden states")
def dlstm_hlb(d_audio: int, d_video: int, cfg: DLSTMFusionConfig) -> nn.Module:
    return _fusion(d_audio, d_video, cfg)


@register_model("dlstm_early_late", DLSTMEarlyLateConfig,
                "audio, video and [audio ; video] DLSTMs → bimodal attention fusion over the three")
def dlstm_early_late(d_audio: int, d_video: int, cfg: DLSTMFusionConfig) -> nn.Module:
    return _fusion(d_audio, d_video, cfg)
