"""ONNX Runtime sessions, opened one way for every ONNX file avaffect runs (face models, exported fusion models):
the CPU provider, a fixed thread count, and an error naming the file when it cannot be loaded.

onnxruntime is imported when the first session opens (about 0.2 s), not with this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avaffect.errors import AvaffectError

__all__ = ["ONNX_FIX", "onnxruntime_available", "open_session"]

ONNX_FIX = "pip install onnxruntime (a dependency of avaffect; reinstall avaffect if it is missing)"


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported here."""
    try:
        import onnxruntime  # noqa: F401  lazy: 0.2 s, only where an ONNX file runs
    except ImportError:
        return False
    return True


def open_session(path: str | Path, threads: int = 1, what: str = "ONNX model") -> Any:
    """An ``onnxruntime.InferenceSession`` of ``path`` on the CPU with ``threads`` intra-op threads (1: the caller's
    own threads are the parallelism). A missing onnxruntime or a damaged file is an :class:`AvaffectError` naming
    ``what`` and the file."""
    try:
        import onnxruntime as ort  # lazy: 0.2 s, only where an ONNX file runs
    except ImportError:
        raise AvaffectError(f"{path}: running this {what} needs onnxruntime, which is not installed: {ONNX_FIX}"
                            ) from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a bad file
        raise AvaffectError(f"{path}: cannot load this {what} ({str(e).splitlines()[0][:200]}); check that the "
                            "file is a complete .onnx model") from None
