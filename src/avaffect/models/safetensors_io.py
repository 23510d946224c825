"""Safetensors files with a ``format`` tag in their metadata: atomic writing and checked reading, shared by
our checkpoints and the converted official models."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avaffect.errors import AvaffectError
from avaffect.files import atomic_path


def write_tagged(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (made contiguous, on the CPU) with ``metadata`` atomically: temp file + rename,
    and no temp file is left behind when writing fails."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return path


def read_format(path: str | Path) -> str | None:
    """The ``format`` tag of a safetensors file (``None``: no tag, not a safetensors file, or no such file)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception:  # safetensors raises several types for a bad header; the checked reader reports them
        return None


def read_tagged_metadata(path: str | Path, expected_format: str, what: str, fix: str) -> dict[str, str]:
    """The metadata of a file whose ``format`` must be ``expected_format``; each failure (missing file,
    unreadable header, another format) raises :class:`AvaffectError` naming the file, ``what`` it should
    be and the ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise AvaffectError(f"{path}: {what} not found — {fix}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a bad header
        raise AvaffectError(f"{path}: not a safetensors file ({e}) — {fix}") from None
    if meta.get("format") != expected_format:
        raise AvaffectError(f"{path}: not {what} (format {meta.get('format')!r}, expected {expected_format!r}) "
                            f"— {fix}")
    return meta
