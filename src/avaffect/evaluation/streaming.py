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

from avaffect.data.windows import Stitcher, cut_window, stitch, window_mask, window_starts
from avaffect.features.face_stream import FeatureChunk

__all__ = ["AudioBlocks", "WindowRunner", "predict_windows", "predict_chunks"]

WindowRunner = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


AudioBlocks = Iterable[tuple[int, int, np.ndarray]]


class _Rows:
    """Rows of a per-step array that arrives in consecutive blocks ``(lo, hi, rows)`` (or is given whole), read as
    far as a window needs and released once no window needs them."""

    def __init__(self, source: np.ndarray | AudioBlocks) -> None:
        if isinstance(source, np.ndarray):
            self.buf, self.blocks, self.filled = source, None, len(source)
        else:
            self.buf, self.blocks, self.filled = None, iter(source), 0
        self.base = 0  # the step of buf[0]

    def need(self, hi: int) -> None:
        while self.blocks is not None and self.filled < hi:
            block = next(self.blocks, None)
            if block is None:
                raise ValueError(f"audio blocks end at step {self.filled}, step {hi - 1} is needed")
            lo, end, rows = block
            if lo != self.filled:
                raise ValueError(f"audio blocks out of order: got steps {lo}:{end} after 0:{self.filled}")
            self.buf = rows if self.buf is None else np.concatenate([self.buf, rows])
            self.filled = end

    def release(self, upto: int) -> None:
        if self.blocks is not None and self.buf is not None and upto > self.base:
            self.buf = self.buf[min(upto, self.filled) - self.base:]
            self.base = min(upto, self.filled)


def _batch(audio: np.ndarray, audio_base: int, video: np.ndarray, video_base: int, face_mask: np.ndarray,
           num_steps: int, starts: list[int], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One batch of windows, as every runner takes it (``audio`` / ``video`` start at step ``*_base``)."""
    a = np.stack([cut_window(audio, s - audio_base, length) for s in starts]).astype(np.float32, copy=False)
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
    preds = [np.asarray(run(*_batch(audio, 0, video, 0, face_mask, num_steps,
                                    [int(s) for s in starts[i:i + batch_size]], length)), dtype=np.float32)
             for i in range(0, len(starts), batch_size)]
    return stitch(np.concatenate(preds), starts, num_steps).astype(np.float32)


def predict_chunks(run: WindowRunner, audio: np.ndarray | AudioBlocks, chunks: Iterable[FeatureChunk],
                   num_steps: int, length: int, hop: int, batch_size: int = 16, timings: dict | None = None,
                   on_final: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(predictions [T, K], face mask [T], boxes [T, 4])`` from the audio features — ``[T, d_a]``, or consecutive
    blocks ``(lo, hi, rows)`` read as the windows need them (:meth:`~avaffect.features.extractors.base.Extractor.
    iter_steps`) — and the video feature chunks (consecutive, covering ``0:T``). ``timings["model"]`` receives the
    seconds spent in the model. ``on_final(lo, values [n, K], boxes [n, 4])`` is called, in order, for the steps
    ``lo:lo+n`` whose every window has run (their stitched values are final: the same numbers the returned array
    holds), e.g. to draw them."""
    starts = window_starts(num_steps, length, hop)
    face_mask = np.zeros(num_steps, dtype=bool)
    boxes = np.full((num_steps, 4), np.nan, dtype=np.float32)
    rows = _Rows(audio)
    base = 0  # step index of buf[0]
    buf: np.ndarray | None = None
    stitcher: Stitcher | None = None  # float64 sums per step, in window order: stitch's arithmetic, to the bit
    pending: list[int] = []
    next_window = 0
    model_seconds = 0.0
    run_windows = 0  # windows run so far (they run in start order)
    final_upto = 0

    def run_batch(batch: list[int]) -> None:
        nonlocal model_seconds, stitcher, run_windows, final_upto
        rows.need(min(num_steps, batch[-1] + length))
        t0 = time.perf_counter()
        y = np.asarray(run(*_batch(rows.buf, rows.base, buf, base, face_mask, num_steps, batch, length)),
                       dtype=np.float32)
        model_seconds += time.perf_counter() - t0
        if stitcher is None:
            stitcher = Stitcher(num_steps, y.shape[-1])
        stitcher.add(y, np.asarray(batch))
        run_windows += len(batch)
        upto = int(starts[run_windows]) if run_windows < len(starts) else num_steps  # steps before: all run
        if on_final is not None and upto > final_upto:
            lo = final_upto
            on_final(lo, (stitcher.total[lo:upto] / stitcher.count[lo:upto, None]).astype(np.float32),
                     boxes[lo:upto])
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
            rows.release(keep_from)
    if filled != num_steps:
        raise ValueError(f"feature chunks end at step {filled}, the recording has {num_steps}")
    if pending:
        run_batch(pending)
    if timings is not None:
        timings["model"] = model_seconds
    if stitcher is None:
        return np.zeros((0, 0), np.float32), face_mask, boxes
    return stitcher.result().astype(np.float32), face_mask, boxes
