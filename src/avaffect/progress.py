"""Progress for people and for logs: a tqdm bar on a terminal, one plain line now and then otherwise.

A bar redrawn with ``\\r`` is what a terminal wants and what a log file (CI, ``nohup``, a cluster job) does not:
there it becomes hundreds of kilobytes of half-lines. :func:`progress_bar` gives a tqdm bar when stderr is a
terminal and a :class:`LineProgress` otherwise — the same ``update`` / ``set_postfix`` / ``close`` calls, printing
``desc: done/total unit (pct), rate, ETA`` at most every ``every_s`` seconds or 10 % of the work, and at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["LineProgress", "progress_bar", "format_seconds", "is_terminal", "stage"]


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def stage(text: str, stream: TextIO | None = None) -> None:
    """A stage header (``== text ==``) on stderr, so that a long job says what it is doing."""
    print(f"== {text} ==", file=stream if stream is not None else sys.stderr, flush=True)


class LineProgress:
    """tqdm's small API (``update``, ``set_postfix``, ``close``, iteration) as occasional plain lines."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 every_s: float = 30.0, stream: TextIO | None = None, disable: bool = False) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.every_s, self.disable = desc, unit, every_s, disable
        self.stream = stream if stream is not None else sys.stderr
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self.start = time.monotonic()
        self._last_time = self.start
        self._last_fraction = 0.0
        self._closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def set_postfix(self, **kw: Any) -> None:
        self.postfix.update(kw)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({self.n / self.total:.0%})"
        parts.append(f"{format_seconds(elapsed)} elapsed")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {format_seconds((self.total - self.n) / rate)}")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        return ", ".join(parts)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        fraction = self.n / self.total if self.total else 0.0
        if now - self._last_time >= self.every_s or fraction - self._last_fraction >= 0.1:
            self._emit()
            self._last_time, self._last_fraction = now, fraction

    def _emit(self) -> None:
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if not self._closed and not self.disable and (self.n or self.total):
            if self._last_fraction < 1.0 or not self.total:
                self._emit()
        self._closed = True


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 disable: bool = False, **tqdm_kwargs: Any):
    """A tqdm bar on a terminal, a :class:`LineProgress` otherwise (see the module docstring)."""
    if is_terminal():
        from tqdm.auto import tqdm  # lazy: light commands do not need it

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, **tqdm_kwargs)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, disable=disable)
