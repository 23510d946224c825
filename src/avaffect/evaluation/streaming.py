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

__all__ = ["AudioBlocks", "LiveWindows", "WindowRunner", "predict_windows", "predict_chunks"]

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


class LiveWindows:
    """:func:`predict_chunks` on an open-ended timeline (a live source), giving each step's value as soon as it is
    final and, on request, a provisional one before that.

    The windows are :func:`~avaffect.data.windows.window_starts`' for the length the stream turns out to have: the
    regular ones (every ``hop`` steps) run as soon as their last step's audio and video features are in; when the
    stream ends (:meth:`finish`) the end-aligned last window runs if that length needs one. So, with ``n`` steps
    in, the stream may still end at ``n``, and step ``s`` is **final** once ``n >= s + length + 1``: every window
    that covers it then has run and the end-aligned one cannot cover it. Final values equal :func:`predict_chunks`
    on the whole recording (the same windows, added in the same order: to float rounding of the runner's batch
    size, since windows run here as they come).

    :meth:`provisional` gives the steps not yet final the value the finished stream would give if it ended now
    (the windows run so far plus the end-aligned window over the last ``length`` steps in): a value that only moves
    as later steps arrive. Memory: the features of the steps a window may still need, a few bytes per step
    otherwise.

    ``start``: the first step given (features and audio from there on). Windows that start before it never run, so
    the values equal the whole recording's for the steps from ``start + length - 1`` on: every window that covers
    them starts at ``start`` or later (a person who appears at step ``i`` of ``live --faces all`` gets
    ``start = i - length + 1``, "no face" before ``i``)."""

    def __init__(self, run: WindowRunner, length: int, hop: int, start: int = 0) -> None:
        if length <= 0 or not 0 < hop <= length:
            raise ValueError(f"need 0 < hop <= length, got length {length}, hop {hop}")
        self.run, self.length, self.hop = run, int(length), int(hop)
        self.start = int(start)
        self.base = self.start  # the step of row 0 of every buffer below
        self.audio: np.ndarray | None = None
        self.video: np.ndarray | None = None
        self.face = np.zeros(0, bool)
        self.boxes = np.zeros((0, 4), np.float32)
        self.audio_hi = self.video_hi = self.start
        self.total: np.ndarray | None = None  # float64 sums / counts per step from `base`, as Stitcher's
        self.count = np.zeros(0)
        self.next_start = -(-self.start // self.hop) * self.hop  # the next regular window
        self.final = self.start  # steps handed out as final
        self.ended = False

    @property
    def steps_in(self) -> int:
        """Steps whose audio and video features are both in."""
        return min(self.audio_hi, self.video_hi)

    def add_audio(self, lo: int, hi: int, rows: np.ndarray) -> None:
        if lo != self.audio_hi:
            raise ValueError(f"audio steps out of order: got {lo}:{hi} after 0:{self.audio_hi}")
        rows = np.asarray(rows, np.float32)
        self.audio = rows if self.audio is None else np.concatenate([self.audio, rows])
        self.audio_hi = hi

    def add_video(self, chunk: FeatureChunk) -> None:
        if chunk.lo != self.video_hi:
            raise ValueError(f"video steps out of order: got {chunk.lo}:{chunk.hi} after 0:{self.video_hi}")
        feats = np.asarray(chunk.features, np.float32)
        self.video = feats if self.video is None else np.concatenate([self.video, feats])
        self.face = np.concatenate([self.face, np.asarray(chunk.face_mask, bool)])
        self.boxes = np.concatenate([self.boxes, np.asarray(chunk.boxes, np.float32)])
        self.video_hi = chunk.hi

    def _window_preds(self, starts: list[int], num_steps: int) -> np.ndarray:
        rel = [s - self.base for s in starts]
        batch = _batch(self.audio, 0, self.video, 0, self.face, num_steps - self.base, rel, self.length)
        return np.asarray(self.run(*batch), dtype=np.float32)

    def _accumulate(self, total: np.ndarray | None, count: np.ndarray, y: np.ndarray, starts: list[int],
                    num_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Stitcher.add on rolling sums from ``base`` (the same arithmetic), grown to ``num_steps``; in place where
        they are long enough already."""
        if total is None:
            total = np.zeros((0, y.shape[-1]))
        grow = num_steps - self.base - len(count)
        if grow > 0:
            total = np.concatenate([total, np.zeros((grow, total.shape[1]))])
            count = np.concatenate([count, np.zeros(grow)])
        y64 = np.asarray(y, dtype=np.float64)
        for w, s in enumerate(starts):
            n = min(self.length, num_steps - s)
            r = s - self.base
            total[r:r + n] += y64[w, :n]
            count[r:r + n] += 1
        return total, count

    def _add(self, y: np.ndarray, starts: list[int], num_steps: int) -> None:
        self.total, self.count = self._accumulate(self.total, self.count, y, starts, num_steps)

    def _end_window(self, n: int) -> int | None:
        """The start of the end-aligned window that a recording of ``n`` steps adds to the regular ones
        (:func:`~avaffect.data.windows.window_starts`' last, when it is not a multiple of ``hop``; the one short
        window when ``n < length``), or ``None``."""
        if n < self.length:
            return 0
        end = n - self.length
        return end if end % self.hop else None

    def _values(self, lo: int, hi: int, total: np.ndarray, count: np.ndarray) -> np.ndarray:
        t, c = total[lo - self.base:hi - self.base], count[lo - self.base:hi - self.base]
        out = np.full(t.shape, np.nan)
        covered = c > 0
        out[covered] = t[covered] / c[covered, None]
        return out.astype(np.float32)

    def advance(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        """Run the regular windows whose steps are all in; ``(lo, values [n, K], face [n], boxes [n, 4])`` of the
        steps that became final, or ``None``."""
        n = self.steps_in
        ready = []
        while self.next_start + self.length <= n:
            ready.append(self.next_start)
            self.next_start += self.hop
        if ready:
            self._add(self._window_preds(ready, n), ready, n)
        return self._hand_out(max(self.final, n - self.length) if not self.ended else n)

    def _hand_out(self, upto: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        if upto <= self.final or self.total is None:
            return None
        lo = self.final
        out = (lo, self._values(lo, upto, self.total, self.count), self.face[lo - self.base:upto - self.base].copy(),
               self.boxes[lo - self.base:upto - self.base].copy())
        self.final = upto
        keep = min(self.final, self.next_start)
        if keep > self.base:  # no window needs the steps before `keep` any more
            cut = keep - self.base
            self.audio, self.video = self.audio[cut:], self.video[cut:]
            self.face, self.boxes = self.face[cut:], self.boxes[cut:]
            self.total, self.count = self.total[cut:], self.count[cut:]
            self.base = keep
        return out

    def provisional(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        """``(lo, values, face, boxes)`` of the steps in but not final, valued as if the stream ended now (class
        docstring), or ``None`` when there are none. Call it after :meth:`advance` (which runs the windows due)."""
        n = self.steps_in
        if n <= self.final or self.ended:
            return None
        if self.next_start + self.length <= n:
            raise RuntimeError("LiveWindows.provisional: call advance() first (windows are due)")
        total, count = self.total, self.count
        end = self._end_window(n)
        if end is not None:  # copies: the window only counts if the stream ends now
            total, count = self._accumulate(None if total is None else total.copy(), count.copy(),
                                            self._window_preds([end], n), [end], n)
        if total is None:
            return None
        lo = self.final
        return (lo, self._values(lo, n, total, count), self.face[lo - self.base:n - self.base].copy(),
                self.boxes[lo - self.base:n - self.base].copy())

    def finish(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        """The stream ended: the remaining regular windows, the end-aligned last one where the length needs it, and
        every step left, final."""
        n = self.steps_in
        out = self.advance()
        if n <= self.start:
            self.ended = True
            return out
        end = self._end_window(n)
        if end is not None:
            self._add(self._window_preds([end], n), [end], n)
        self.ended = True
        rest = self._hand_out(n)
        if out is None:
            return rest
        if rest is None:
            return out
        return (out[0], np.concatenate([out[1], rest[1]]), np.concatenate([out[2], rest[2]]),
                np.concatenate([out[3], rest[3]]))
