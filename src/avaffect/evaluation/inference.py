"""Whole-recording inference of a torch model: cut windows, predict in batches, stitch (docs/design.md §2); the
batching itself is torch-free (:mod:`avaffect.evaluation.streaming`), :func:`torch_runner` is the torch side."""

from __future__ import annotations

import numpy as np
import torch

from avaffect.evaluation.streaming import WindowRunner, predict_windows


def torch_runner(model: torch.nn.Module, device: str | torch.device = "cpu") -> WindowRunner:
    """A :data:`~avaffect.evaluation.streaming.WindowRunner` of a torch model: numpy batches in, on ``device``,
    without gradients, float32 numpy out. The model runs as it is (call ``model.eval()`` first)."""

    @torch.no_grad()
    def run(audio: np.ndarray, video: np.ndarray, mask: np.ndarray, face_mask: np.ndarray) -> np.ndarray:
        y = model(torch.as_tensor(audio, dtype=torch.float32).to(device),
                  torch.as_tensor(video, dtype=torch.float32).to(device),
                  torch.as_tensor(mask).to(device), torch.as_tensor(face_mask).to(device))
        return y.float().cpu().numpy()

    return run


def predict_recording(model: torch.nn.Module, audio: np.ndarray, video: np.ndarray, face_mask: np.ndarray,
                      length: int, hop: int, batch_size: int = 16, device: str | torch.device = "cpu",
                      ) -> np.ndarray:
    """``[T, K]`` predictions for one recording from windows of ``length`` steps every ``hop`` steps,
    overlapping predictions averaged. The model is called in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return predict_windows(torch_runner(model, device), audio, video, face_mask, length, hop, batch_size)
    finally:
        model.train(was_training)
