"""Our checkpoint format: one safetensors file with the weights and, in its metadata, the model
config and the preprocessing spec that ``predict`` rebuilds (never a pickled module)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avaffect import __version__
from avaffect.errors import AvaffectError
from avaffect.models.wrapper import AVRegressor

FORMAT = "avaffect-checkpoint-1"


def save_checkpoint(path: str | Path, model: AVRegressor, preprocessing: dict, extra: dict | None = None) -> Path:
    """Write ``model`` atomically (temp file + rename) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "avaffect_version": __version__, "model": json.dumps(model.describe()),
            "preprocessing": json.dumps(preprocessing), "extra": json.dumps(extra or {})}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_checkpoint_meta(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AvaffectError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a bad header
        raise AvaffectError(f"{path}: not an avaffect checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise AvaffectError(f"{path}: not an avaffect checkpoint (format {meta.get('format')!r}); "
                            "convert authors' checkpoints with `avaffect convert-official`")
    return {"model": json.loads(meta["model"]), "preprocessing": json.loads(meta["preprocessing"]),
            "extra": json.loads(meta.get("extra", "{}")), "avaffect_version": meta.get("avaffect_version")}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[AVRegressor, dict]:
    """Rebuild the model (eval mode) and return it with the checkpoint's metadata."""
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(path)
    m = meta["model"]
    model = AVRegressor(m["name"], m["d_audio"], m["d_video"], m["params"])
    model.load_state_dict(load_file(str(path), device=str(device)))
    return model.to(device).eval(), meta
