"""A checkpoint's ONNX export (``avaffect export``; ``train`` writes one at the end of every run): the files that
let ``predict`` run the fusion model with ONNX Runtime instead of torch (:mod:`avaffect.deploy.onnx_model`).

The export traces the model on windows of the checkpoint's length with torch's TorchScript-based exporter (it needs
the ``onnx`` package). A trace fixes Python control flow, so the export is checked before it is kept: the ONNX
graph and the torch model run the same batch — windows with every face, with faces missing here and there, with no
face at all, and one that ends past the recording — and must agree within :data:`TOLERANCE`; a model whose forward
pass does not trace faithfully is refused (``predict`` then runs it with torch).
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from avaffect.deploy.formats import DEPLOY_FILE, DEPLOY_FORMAT, OFFICIAL_FORMAT, read_format
from avaffect.deploy.onnx_model import INPUTS, ExportRecord, OnnxWindows, export_paths, write_record
from avaffect.errors import AvaffectError
from avaffect.features.backbones.base import TorchExtractor
from avaffect.features.extractors import get_extractor
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.files import atomic_path, atomic_write_text, sha256_file
from avaffect.models.checkpoint import load_checkpoint

__all__ = ["TOLERANCE", "check_batch", "export_extractors", "export_onnx"]

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest |ONNX - torch| accepted on the check batch (float32 arithmetic in another order)
OPSET = 17


def check_batch(length: int, d_audio: int, d_video: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """The windows an export is checked on: every face; faces missing in runs; no face at all; the recording
    ending a third of the way into the window (``audio, video, mask, face_mask``)."""
    rng = np.random.default_rng(seed)
    b = 4
    audio = rng.normal(size=(b, length, d_audio)).astype(np.float32)
    video = rng.normal(size=(b, length, d_video)).astype(np.float32)
    mask = np.ones((b, length), bool)
    face = np.ones((b, length), bool)
    face[1, rng.random(length) < 0.3] = False
    face[2] = False
    video[~face] = 0.0
    mask[3, length // 3:] = False
    audio[3, length // 3:] = video[3, length // 3:] = 0.0
    face[3, length // 3:] = False
    return audio, video, mask, face


def export_onnx(checkpoint: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``model.onnx`` and its record beside ``checkpoint`` (an avaffect checkpoint; module docstring), or in
    ``out_dir`` with what predict needs besides (:func:`export_folder`), and return the ONNX path. Raises
    :class:`AvaffectError` when the model cannot be exported faithfully."""
    checkpoint = Path(checkpoint)
    if read_format(checkpoint) == OFFICIAL_FORMAT:
        raise AvaffectError(f"{checkpoint}: an authors' model runs with its torch backbones (R3D, ResNet) on every "
                            "clip; exporting the fusion part alone would not spare torch, so it is not exported")
    try:
        import onnx  # noqa: F401  lazy: needed by torch's exporter only, not to run the export
    except ImportError:
        raise AvaffectError("exporting to ONNX needs the onnx package: pip install onnx (a dependency of "
                            "avaffect; reinstall avaffect if it is missing)") from None
    model, meta = load_checkpoint(checkpoint, "cpu")
    length = int(meta["preprocessing"].window)
    m = meta["model"]
    batch = check_batch(length, int(m["d_audio"]), int(m["d_video"]))
    tensors = tuple(torch.as_tensor(x) for x in batch)
    with torch.no_grad():
        want = model(*tensors).float().numpy()
    onnx_path, record_path = export_paths(checkpoint if out_dir is None else Path(out_dir) / "model.safetensors")
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(onnx_path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks of a fixed window length
        try:
            torch.onnx.export(model, tensors, str(tmp), input_names=list(INPUTS), output_names=["values"],
                              dynamic_axes={k: {0: "batch"} for k in (*INPUTS, "values")}, opset_version=OPSET,
                              dynamo=False)
        except Exception as e:  # the exporter raises many types for an unsupported operation
            raise AvaffectError(f"{checkpoint}: model {m['name']} cannot be exported to ONNX "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); predict runs it with "
                                "torch") from None
        runner = OnnxWindows(tmp)
        got = runner(*batch)
        diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
        if not diff <= TOLERANCE:
            raise AvaffectError(f"{checkpoint}: the ONNX export of {m['name']} differs from the torch model by "
                                f"{diff:.3g} (> {TOLERANCE}) on the check windows: its forward pass does not trace "
                                "faithfully, so it is not exported; predict runs it with torch")
        inputs = runner.inputs
    write_record(ExportRecord(checkpoint_sha256=sha256_file(checkpoint), onnx_sha256=sha256_file(onnx_path),
                              window=length, inputs=inputs, max_abs_diff=diff), record_path)
    if out_dir is not None:
        _deploy_files(checkpoint, Path(out_dir))
    log.info("%s: exported to %s (max |ONNX - torch| %.2g)", checkpoint, onnx_path, diff)
    return onnx_path


