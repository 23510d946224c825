"""State-dict files: the one safe reader of weight and checkpoint files.

:func:`load_state_dict_file` never unpickles code: ``.pth``/``.pt``/``.bin``/``.ckpt`` go through
``torch.load(weights_only=True)`` (plain numpy arrays allowed by an allow-list of numpy's
array-reconstruction globals only), ``.safetensors`` through ``safetensors``, and ``.npz`` through
``numpy.load(allow_pickle=False)``. Checkpoint wrappers are unwrapped and a ``module.`` prefix stripped.

A leaf module: it imports only torch, numpy, safetensors (lazily) and :mod:`avaffect.errors`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from avaffect.errors import AvaffectError

__all__ = ["load_state_dict_file", "strip_prefix"]


def strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop ``prefix`` from every key that has it (``DataParallel``/DDP checkpoints)."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "params")


def _unwrap(obj: Any) -> Any:
    """Descend into checkpoint wrappers (:data:`_WRAPPERS`, first match per level, at most 4 levels)."""
    for _ in range(4):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPERS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj = inner
    return obj


_NUMPY_GLOBAL = re.compile(r"^numpy\.(ndarray|dtype|(_core|core)\.multiarray\._reconstruct|dtypes\.\w+DType)$")


def _torch_load(path: Path, map_location: str) -> Any:
    """``torch.load(weights_only=True)``; files holding plain numpy arrays (e.g. converted PCA
    parameters) are allowed too, by allow-listing only numpy's array-reconstruction globals."""
    import importlib

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        if "weights_only" not in str(exc).lower() and "unpickl" not in type(exc).__name__.lower():
            raise
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        if not names or not all(_NUMPY_GLOBAL.match(n) for n in names):
            raise
        objs = []
        for name in names:
            module, _, attr = name.rpartition(".")
            objs.append(getattr(importlib.import_module(module), attr))
        import numpy as np

        objs += [c for c in vars(np.dtypes).values() if isinstance(c, type) and issubclass(c, np.dtype)]
        with torch.serialization.safe_globals(objs):
            return torch.load(path, map_location=map_location, weights_only=True)


def load_state_dict_file(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a state dict: ``{name: tensor}``.

    ``.pth``/``.pt``/``.bin``/``.ckpt``: ``torch.load(weights_only=True)`` (tensors and plain
    containers only; a pickled ``nn.Module`` is refused), then a checkpoint wrapper
    (``state_dict``, ``model_state_dict``, ``model``, ``net``, ``params``) is unwrapped and a
    ``module.`` prefix stripped. ``.safetensors``: ``safetensors.torch.load_file``. ``.npz``: numpy
    arrays converted to tensors. Raises :class:`AvaffectError` naming the file on failure; when the
    file cannot be read at all, the loader's exception is its ``__cause__``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise AvaffectError(f"{path}: weight file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device=map_location)
        elif suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as npz:
                obj = {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
        else:
            obj = _torch_load(path, map_location)
    except Exception as exc:  # noqa: BLE001 - report any loader failure with the file and a fix
        raise AvaffectError(
            f"{path}: cannot load weights ({type(exc).__name__}: {exc}). Expected a state dict saved with "
            "torch.save(model.state_dict(), ...) or safetensors; pickled modules are not loaded."
        ) from exc
    obj = _unwrap(obj)
    if not isinstance(obj, Mapping):
        raise AvaffectError(
            f"{path}: holds a {type(obj).__name__}, not a state dict ({{name: tensor}}); save "
            "model.state_dict() instead"
        )
    return strip_prefix(dict(obj), "module.")
