"""Whole-recording inference of a torch model: cut windows, predict in batches, stitch (docs/design.md §2); the
batching itself is torch-free (:mod:`avaffect.evaluation.streaming`), :func:`torch_runner` is the torch side."""

from __future__ import annotations

import numpy as np
import torch

from avaffect.evaluation.explain import gate_column
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


def gate_source(model: torch.nn.Module) -> torch.nn.Module | None:
    """The outermost module of ``model`` that keeps its gates' weights of the last forward (``last_gate_weights``,
    :mod:`avaffect.models.blocks.gates`), or ``None`` for a model without gates."""
    for m in model.modules():
        if "last_gate_weights" in dir(type(m)) or isinstance(getattr(m, "last_gate_weights", None), dict):
            return m
    return None


def gated_runner(run: WindowRunner, source: torch.nn.Module, length: int, d_audio: int, d_video: int
                 ) -> tuple[WindowRunner, list[str]]:
    """``run`` (a torch model's runner) giving also its gates' weights, ``[B, L, K + G]``, and the names of the
    ``G`` gate columns (:func:`~avaffect.evaluation.explain.gate_column` of each key of ``last_gate_weights`` and
    candidate). The names come from one forward on a zero window."""
    zeros = (np.zeros((1, length, d_audio), np.float32), np.zeros((1, length, d_video), np.float32),
             np.ones((1, length), bool), np.ones((1, length), bool))
    run(*zeros)
    layout = [(key, int(w.shape[-1])) for key, w in sorted(source.last_gate_weights.items())]
    names = [gate_column(key, j) for key, n in layout for j in range(n)]

    def with_gates(audio: np.ndarray, video: np.ndarray, mask: np.ndarray, face: np.ndarray) -> np.ndarray:
        y = np.asarray(run(audio, video, mask, face), np.float32)
        gates = source.last_gate_weights
        parts = [gates[key].float().cpu().numpy().reshape(y.shape[0], y.shape[1], n) for key, n in layout]
        return np.concatenate([y, *parts], axis=-1)

    return with_gates, names
