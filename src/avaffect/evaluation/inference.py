"""Whole-recording inference: cut windows, predict in batches, stitch (docs/design.md §2)."""

from __future__ import annotations

import numpy as np
import torch

from avaffect.data.windows import cut_window, stitch, window_mask, window_starts


@torch.no_grad()
def predict_recording(model: torch.nn.Module, audio: np.ndarray, video: np.ndarray, face_mask: np.ndarray,
                      length: int, hop: int, batch_size: int = 16, device: str | torch.device = "cpu",
                      ) -> np.ndarray:
    """``[T, K]`` predictions for one recording from windows of ``length`` steps every ``hop`` steps,
    overlapping predictions averaged. The model is called in eval mode."""
    num_steps = len(audio)
    starts = window_starts(num_steps, length, hop)
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        a = torch.as_tensor(np.stack([cut_window(audio, s, length) for s in chunk]), dtype=torch.float32)
        v = torch.as_tensor(np.stack([cut_window(video, s, length) for s in chunk]), dtype=torch.float32)
        f = torch.as_tensor(np.stack([cut_window(face_mask, s, length, False) for s in chunk]))
        m = torch.as_tensor(np.stack([window_mask(num_steps, s, length) for s in chunk]))
        y = model(a.to(device), v.to(device), m.to(device), f.to(device))
        preds.append(y.float().cpu().numpy())
    model.train(was_training)
    return stitch(np.concatenate(preds), starts, num_steps).astype(np.float32)
