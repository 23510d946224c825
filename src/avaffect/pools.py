"""Worker processes: a ``spawn`` pool whose workers run one thread each and die with their parent (feature
extraction, the demo's parallel training)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["one_thread", "spawn_pool"]


def _exit_with_parent(parent_pid: int, period_s: float = 1.0) -> None:
    """Worker side: end this process as soon as the parent that started it is gone (a ``kill -9`` of
    ``avaffect extract`` must not leave its workers decoding for minutes)."""
    while True:
        time.sleep(period_s)
        if os.getppid() != parent_pid:
            os._exit(1)


def one_thread(import_torch: bool = True) -> None:
    """OpenCV and torch on one thread in a worker process: the workers themselves are the parallelism (no
    oversubscription). ``import_torch=False``: set torch only if something already imported it."""
    try:
        import cv2  # lazy: OpenCV, only to set its thread count

        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover
        pass
    if not import_torch and "torch" not in sys.modules:
        return
    try:
        import torch  # lazy: torch, only to set its thread count

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass


def _init_worker(parent_pid: int | None = None) -> None:
    """One thread per worker process (:func:`one_thread`); the worker watches its parent and exits with it."""
    if parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    one_thread()


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` ``spawn``-started processes (safe with threads and CUDA), each on one thread (work
    that sets its own thread count, like training's ``cpu_threads``, may raise it) and ending with this process."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(os.getpid(),)
    )
