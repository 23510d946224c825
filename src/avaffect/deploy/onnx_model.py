"""A fusion model's ONNX export: the two files beside its checkpoint, and the runner that predicts windows with it.

``avaffect export`` (and ``train``, at the end of every run) writes, beside ``model.safetensors``:

- ``model.onnx``: the model's forward pass for a batch of windows of the checkpoint's window length (inputs
  ``audio`` [B, L, d_a], ``video`` [B, L, d_v], ``mask`` [B, L], ``face_mask`` [B, L], those the model uses; output
  ``values`` [B, L, K]), checked against the torch model when written (:mod:`avaffect.models.export`);
- ``model.onnx.json``: its :class:`ExportRecord`: the SHA-256 of the checkpoint it came from and of the ONNX file.

``predict`` uses the export only when the record matches both files (:func:`find_export`): a checkpoint trained
again, or an export cut short, is never run, the torch model is. Written second, the record makes the pair atomic.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avaffect._version import __version__
from avaffect.errors import AvaffectError
from avaffect.files import atomic_write_text, sha256_file
from avaffect.onnxrt import open_session

__all__ = ["EXPORT_FORMAT", "ExportRecord", "OnnxWindows", "export_paths", "find_deployed", "find_export",
           "write_record"]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "avaffect-onnx-1"
INPUTS = ("audio", "video", "mask", "face_mask")


@dataclass(frozen=True)
class ExportRecord:
    """What ``model.onnx.json`` says about its ``model.onnx``."""

    checkpoint_sha256: str
    onnx_sha256: str
    window: int
    inputs: tuple[str, ...]
    max_abs_diff: float  # against the torch model on the check batch, when written
    avaffect_version: str = __version__
    format: str = EXPORT_FORMAT


def export_paths(checkpoint: str | Path) -> tuple[Path, Path]:
    """``(model.onnx, model.onnx.json)`` beside ``checkpoint`` (its name with the suffix replaced)."""
    onnx = Path(checkpoint).with_suffix(".onnx")
    return onnx, onnx.with_name(onnx.name + ".json")


def write_record(record: ExportRecord, path: Path) -> Path:
    return atomic_write_text(path, json.dumps(asdict(record), indent=2) + "\n")


def find_export(checkpoint: str | Path, checkpoint_sha256: str | None = None) -> Path | None:
    """The ONNX export of ``checkpoint`` when its record matches the checkpoint and the ONNX file (both SHA-256),
    else ``None`` (why is logged)."""
    onnx, record_path = export_paths(checkpoint)
    if not record_path.is_file() or not onnx.is_file():
        return None
    try:
        raw = json.loads(record_path.read_text())
        record = ExportRecord(**{**raw, "inputs": tuple(raw["inputs"])})
    except (OSError, ValueError, TypeError, KeyError) as e:
        log.warning("%s: unreadable export record (%s); the torch model runs instead", record_path, e)
        return None
    if record.format != EXPORT_FORMAT:
        log.info("%s: export format %r is not %r; the torch model runs", record_path, record.format, EXPORT_FORMAT)
        return None
    if record.checkpoint_sha256 != (checkpoint_sha256 or sha256_file(checkpoint)):
        log.warning("%s was exported from another version of %s (trained again?): the torch model runs; `avaffect "
                    "export %s` writes it again", onnx, checkpoint, checkpoint)
        return None
    if record.onnx_sha256 != sha256_file(onnx):
        log.warning("%s does not match its record (cut short or changed): the torch model runs; `avaffect export "
                    "%s` writes it again", onnx, checkpoint)
        return None
    return onnx


def find_deployed(folder: str | Path) -> Path:
    """The ``model.onnx`` of a folder written by ``avaffect export --out`` when its record matches it; otherwise an
    :class:`AvaffectError` saying to export again."""
    onnx, record_path = export_paths(Path(folder) / "model.safetensors")
    fix = f"export it again: avaffect export CHECKPOINT --out {folder}"
    try:
        raw = json.loads(record_path.read_text())
        record = ExportRecord(**{**raw, "inputs": tuple(raw["inputs"])})
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise AvaffectError(f"{record_path}: unreadable export record ({e}) — {fix}") from None
    if record.format != EXPORT_FORMAT or not onnx.is_file() or record.onnx_sha256 != sha256_file(onnx):
        raise AvaffectError(f"{onnx} is missing, cut short or changed (it does not match {record_path.name}) — {fix}")
    return onnx


class OnnxWindows:
    """Batches of windows through an exported model: a :data:`~avaffect.evaluation.streaming.WindowRunner`, numpy
    in and out, with the torch model's values (to about 1e-5). ``threads``: ONNX Runtime's intra-op threads (1: the
    predict pass's own threads are the parallelism; the fusion models are small)."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.session = open_session(self.path, threads, what="exported fusion model")
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        unknown = set(self.inputs) - set(INPUTS)
        if unknown:
            raise AvaffectError(f"{self.path}: inputs {sorted(unknown)} are not a fusion model's {INPUTS}: not an "
                                "avaffect export; run `avaffect export` on the checkpoint again")

    def __call__(self, audio: np.ndarray, video: np.ndarray, mask: np.ndarray, face_mask: np.ndarray) -> np.ndarray:
        given = {"audio": np.asarray(audio, np.float32), "video": np.asarray(video, np.float32),
                 "mask": np.asarray(mask, bool), "face_mask": np.asarray(face_mask, bool)}
        return self.session.run(None, {k: given[k] for k in self.inputs})[0]
