"""How many CPU threads torch gets (measured in ``docs/benchmarks/threads.md``).

On a 2-core machine a demo-size training step ran as fast on 1 thread as on torch's default 2 when the machine
was idle, and 5x faster when other work kept the cores busy (OpenMP's threads spin-wait for each other, and a
spinning thread that has lost its core holds up the rest); ``OMP_WAIT_POLICY=PASSIVE`` cured the loaded case
only partly and made the idle one 3.5x slower. So ``auto`` leaves half the usable cores to everything else
(decoding, data loading, another job): 1 thread on 2 cores, 8 on 16.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = ["usable_cores", "auto_threads", "resolve_threads", "torch_threads"]

ThreadCount = int | Literal["auto"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; the machine's count where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def auto_threads() -> int:
    return max(1, usable_cores() // 2)


def resolve_threads(requested: ThreadCount) -> int | None:
    """The thread count for ``requested``; ``None`` (leave torch alone) for ``auto`` when the user fixed the
    count in the environment (``OMP_NUM_THREADS``)."""
    if requested == "auto":
        return None if os.environ.get("OMP_NUM_THREADS") else auto_threads()
    return int(requested)


@contextmanager
def torch_threads(requested: ThreadCount) -> Iterator[int]:
    """Torch's intra-op pool at :func:`resolve_threads` ``(requested)`` inside the block (yields the count in
    effect), and back to what it was after it."""
    import torch  # lazy: this module is imported by light commands too

    before = torch.get_num_threads()
    n = resolve_threads(requested)
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
