"""Logging set-up shared by the CLI and the benchmark scripts."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_third_party_logs", "native_stderr_to_log"]


def quiet_third_party_logs() -> None:
    """Keep Lightning's start-up chatter (device summary, tips) out of the user's terminal."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


@contextmanager
def native_stderr_to_log(logger: logging.Logger, quiet: str) -> Iterator[None]:
    """Catch what C/C++ code writes to the process's stderr (file descriptor 2) inside the block, and log it
    instead: lines matching the regular expression ``quiet`` at DEBUG (a library's start-up chatter, e.g. LiteRT's
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." at every model open, which no Python switch turns
    off), anything else at WARNING, so nothing is lost. For short calls (opening a model): output of other threads
    during the block is caught too."""
    fd = 2  # where native code writes, whatever Python's sys.stderr is now
    try:
        os.fstat(fd)
    except OSError:  # no stderr at all (a daemon): nothing to catch
        yield
        return
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
    pattern = re.compile(quiet)
    for line in text.splitlines():
        if line.strip():
            logger.log(logging.DEBUG if pattern.search(line) else logging.WARNING, "%s", line)
