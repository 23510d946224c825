"""Safetensors files with a ``format`` tag in their metadata: atomic writing, shared by our checkpoints and the
converted official models (their checked reading needs no torch: :mod:`avaffect.deploy.formats`)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from avaffect.deploy.formats import read_format, read_tagged_metadata
from avaffect.files import atomic_path

__all__ = ["write_tagged", "read_format", "read_tagged_metadata"]


def write_tagged(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (made contiguous, on the CPU) with ``metadata`` atomically: temp file + rename,
    and no temp file is left behind when writing fails."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return path
