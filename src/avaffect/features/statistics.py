"""Per-dimension mean and standard deviation of features too large to hold at once, accumulated chunk by chunk.

Two passes in float64, as NumPy computes ``x.mean(0)`` and ``x.std(0)`` of the concatenated float64 array: pass 1
sums the rows (``mean = sum / N``), pass 2 sums ``(x - mean)**2`` (``std = sqrt(sum / N)``). Each pass adds the rows
in order, one ``np.add.reduce`` over ``[running sum; chunk]`` (NumPy reduces a C-ordered array over axis 0 row by
row), so the result equals the concatenated computation (tested to the bit on the demo's features and within 1e-12
relative on random ones) while holding one chunk: memory does not grow with the data set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RunningMoments"]


@dataclass
class RunningMoments:
    """Mean and standard deviation of ``[n, d]`` row chunks: :meth:`add` every chunk (pass 1), :meth:`add_deviation`
    every chunk again (pass 2), then :attr:`mean` and :meth:`std`. One float64 buffer of the largest chunk (+1 row)
    is reused for both passes (the chunk is cast into it once; a 5x faster pass than copying twice)."""

    dim: int
    count: int = 0
    _sum: np.ndarray = field(init=False, repr=False)
    _squares: np.ndarray = field(init=False, repr=False)
    _mean: np.ndarray | None = field(default=None, init=False, repr=False)
    _second: int = field(default=0, init=False, repr=False)
    _buffer: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._sum = np.zeros(self.dim)
        self._squares = np.zeros(self.dim)
        self._buffer = np.empty((1, self.dim))

    def _rows(self, total: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``[total; rows]`` in the reused float64 buffer (rows cast into it); returns the rows' part."""
        n = len(rows)
        if len(self._buffer) < n + 1:
            self._buffer = np.empty((n + 1, self.dim))
        self._buffer[0] = total
        part = self._buffer[1:n + 1]
        part[...] = rows
        return part

    def _reduce(self, n: int) -> np.ndarray:
        # row by row, in order: ((total + x1) + x2) + ..., as NumPy reduces the concatenated array over axis 0
        return np.add.reduce(self._buffer[:n + 1], axis=0)

    def add(self, rows: np.ndarray) -> None:
        """Pass 1: ``rows [n, d]``."""
        if self._mean is not None:
            raise RuntimeError("add() after the first pass was closed (mean read)")
        rows = np.asarray(rows).reshape(-1, self.dim)
        if len(rows):
            self._rows(self._sum, rows)
            self._sum = self._reduce(len(rows))
            self.count += len(rows)

    @property
    def mean(self) -> np.ndarray:
        """``sum / N`` (closes pass 1); zeros when no row was added."""
        if self._mean is None:
            self._mean = self._sum / self.count if self.count else np.zeros(self.dim)
        return self._mean

    def add_deviation(self, rows: np.ndarray) -> None:
        """Pass 2: the same rows again, in the same order."""
        rows = np.asarray(rows).reshape(-1, self.dim)
        if len(rows):
            part = self._rows(self._squares, rows)
            part -= self.mean
            part *= part
            self._squares = self._reduce(len(rows))
            self._second += len(rows)

    def std(self) -> np.ndarray:
        """Population standard deviation (``ddof=0``, NumPy's default); ones when no row was added."""
        if not self.count:
            return np.ones(self.dim)
        if self._second != self.count:
            raise RuntimeError(f"pass 2 saw {self._second} rows, pass 1 {self.count}: give both passes the same rows")
        return np.sqrt(self._squares / self.count)
