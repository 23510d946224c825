"""Our checkpoint format: one safetensors file with the weights and, in its metadata, the model
config and the typed preprocessing spec that ``predict`` and ``evaluate`` rebuild (never a pickled module).
The format tag and the metadata reader are :mod:`avaffect.deploy.formats` (no torch needed to read them)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from avaffect._version import __version__
from avaffect.deploy.formats import CHECKPOINT_FORMAT as FORMAT
from avaffect.deploy.formats import OFFICIAL_FORMAT, read_checkpoint_meta, read_format
from avaffect.errors import AvaffectError
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.models.official import load_official_checkpoint
from avaffect.models.registry import get_entry, model_config, yaml_keys
from avaffect.models.safetensors_io import write_tagged
from avaffect.models.wrapper import AVRegressor

# Preset defaults that changed. A checkpoint written before checkpoints stored every preset field
# ("complete_params") was built with the old default wherever its params are silent, so it is rebuilt with it.
FORMER_DEFAULTS = {"recursion_input": "gated"}  # HGRJCA presets until 2026-12; the printed "ungated" since


def save_checkpoint(path: str | Path, model: AVRegressor, preprocessing: PreprocessingSpec,
                    extra: dict | None = None) -> Path:
    """Write ``model`` atomically (temp file + rename) to ``path``. The metadata holds every field of the preset's
    config that applies to it (:func:`~avaffect.models.registry.yaml_keys`), defaults included, so a later change
    of a default cannot change what a saved model computes."""
    desc = model.describe()
    applies = set(yaml_keys(desc["name"]))  # a DLSTM refuses the generic sizes it does not use, even at default
    desc["params"] = {k: v for k, v in model_config(desc["name"], desc["params"]).model_dump(mode="json").items()
                      if k in applies}
    desc["complete_params"] = True
    meta = {"format": FORMAT, "avaffect_version": __version__, "model": json.dumps(desc),
            "preprocessing": preprocessing.model_dump_json(), "extra": json.dumps(extra or {})}
    return write_tagged(path, model.state_dict(), meta)


def _params_as_built(model: dict) -> dict:
    """The preset params a checkpoint's model was built with (:data:`FORMER_DEFAULTS` for older checkpoints)."""
    applies = set(yaml_keys(model["name"]))  # DLSTM checkpoints of 2026-12 stored the fields they do not use
    params = {k: v for k, v in model["params"].items() if k in applies}
    if not model.get("complete_params"):
        fields = get_entry(model["name"]).config_cls.model_fields
        params.update({k: v for k, v in FORMER_DEFAULTS.items() if k in fields and k not in params})
    return params


def load_for_prediction(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """What ``predict`` runs: an avaffect checkpoint (:func:`load_checkpoint`) or an authors' model converted by
    ``avaffect convert-official`` (its preprocessing recorded at conversion)."""
    if read_format(path) == OFFICIAL_FORMAT:
        return load_official_checkpoint(path, device)
    return load_checkpoint(path, device)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[AVRegressor, dict]:
    """Rebuild the model (eval mode) and return it with the checkpoint's metadata."""
    meta = read_checkpoint_meta(path)
    m = meta["model"]
    model = AVRegressor(m["name"], m["d_audio"], m["d_video"], _params_as_built(m))
    state = load_file(str(path), device=str(device))
    bad = [n for n, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise AvaffectError(f"{path}: NaN/Inf in the weights ({', '.join(bad[:3])}): the model is broken — train it "
                            "again (a diverged run) or re-export it")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise AvaffectError(f"{path}: the weights do not fit the model its metadata describes ({str(e)[:200]}) — "
                            "the file was changed or comes from another model") from None
    return model.to(device).eval(), meta
