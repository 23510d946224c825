"""Official variants: their registry, building, size inference, strict loading and checkpoint conversion.

The variant table is an :class:`avaffect.registry.Registry` (``register_variant`` / ``get_variant`` /
``list_variants``, as the model, extractor and detector registries); :data:`VARIANTS` is the same table as a
plain ``{name: spec}`` dict in registration order. Checkpoint files are read by
:func:`avaffect.statedict.load_state_dict_file` (``torch.load(weights_only=True)``, never a pickle), with the
authors'-checkpoint messages on top.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avaffect.deploy.formats import OFFICIAL_FORMAT as FORMAT
from avaffect.deploy.formats import read_tagged_metadata
from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.models.official.deploy import BACKBONES_DIR, OfficialRegressor, copy_backbone, official_preprocessing
from avaffect.models.official.modules import CAMSizes, DCNSizes, DCNStack, OfficialCAM
from avaffect.models.safetensors_io import write_tagged
from avaffect.registry import Registry
from avaffect.statedict import load_state_dict_file, strip_prefix

__all__ = [
    "FORMAT",
    "VARIANTS",
    "register_variant",
    "get_variant",
    "list_variants",
    "build_official",
    "infer_sizes",
    "guess_variant",
    "from_official",
    "convert_official",
    "load_converted",
    "load_official_checkpoint",
]


# ------------------------------------------------------------------------------------------ variants

_REGISTRY: Registry[dict[str, Any]] = Registry("official variant")

VARIANTS: dict[str, dict] = {}
"""``{name: spec}`` in registration order, kept in step with the registry by :func:`register_variant`
(read it; register through :func:`register_variant`)."""


def register_variant(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Register an official variant. ``spec``: ``kind`` (``"cam"``: :class:`OfficialCAM` with ``extractors``
    and ``gates`` flags; ``"dcn"``: :class:`DCNStack` without query projection) and a ``summary``."""
    _REGISTRY.add(name, spec)
    VARIANTS[name] = spec
    return spec


def get_variant(name: str) -> dict[str, Any]:
    """The spec of variant ``name``; a :class:`ConfigError` listing the variants otherwise."""
    return _REGISTRY.get(name)


def list_variants() -> list[str]:
    """Sorted variant names."""
    return _REGISTRY.names()


register_variant("rja_icassp23", {"kind": "cam", "extractors": True, "gates": False,
                                  "summary": "RJA (ICASSP 2023): U-BLSTMs + recursive JCA + J-BLSTM"})
register_variant("dca_icme24", {"kind": "cam", "extractors": True, "gates": True,
                                "summary": "DCA (ICME 2024): RJA + 2-way gates (T = 0.1)"})
register_variant("jca_tbiom23", {"kind": "cam", "extractors": False, "gates": False,
                                 "summary": "JCA (T-BIOM 2023): spatial attention + JCA + J-BLSTM"})
register_variant("rjcma_dcn3_block", {"kind": "dcn", "summary": "RJCMA 3-modality recursive co-attention block"})


def build_official(variant: str, sizes: CAMSizes | DCNSizes | Mapping) -> nn.Module:
    """A fresh (randomly initialised, training mode) module of ``variant`` with explicit ``sizes``."""
    spec = get_variant(variant)
    if spec["kind"] == "cam":
        if not isinstance(sizes, CAMSizes):
            sizes = CAMSizes(**dict(sizes))
        return OfficialCAM(sizes, extractors=spec["extractors"], gates=spec["gates"])
    if not isinstance(sizes, DCNSizes):
        sizes = DCNSizes(**dict(sizes))
    return DCNStack(sizes.dims, sizes.length, sizes.iterations, use_query=False)


def _sizes_of(module: nn.Module) -> CAMSizes | DCNSizes:
    if isinstance(module, OfficialCAM):
        return module.sizes
    if isinstance(module, DCNStack):
        return DCNSizes(module.dims, module.length, len(module.dcn_layers))
    raise TypeError(f"not an official module: {type(module).__name__}")