def _deploy_files(checkpoint: Path, out_dir: Path) -> None:
    """Beside an export in its own folder: ``deploy.safetensors`` (the checkpoint's metadata and ``audio_mean``, no
    weights), ``preprocessing.json`` (what the model's inputs are, readable by anyone porting it), the extractors
    that are networks exported too (:func:`export_extractors`) and the files the extractors read beside the
    checkpoint (:meth:`PreprocessingSpec.side_files`, at the same relative paths)."""
    with safe_open(str(checkpoint), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        audio_mean = f.get_tensor("audio_mean")
    spec, networks = export_extractors(PreprocessingSpec.from_metadata(json.loads(meta["preprocessing"]),
                                                                       str(checkpoint)), checkpoint.parent, out_dir)
    meta["preprocessing"] = spec.model_dump_json()
    for rel in spec.side_files(checkpoint.parent):  # e.g. an end-to-end run's backbones/<file> not exported
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint.parent / rel, out_dir / rel)
    model = json.loads(meta["model"])
    atomic_write_text(out_dir / "preprocessing.json", json.dumps({
        "note": "what model.onnx expects, per batch of windows: audio [B, L, d_audio] and video [B, L, d_video] "
                "features from the extractors below (their params), the window mask [B, L] (steps inside the "
                "recording) and the face mask [B, L] (a face was found); output values [B, L, K] (the targets), "
                "windows of L steps every hop steps, overlapping values averaged. An extractor with an `onnx` "
                "parameter runs that file (its network, input normalisation included) instead of torch.",
        "model": {"name": model["name"], "d_audio": model["d_audio"], "d_video": model["d_video"]},
        "extractors": networks,
        "audio_mean": [float(v) for v in np.asarray(audio_mean).reshape(-1)],
        "preprocessing": json.loads(meta["preprocessing"])}, indent=2) + "\n")
    with atomic_path(out_dir / DEPLOY_FILE) as tmp:  # last: predict takes the folder for an export once it is there
        save_file({"audio_mean": np.ascontiguousarray(audio_mean)}, str(tmp), metadata={**meta,
                                                                                        "format": DEPLOY_FORMAT})


def export_extractors(spec: PreprocessingSpec, home: Path, out_dir: Path) -> tuple[PreprocessingSpec, dict]:
    """Export each extractor of ``spec`` that is a torch network (``home``: the checkpoint's folder, where its side
    files are) into ``out_dir/extractors/<modality>-<name>.onnx`` (:meth:`TorchExtractor.export_network`: checked
    against torch, refused above its tolerance) and point its ``onnx`` parameter there (a path relative to the
    folder): the spec to store, and per modality what happened (``network``: whether it is one; ``exported`` file
    and ``max_abs_diff``, or ``why`` not). The others are NumPy / OpenCV / ONNX Runtime code already and run as
    they are."""
    notes: dict[str, dict] = {}
    updates = {}
    for key in ("audio_extractor", "video_extractor"):
        record = getattr(spec, key)
        modality = key.split("_")[0]
        extractor = get_extractor(record.name, **record.params_beside(home))
        if not isinstance(extractor, TorchExtractor):
            notes[modality] = {"extractor": record.name, "network": False, "exported": None,
                               "why": "not a torch network: it runs as it is, without torch"}
            continue
        rel = f"extractors/{modality}-{record.name}.onnx"
        try:
            diff = extractor.export_network(out_dir / rel)
        except AvaffectError as e:  # e.g. its weights are not here: the folder then needs them, and torch
            notes[modality] = {"extractor": record.name, "network": True, "exported": None, "why": str(e)}
            log.warning("%s: the %s extractor %s is not exported (%s): predict runs it with torch", out_dir, modality,
                        record.name, e)
            continue
        updates[key] = record.model_copy(update={"params": {**record.params, "onnx": rel}})
        notes[modality] = {"extractor": record.name, "network": True, "exported": rel, "max_abs_diff": diff}
    return spec.model_copy(update=updates), notes
