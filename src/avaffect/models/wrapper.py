"""The deployable regressor: input normalisation + missing-face handling + a fusion preset."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from avaffect.models.registry import create_model


class AVRegressor(nn.Module):
    """``y = net(norm_a(audio), norm_v(video) * face_mask, mask)``, ``[B, L, *] → [B, L, K]``.

    ``norm_m(x) = (x - mean_m) / std_m`` with statistics fitted on the training split and stored as
    buffers, so a saved model carries its own preprocessing. Steps without a face get an all-zero
    (i.e. mean) visual vector — the model's missing-modality rule; padded steps (``mask`` 0) are zeroed
    inside every preset.
    """

    def __init__(self, name: str, d_audio: int, d_video: int, params: dict | None = None) -> None:
        super().__init__()
        self.name = name
        self.params = dict(params or {})
        self.d_audio, self.d_video = d_audio, d_video
        self.net = create_model(name, d_audio, d_video, self.params)
        self.register_buffer("audio_mean", torch.zeros(d_audio))
        self.register_buffer("audio_std", torch.ones(d_audio))
        self.register_buffer("video_mean", torch.zeros(d_video))
        self.register_buffer("video_std", torch.ones(d_video))

    @property
    def window_length(self) -> int | None:
        """The window length the weights are built for (None: any length)."""
        return getattr(self.net, "window_length", None)

    def set_normalization(self, audio: np.ndarray, video: np.ndarray, eps: float = 1e-6) -> None:
        """Fit the statistics on training steps (``audio [N, d_a]``, ``video [N', d_v]`` face steps only)."""
        for prefix, x in (("audio", audio), ("video", video)):
            x = np.asarray(x, dtype=np.float64)
            if len(x):
                self.set_moments(prefix, x.mean(0), x.std(0), eps)

    def set_moments(self, modality: str, mean: np.ndarray, std: np.ndarray, eps: float = 1e-6) -> None:
        """Set one modality's statistics from its float64 ``mean`` and ``std`` (e.g. accumulated chunk by chunk,
        :class:`~avaffect.features.run_features.TrainingStatistics`): ``mean_m = mean``, ``std_m = std + eps``."""
        getattr(self, f"{modality}_mean").copy_(torch.as_tensor(mean, dtype=torch.float32))
        getattr(self, f"{modality}_std").copy_(torch.as_tensor(np.asarray(std) + eps, dtype=torch.float32))

    def forward(self, audio: torch.Tensor, video: torch.Tensor, mask: torch.Tensor,
                face_mask: torch.Tensor | None = None) -> torch.Tensor:
        a = (audio - self.audio_mean) / self.audio_std
        v = (video - self.video_mean) / self.video_std
        if face_mask is not None:
            v = v * face_mask[..., None].to(v.dtype)
        return self.net(a, v, mask)

    def describe(self) -> dict:
        return {"name": self.name, "params": self.params, "d_audio": self.d_audio, "d_video": self.d_video}