def guess_variant(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The variant whose key layout ``state_dict`` has, or None."""
    keys = set(strip_prefix(state_dict))
    if any(k.startswith("dcn_layers.") for k in keys):
        return "rjcma_dcn3_block"
    if not any(k.startswith("coattn.dcn_layers.") for k in keys) or "Joint.init_hidden" not in keys:
        return None
    if "video_gating_fc_layer.weight" in keys:
        return "dca_icme24"
    if "audio_extract.init_hidden" in keys:
        return "rja_icassp23"
    return "jca_tbiom23"


def _iteration_count(keys, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in keys if (m := pat.match(k))}
    if not idx:
        return 0
    if idx != set(range(len(idx))):
        raise ConfigError(f"co-attention iterations {sorted(idx)} are not numbered 0..{len(idx) - 1} "
                          f"(keys {prefix}<t>.*); the state dict is incomplete")
    return len(idx)


def _mismatch(variant: str, state_dict: Mapping, missing: list[str], unexpected: list[str], extra: str = "",
              ) -> ConfigError:
    def show(keys: list[str]) -> str:
        keys = sorted(keys)
        more = f" … (+{len(keys) - 8} more)" if len(keys) > 8 else ""
        return ", ".join(keys[:8]) + more

    parts = [f"the state dict does not match official variant {variant!r}"]
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if extra:
        parts.append(extra)
    guess = guess_variant(state_dict)
    if guess is not None and guess != variant:
        parts.append(f"its keys look like variant {guess!r} — pass variant={guess!r}")
    else:
        parts.append("check that the checkpoint comes from the authors' code for this variant "
                     f"(variants: {', '.join(VARIANTS)})")
    return ConfigError("; ".join(parts))


_SIZE_KEYS = {
    "cam": ("Joint.init_hidden", "Joint.linear.weight", "vregressor.0.weight",
            "coattn.dcn_layers.0.dense_coattn.key1_linear.weight", "video_attn.attn.affine_v.weight"),
    "dcn": ("dcn_layers.0.dense_coattn.key1_linear.weight", "dcn_layers.0.dense_coattn.value1_linear.weight"),
}


def infer_sizes(state_dict: Mapping[str, torch.Tensor], variant: str) -> CAMSizes | DCNSizes:
    """Read the sizes of ``variant`` off the tensors of ``state_dict`` (authors' names).

    CAM variants: D = rows of ``Joint.linear.weight``, H = rows of ``vregressor.0.weight``, L = size of
    ``key1_linear``, iterations = number of ``coattn.dcn_layers.<t>``, LSTM layers = rows of
    ``Joint.init_hidden`` / 4, regions = rows of ``affine_v``. 3-modal block: d_m = size of
    ``value<m>_linear``, L = size of ``key1_linear``, iterations = number of ``dcn_layers.<t>``.
    """
    spec = get_variant(variant)
    sd = strip_prefix(state_dict)
    missing = [k for k in _SIZE_KEYS[spec["kind"]] if k not in sd]
    if missing:
        raise _mismatch(variant, sd, missing, [], "cannot infer the sizes")
    try:
        if spec["kind"] == "dcn":
            p = "dcn_layers.0.dense_coattn."
            n_mod = len([k for k in sd if re.fullmatch(re.escape(p) + r"value\d+_linear\.weight", k)])
            dims = tuple(int(sd[f"{p}value{m}_linear.weight"].shape[0]) for m in range(1, n_mod + 1))
            return DCNSizes(dims, int(sd[p + "key1_linear.weight"].shape[0]), _iteration_count(sd, "dcn_layers."))
        return CAMSizes(
            dim=int(sd["Joint.linear.weight"].shape[0]),
            head_hidden=int(sd["vregressor.0.weight"].shape[0]),
            length=int(sd["coattn.dcn_layers.0.dense_coattn.key1_linear.weight"].shape[0]),
            iterations=_iteration_count(sd, "coattn.dcn_layers."),
            lstm_layers=max(1, int(sd["Joint.init_hidden"].shape[0]) // 4),
            regions=int(sd["video_attn.attn.affine_v.weight"].shape[0]),
        )
    except KeyError as e:  # e.g. value2_linear missing while value3_linear is present
        raise _mismatch(variant, sd, [str(e.args[0])], [], "cannot infer the sizes") from None
    except (AttributeError, IndexError, TypeError) as e:
        raise _mismatch(variant, sd, [], [], f"cannot infer the sizes ({e})") from None


def from_official(state_dict: Mapping[str, torch.Tensor], variant: str) -> nn.Module:
    """Build ``variant`` with sizes inferred from ``state_dict`` (authors' names; a ``module.`` prefix is
    dropped), load it strictly and return it in eval mode.

    ``rja_icassp23`` / ``dca_icme24`` / ``jca_tbiom23``: ``forward(audio, video) → [B, L, 2]`` (valence,
    arousal). ``rjcma_dcn3_block``: ``forward(x1, x2, x3) → (y1, y2, y3)``. Raises ConfigError naming the
    missing / unexpected keys when the state dict does not match the variant.
    """
    get_variant(variant)
    if not isinstance(state_dict, Mapping) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise ConfigError("from_official needs a state dict (a mapping of parameter names to tensors); "
                          "for a checkpoint file use convert_official")
    sd = strip_prefix(state_dict)
    model = build_official(variant, infer_sizes(sd, variant))
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise _mismatch(variant, sd, missing, unexpected)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # shape mismatches
        detail = " ".join(str(e).split())
        raise _mismatch(variant, sd, [], [], f"tensor shapes disagree with the inferred sizes ({detail})") from None
    return model.eval()


# ----------------------------------------------------------------------------------------- converter


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an authors' checkpoint, via :func:`load_state_dict_file` (``weights_only=True``;
    wrappers unwrapped, ``module.`` stripped), with messages that say how to fix an authors' file."""
    if not path.is_file():
        raise AvaffectError(f"{path}: checkpoint file not found — pass the path of the authors' .pt/.pth file")
    try:
        obj: Mapping | None = load_state_dict_file(path)
    except AvaffectError as e:
        if e.__cause__ is None:  # readable, but not a mapping: reported below
            obj = None
        else:  # pickle errors of several types for files that hold more than tensors
            raise AvaffectError(
                f"{path}: cannot be read as tensors with torch.load(weights_only=True) ({type(e.__cause__).__name__}: "
                "it holds pickled Python objects or is not a torch file); if you trust the file, re-save its state "
                "dict alone, e.g. torch.save(torch.load(p, weights_only=False)['state_dict'], 'clean.pt'), and "
                "convert that"
            ) from None
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise AvaffectError(f"{path}: no state dict found (expected a dict of tensors, or one under a "
                            "'state_dict', 'net' or 'model' key) — is this an authors' fusion checkpoint?")
    return {str(k): v for k, v in obj.items()}


def convert_official(checkpoint_path: str | Path, variant: str, out_dir: str | Path, *,
                     audio_weights: str | Path | None = None, video_weights: str | Path | None = None,
                     audio_params: dict[str, Any] | None = None, video_params: dict[str, Any] | None = None,
                     hop: int | None = None) -> Path:
    """Convert an authors' checkpoint of ``variant`` to ``out_dir/model.safetensors`` (atomic write).

    The file may hold a plain state dict or one under ``state_dict`` / ``net`` / ``model``; a DataParallel
    ``module.`` prefix is stripped. The metadata records ``format``, ``variant`` and the inferred ``sizes``
    (JSON), which :func:`load_converted` uses to rebuild the module, and — for the 2-modality systems at the
    released sizes — the authors' preprocessing (:func:`~avaffect.models.official.deploy.official_preprocessing`)
    that ``predict`` rebuilds: ``audio_weights`` / ``video_weights`` (the authors' fine-tuned ResNet-18 / R3D) are
    copied beside the model and recorded; ``audio_params`` / ``video_params`` add extractor parameters; ``hop``:
    steps between the model's windows (default: L, non-overlapping).
    """
    get_variant(variant)
    path = Path(checkpoint_path)
    model = from_official(_read_checkpoint(path), variant)
    out_dir = Path(out_dir)
    dst = out_dir / "model.safetensors"
    meta = {"format": FORMAT, "variant": variant, "sizes": json.dumps(asdict(_sizes_of(model)))}
    if isinstance(model, OfficialCAM) and model.sizes.dim == 512 and model.sizes.regions == 49:
        audio_params, video_params = dict(audio_params or {}), dict(video_params or {})
        if audio_weights is not None:
            audio_params["weights"] = copy_backbone(audio_weights, out_dir, "audio_resnet18")
        if video_weights is not None:
            video_params["weights"] = copy_backbone(video_weights, out_dir, "video_r3d18")
        spec = official_preprocessing(model, variant, _beside(audio_params, out_dir), _beside(video_params, out_dir),
                                      hop)
        spec = spec.model_copy(update={"audio_extractor": spec.audio_extractor.model_copy(update={
            "params": {**spec.audio_extractor.params, **audio_params}}), "video_extractor":
            spec.video_extractor.model_copy(update={"params": {**spec.video_extractor.params, **video_params}})})
        meta["preprocessing"] = spec.model_dump_json()
    elif audio_weights is not None or video_weights is not None:
        raise ConfigError(f"{variant} at these sizes has no predict path (only the released 2-modality systems at "
                          "D = 512 do): drop --audio-weights / --video-weights")
    write_tagged(dst, model.state_dict(), meta)
    return dst


def _beside(params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Extractor params with a copied backbone's relative name made absolute (to build the extractor now)."""
    w = params.get("weights")
    return {**params, "weights": str(out_dir / w)} if isinstance(w, str) and w.startswith(BACKBONES_DIR + "/") \
        else params


def load_official_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                             ) -> tuple[OfficialRegressor, dict[str, Any]]:
    """A converted 2-modality model ready for ``predict``: ``(OfficialRegressor, meta)`` with ``meta`` shaped like
    :func:`avaffect.models.checkpoint.read_checkpoint_meta`'s (``model``, typed ``preprocessing``, ``extra``)."""
    path = Path(path)
    meta = read_tagged_metadata(path, FORMAT, "a converted official model",
                                "convert the authors' checkpoint with `avaffect convert-official`")
    if "preprocessing" not in meta:
        raise AvaffectError(f"{path}: this converted {meta.get('variant')!r} model records no preprocessing, so "
                            "predict cannot rebuild its inputs: convert the authors' checkpoint again with this "
                            "version (`avaffect convert-official`; only the released 2-modality systems at D = 512)")
    module = load_converted(path)
    spec = PreprocessingSpec.from_metadata(json.loads(meta["preprocessing"]), str(path))
    variant = meta["variant"]
    info = {"model": {"name": f"official:{variant}", "params": {"sizes": json.loads(meta["sizes"])}},
            "preprocessing": spec, "extra": {}, "avaffect_version": None}
    return OfficialRegressor(module, variant).to(device).eval(), info


def load_converted(path: str | Path) -> nn.Module:
    """Rebuild a module written by :func:`convert_official` (a ``model.safetensors`` file or its folder),
    in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    meta = read_tagged_metadata(path, FORMAT, "a converted official model",
                                "convert the authors' checkpoint with convert_official")
    variant = meta.get("variant", "")
    try:
        sizes = json.loads(meta["sizes"])
    except (KeyError, json.JSONDecodeError) as e:
        raise AvaffectError(f"{path}: metadata 'sizes' missing or invalid ({e}) — re-run convert_official") from None
    model = build_official(variant, sizes)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as e:
        raise AvaffectError(f"{path}: weights do not match the recorded sizes ({' '.join(str(e).split())[:400]}) "
                            "— re-run convert_official") from None
    return model.eval()
