"""The checkpoint files' formats and their metadata, read without torch.

Both kinds of model file are safetensors files whose metadata carries a ``format`` tag: an avaffect checkpoint
(:data:`CHECKPOINT_FORMAT`, written by :func:`avaffect.models.checkpoint.save_checkpoint`) and an authors' model
converted by ``avaffect convert-official`` (:data:`OFFICIAL_FORMAT`). The tags are declared here only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open

from avaffect.errors import AvaffectError
from avaffect.features.preprocessing_spec import PreprocessingSpec

__all__ = ["CHECKPOINT_FORMAT", "OFFICIAL_FORMAT", "DEPLOY_FORMAT", "DEPLOY_FILE", "read_format",
           "read_tagged_metadata", "read_checkpoint_meta", "read_deploy_meta", "read_array"]

CHECKPOINT_FORMAT = "avaffect-checkpoint-1"
OFFICIAL_FORMAT = "avaffect-official-1"
#: ``avaffect export --out DIR``'s ``deploy.safetensors``: a checkpoint's metadata and the tensors predict needs
#: besides the network (its ``audio_mean``), no weights: the network is ``model.onnx`` beside it
DEPLOY_FORMAT, DEPLOY_FILE = "avaffect-deploy-1", "deploy.safetensors"
DEPLOY_FIX = "pass a folder written by `avaffect export CHECKPOINT --out DIR`, or export it again"
CHECKPOINT_FIX = ("pass the model.safetensors of a training run (authors' checkpoints: convert them with `avaffect "
                  "convert-official`; `predict` runs those, evaluation and training need a model trained here)")


def read_format(path: str | Path) -> str | None:
    """The ``format`` tag of a safetensors file (``None``: no tag, not a safetensors file, or no such file)."""
    try:
        with safe_open(str(path), framework="numpy") as f:
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
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a bad header
        raise AvaffectError(f"{path}: not a safetensors file ({e}) — {fix}") from None
    if meta.get("format") != expected_format:
        raise AvaffectError(f"{path}: not {what} (format {meta.get('format')!r}, expected {expected_format!r}) "
                            f"— {fix}")
    return meta


def read_checkpoint_meta(path: str | Path) -> dict:
    """``{"model": dict, "preprocessing": PreprocessingSpec, "extra": dict, "avaffect_version": str}`` of an
    avaffect checkpoint."""
    return _parse_meta(path, read_tagged_metadata(path, CHECKPOINT_FORMAT, "an avaffect checkpoint", CHECKPOINT_FIX))


def read_deploy_meta(path: str | Path) -> dict:
    """:func:`read_checkpoint_meta` of an exported folder's ``deploy.safetensors``."""
    return _parse_meta(path, read_tagged_metadata(path, DEPLOY_FORMAT, "an exported model's deploy file",
                                                  DEPLOY_FIX))


def _parse_meta(path: str | Path, meta: dict[str, str]) -> dict:
    try:
        model = json.loads(meta["model"])
        prep = json.loads(meta["preprocessing"])
        extra = json.loads(meta.get("extra", "{}"))
        if not isinstance(model, dict) or not {"name", "d_audio", "d_video", "params"} <= set(model):
            raise KeyError("model")
    except (KeyError, json.JSONDecodeError, TypeError) as e:
        raise AvaffectError(f"{path}: the checkpoint's metadata is damaged ({type(e).__name__}: {e}) — use the "
                            "model.safetensors of a finished run, or train again") from None
    return {"model": model, "preprocessing": PreprocessingSpec.from_metadata(prep, str(path)), "extra": extra,
            "avaffect_version": meta.get("avaffect_version")}


def read_array(path: str | Path, name: str) -> np.ndarray:
    """One tensor of a safetensors file as a numpy array (e.g. a checkpoint's ``audio_mean``)."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            if name not in f.keys():
                raise AvaffectError(f"{path}: has no tensor {name!r} — the file is damaged or from another model")
            return f.get_tensor(name)
    except AvaffectError:
        raise
    except Exception as e:  # safetensors raises several types for a bad file
        raise AvaffectError(f"{path}: cannot read tensor {name!r} ({e}) — the file is damaged; train again") from None
