"""Whole-recording inference on features that arrive in chunks (:mod:`avaffect.features.face_stream`).

:func:`predict_chunks` gives exactly what :func:`avaffect.evaluation.inference.predict_recording` gives on the
assembled arrays — the same windows (:func:`~avaffect.data.windows.window_starts`), the same batches of windows,
the same stitching — but runs each window as soon as its last step has arrived and keeps only the video features
that a window still needs, so memory does not grow with the recording's length (the audio features, the face
mask, the boxes and the per-window predictions are the only per-step arrays kept: a few bytes per step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np
import torch

from avaffect.data.windows import cut_window, stitch, window_mask, window_starts
from avaffect.features.face_stream import FeatureChunk

__all__ = ["predict_chunks"]


@torch.no_grad()
def predict_chunks(model: torch.nn.Module, audio: np.ndarray, chunks: Iterable[FeatureChunk], num_steps: int,
                   length: int, hop: int, batch_size: int = 16, device: str | torch.device = "cpu",
                   timings: dict | None = None,
                   on_final: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(predictions [T, K], face mask [T], boxes [T, 4])`` from the audio features ``[T, d_a]`` and the video
    feature chunks (consecutive, covering ``0:T``). ``timings["model"]`` receives the seconds spent in the model.
    ``on_final(lo, values [n, K], boxes [n, 4])`` is called, in order, for the steps ``lo:lo+n`` whose every window
    has run (their stitched values are final: the same numbers the returned array holds), e.g. to draw them."""
    starts = window_starts(num_steps, length, hop)
    face_mask = np.zeros(num_steps, dtype=bool)
    boxes = np.full((num_steps, 4), np.nan, dtype=np.float32)
    was_training = model.training
    model.eval()
    base = 0  # step index of buf[0]
    buf: np.ndarray | None = None
    preds: list[np.ndarray] = []
    pending: list[int] = []
    next_window = 0
    model_seconds = 0.0
    run_windows = 0  # windows run so far (they run in start order)
    total: np.ndarray | None = None  # running stitch sums [T, K] / counts [T] for on_final, float64 as stitch's
    count = np.zeros(num_steps)
    final_upto = 0

    def run(batch: list[int]) -> None:
        nonlocal model_seconds
        t0 = time.perf_counter()
        a = torch.as_tensor(np.stack([cut_window(audio, int(s), length) for s in batch]), dtype=torch.float32)
        v = torch.as_tensor(np.stack([cut_window(buf, int(s) - base, length) for s in batch]), dtype=torch.float32)
        f = torch.as_tensor(np.stack([cut_window(face_mask, int(s), length, False) for s in batch]))
        m = torch.as_tensor(np.stack([window_mask(num_steps, int(s), length) for s in batch]))
        y = model(a.to(device), v.to(device), m.to(device), f.to(device))
        preds.append(y.float().cpu().numpy())
        model_seconds += time.perf_counter() - t0
        if on_final is not None:
            report(batch, preds[-1])

    def report(batch: list[int], y: np.ndarray) -> None:
        nonlocal total, final_upto, run_windows
        if total is None:
            total = np.zeros((num_steps, y.shape[-1]))
        for start, yw in zip(batch, np.asarray(y, dtype=np.float64)):
            n = min(length, num_steps - start)
            total[start:start + n] += yw[:n]
            count[start:start + n] += 1
        run_windows += len(batch)
        upto = int(starts[run_windows]) if run_windows < len(starts) else num_steps  # steps before: all run
        if upto > final_upto:
            lo = final_upto
            on_final(lo, (total[lo:upto] / count[lo:upto, None]).astype(np.float32), boxes[lo:upto])
            final_upto = upto

    filled = 0
    for c in chunks:
        if c.lo != filled:
            raise ValueError(f"feature chunks out of order: got steps {c.lo}:{c.hi} after 0:{filled}")
        face_mask[c.lo:c.hi] = c.face_mask
        boxes[c.lo:c.hi] = c.boxes
        buf = c.features if buf is None else np.concatenate([buf, c.features])
        filled = c.hi
        # windows whose last step has arrived, run in the batches predict_recording would form
        while next_window < len(starts) and min(int(starts[next_window]) + length, num_steps) <= filled:
            pending.append(int(starts[next_window]))
            next_window += 1
            if len(pending) == batch_size:
                run(pending)
                pending = []
        keep_from = int(pending[0]) if pending else (int(starts[next_window]) if next_window < len(starts)
                                                      else filled)
        if keep_from > base:  # no window needs the steps before keep_from any more
            buf = buf[keep_from - base:]
            base = keep_from
    if filled != num_steps:
        raise ValueError(f"feature chunks end at step {filled}, the recording has {num_steps}")
    if pending:
        run(pending)
    model.train(was_training)
    if timings is not None:
        timings["model"] = model_seconds
    if not preds:
        return np.zeros((0, 0), np.float32), face_mask, boxes
    return stitch(np.concatenate(preds), starts, num_steps).astype(np.float32), face_mask, boxes
