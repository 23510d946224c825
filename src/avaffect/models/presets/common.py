"""Fields every preset config shares."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PresetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_outputs: int = Field(2, ge=1, description="2 = joint valence+arousal, 1 = one model per target")
    hidden: int = Field(64, ge=2, description="encoder size (even: BLSTM halves it per direction)")
    head_hidden: int = Field(64, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout of the encoders (and of the head unless "
                           "head_dropout is set)")
    head_dropout: float | None = Field(None, ge=0.0, lt=1.0, description="dropout in the MLP head (the linear "
                                       "layers); None = dropout")

    def head_rate(self) -> float:
        """The MLP head's dropout rate."""
        return self.dropout if self.head_dropout is None else self.head_dropout
    encoder: Literal["blstm", "linear"] = "blstm"
    activation: Literal["tanh", "none"] = "tanh"
