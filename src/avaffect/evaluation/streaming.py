"""Whole-recording inference with any model runner, torch-free: windows cut, run in batches, stitched.

A runner (:data:`WindowRunner`) maps one batch of windows — audio ``[B, L, d_a]`` float32, video ``[B, L, d_v]``
float32, the window mask ``[B, L]`` and the face mask ``[B, L]`` (bool) — to predictions ``[B, L, K]``: a torch
module (:func:`avaffect.evaluation.inference.torch_runner`) or an ONNX export
(:class:`avaffect.deploy.onnx_model.OnnxWindows`), so ``predict`` runs without importing torch when the model
was exported.

:func:`predict_windows` runs a recording's assembled arrays. :func:`predict_chunks` gives exactly what it gives —
the same windows (:func:`~avaffect.data.windows.window_starts`), the same batches of windows, the same stitching —
on features that arrive in chunks (:mod:`avaffect.features.face_stream`), running each window as soon as its last
step has arrived and keeping only the video features that a window still needs, so memory does not grow with the
recording's length (the audio features, the face mask, the boxes and the per-window predictions are the only
per-step arrays kept: a few bytes per step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from avaffect.data.windows import cut_window, stitch, window_mask, window_starts
from avaffect.features.face_stream import FeatureChunk

__all__ = ["WindowRunner", "predict_windows", "predict_chunks"]

WindowRunner = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _batch(audio: np.ndarray, video: np.ndarray, video_base: int, face_mask: np.ndarray, num_steps: int,
           starts: list[int], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One batch of windows, as every runner takes it (``video`` may start at step ``video_base``)."""
    a = np.stack([cut_window(audio, s, length) for s in starts]).astype(np.float32, copy=False)
    v = np.stack([cut_window(video, s - video_base, length) for s in starts]).astype(np.float32, copy=False)
    f = np.stack([cut_window(face_mask, s, length, False) for s in starts]).astype(bool, copy=False)
    m = np.stack([window_mask(num_steps, s, length) for s in starts])
    return a, v, m, f


def predict_windows(run: WindowRunner, audio: np.ndarray, video: np.ndarray, face_mask: np.ndarray, length: int,
                    hop: int, batch_size: int = 16) -> np.ndarray:
    """``[T, K]`` predictions for one recording from windows of ``length`` steps every ``hop`` steps, overlapping
    predictions averaged."""
    num_steps = len(audio)
    starts = window_starts(num_steps, length, hop)
    preds = [np.asarray(run(*_batch(audio, video, 0, face_mask, num_steps, [int(s) for s in starts[i:i + batch_size]],
                                    length)), dtype=np.float32)
             for i in range(0, len(starts), batch_size)]
    return stitch(np.concatenate(preds), starts, num_steps).astype(np.float32)


def predict_chunks(run: WindowRunner, audio: np.ndarray, chunks: Iterable[FeatureChunk], num_steps: int,
                   length: int, hop: int, batch_size: int = 16, timings: dict | None = None,
                   on_final: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(predictions [T, K], face mask [T], boxes [T, 4])`` from the audio features ``[T, d_a]`` and the video
    feature chunks (consecutive, covering ``0:T``). ``timings["model"]`` receives the seconds spent in the model.
    ``on_final(lo, values [n, K], boxes [n, 4])`` is called, in order, for the steps ``lo:lo+n`` whose every window
    has run (their stitched values are final: the same numbers the returned array holds), e.g. to draw them."""
    starts = window_starts(num_steps, length, hop)
    face_mask = np.zeros(num_steps, dtype=bool)
    boxes = np.full((num_steps, 4), np.nan, dtype=np.float32)
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

    def run_batch(batch: list[int]) -> None:
        nonlocal model_seconds
        t0 = time.perf_counter()
        preds.append(np.asarray(run(*_batch(audio, buf, base, face_mask, num_steps, batch, length)),
                                dtype=np.float32))
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
                run_batch(pending)
                pending = []
        keep_from = int(pending[0]) if pending else (int(starts[next_window]) if next_window < len(starts)
                                                      else filled)
        if keep_from > base:  # no window needs the steps before keep_from any more
            buf = buf[keep_from - base:]
            base = keep_from
    if filled != num_steps:
        raise ValueError(f"feature chunks end at step {filled}, the recording has {num_steps}")
    if pending:
        run_batch(pending)
    if timings is not None:
        timings["model"] = model_seconds
    if not preds:
        return np.zeros((0, 0), np.float32), face_mask, boxes
    return stitch(np.concatenate(preds), starts, num_steps).astype(np.float32), face_mask, boxes
