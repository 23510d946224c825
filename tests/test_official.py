"""Reference-compatible modules of the authors' released fusion code (docs/design.md §4.6, §9)."""

from __future__ import annotations

import json

import pytest
import torch
from shareddata import GOLDEN_OFFICIAL, require  # noqa: E402

from avaffect.errors import AvaffectError, ConfigError
from avaffect.models.official import (
    FORMAT,
    VARIANTS,
    CAMSizes,
    DCNSizes,
    OfficialCAM,
    build_official,
    convert_official,
    from_official,
    guess_variant,
    infer_sizes,
    load_converted,
)

CAM_VARIANTS = ["rja_icassp23", "dca_icme24", "jca_tbiom23"]
ALL_VARIANTS = [*CAM_VARIANTS, "rjcma_dcn3_block"]
TOL = 1e-5


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(require(GOLDEN_OFFICIAL, "the golden outputs of the authors' modules"), weights_only=True)


def _max_err(model: torch.nn.Module, entry: dict, variant: str) -> float:
    """Max-abs error of ``model`` on a golden entry (valence/arousal stacked into [B, L, 2])."""
    with torch.no_grad():
        if variant == "rjcma_dcn3_block":
            ys = model(entry["x1"], entry["x2"], entry["x3"])
            assert len(ys) == 3
            return max((y - entry[f"y{i}"]).abs().max().item() for i, y in enumerate(ys, start=1))
        y = model(entry["audio"], entry["video"])
        expected = torch.stack([entry["valence"], entry["arousal"]], dim=-1)
        assert y.shape == expected.shape
        return (y - expected).abs().max().item()


# ----------------------------------------------------------------------------------- golden parity


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_golden_parity(golden, variant):
    entry = golden[variant]
    model = from_official(entry["state_dict"], variant)
    assert _max_err(model, entry, variant) < TOL


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_sizes_inferred_from_state_dict(golden, variant):
    entry = golden[variant]
    meta = json.loads(entry["meta"])
    sizes = infer_sizes(entry["state_dict"], variant)
    if variant == "rjcma_dcn3_block":
        assert sizes == DCNSizes(tuple(meta["dims"]), meta["L"], meta["iterations"])
    else:
        n_it = len({k.split(".")[2] for k in entry["state_dict"] if k.startswith("coattn.dcn_layers.")})
        assert sizes == CAMSizes(dim=meta["D"], head_hidden=meta["H"], length=meta["L"], iterations=n_it,
                                 lstm_layers=2, regions=49)
    assert guess_variant(entry["state_dict"]) == variant


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_strict_load_and_eval_mode(golden, variant):
    sd = golden[variant]["state_dict"]
    model = from_official(sd, variant)
    assert set(model.state_dict()) == set(sd)
    fresh = build_official(variant, infer_sizes(sd, variant))
    result = fresh.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert not any(m.training for m in model.modules())


def test_module_prefix_is_stripped(golden):
    entry = golden["jca_tbiom23"]
    sd = {f"module.{k}": v for k, v in entry["state_dict"].items()}
    assert _max_err(from_official(sd, "jca_tbiom23"), entry, "jca_tbiom23") < TOL


# ------------------------------------------------------------------------------------------- convert


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_convert_and_load_round_trip(golden, variant, tmp_path):
    from safetensors import safe_open

    entry = golden[variant]
    ckpt = tmp_path / "authors.pth"
    torch.save({"epoch": torch.tensor(3), "state_dict": {f"module.{k}": v for k, v in entry["state_dict"].items()}},
               ckpt)
    out = convert_official(ckpt, variant, tmp_path / "converted")
    assert out == tmp_path / "converted" / "model.safetensors" and out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["model.safetensors"]  # no temp file left behind
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and meta["variant"] == variant
    assert json.loads(meta["sizes"]) == json.loads(json.dumps(infer_sizes(entry["state_dict"], variant).__dict__))
    model = load_converted(out)
    assert not model.training
    assert _max_err(model, entry, variant) < TOL
    assert _max_err(load_converted(out.parent), entry, variant) < TOL  # the folder works too


@pytest.mark.parametrize("key", ["net", "model", None])
def test_convert_accepts_checkpoint_layouts(golden, key, tmp_path):
    entry = golden["rja_icassp23"]
    sd = dict(entry["state_dict"])
    ckpt = tmp_path / "c.pt"
    torch.save(sd if key is None else {key: sd}, ckpt)
    model = load_converted(convert_official(ckpt, "rja_icassp23", tmp_path / "out"))
    assert _max_err(model, entry, "rja_icassp23") < TOL


# -------------------------------------------------------------------------------------------- errors


def test_unknown_variant(golden):
    with pytest.raises(ConfigError, match="unknown official variant.*rja_icassp23"):
        from_official(golden["rja_icassp23"]["state_dict"], "rja")


def test_wrong_state_dict_names_the_keys(golden):
    with pytest.raises(ConfigError, match="unexpected keys: audio_gating_fc_layer.*pass variant='dca_icme24'"):
        from_official(golden["dca_icme24"]["state_dict"], "rja_icassp23")
    with pytest.raises(ConfigError, match="missing keys: audio_extract.*pass variant='jca_tbiom23'"):
        from_official(golden["jca_tbiom23"]["state_dict"], "rja_icassp23")
    with pytest.raises(ConfigError, match="missing keys: .*pass variant='rjcma_dcn3_block'"):
        from_official(golden["rjcma_dcn3_block"]["state_dict"], "dca_icme24")
    with pytest.raises(ConfigError, match="missing keys: dcn_layers.*pass variant='jca_tbiom23'"):
        from_official(golden["jca_tbiom23"]["state_dict"], "rjcma_dcn3_block")


def test_wrong_shape_is_a_config_error(golden):
    sd = dict(golden["rja_icassp23"]["state_dict"])
    sd["vregressor.3.weight"] = torch.zeros(1, 7)
    with pytest.raises(ConfigError, match="shapes disagree.*vregressor.3.weight"):
        from_official(sd, "rja_icassp23")
    with pytest.raises(ConfigError, match="state dict"):
        from_official({"a": 1}, "rja_icassp23")


def test_convert_errors(golden, tmp_path):
    with pytest.raises(AvaffectError, match="not found"):
        convert_official(tmp_path / "nope.pth", "rja_icassp23", tmp_path / "out")
    bad = tmp_path / "bad.pt"
    torch.save({"epoch": 1, "optimizer": {"lr": 0.1}}, bad)
    with pytest.raises(AvaffectError, match="no state dict found"):
        convert_official(bad, "rja_icassp23", tmp_path / "out")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(AvaffectError, match="weights_only=True.*re-save its state dict"):
        convert_official(garbage, "rja_icassp23", tmp_path / "out")
    ckpt = tmp_path / "jca.pt"
    torch.save(golden["jca_tbiom23"]["state_dict"], ckpt)
    with pytest.raises(ConfigError, match="jca_tbiom23"):
        convert_official(ckpt, "dca_icme24", tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()
    with pytest.raises(AvaffectError, match="not found"):
        load_converted(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(AvaffectError, match="not a converted official model"):
        load_converted(other)


# ------------------------------------------------------------------------------- other sizes, grads

SECOND_CAM = CAMSizes(dim=24, head_hidden=8, length=10, iterations=3, lstm_layers=1, regions=49)
SECOND_DCN = DCNSizes((8, 12, 4), length=20, iterations=3)


def _second(variant: str):
    return SECOND_DCN if variant == "rjcma_dcn3_block" else SECOND_CAM


def _inputs(sizes, batch: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if isinstance(sizes, DCNSizes):
        return tuple(torch.randn(batch, sizes.length, d, generator=g) for d in sizes.dims)
    return (torch.randn(batch, sizes.length, sizes.dim, generator=g),
            torch.randn(batch, sizes.length, sizes.regions * sizes.dim, generator=g))


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_second_size_from_random_state_dict(variant):
    torch.manual_seed(0)
    sizes = _second(variant)
    sd = build_official(variant, sizes).state_dict()
    model = from_official(sd, variant)
    assert infer_sizes(sd, variant) == sizes
    with torch.no_grad():
        out = model(*_inputs(sizes, batch=3))
    if isinstance(sizes, DCNSizes):
        assert [tuple(y.shape) for y in out] == [(3, sizes.length, d) for d in sizes.dims]
    else:
        assert out.shape == (3, sizes.length, 2)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_parameter_gets_a_gradient(golden, variant):
    torch.manual_seed(0)
    for model, inputs in ((from_official(golden[variant]["state_dict"], variant), None),
                          (build_official(variant, _second(variant)), _inputs(_second(variant), batch=4))):
        model.train()
        if inputs is None:
            e = golden[variant]
            inputs = (e["x1"], e["x2"], e["x3"]) if variant == "rjcma_dcn3_block" else (e["audio"], e["video"])
        out = model(*inputs)
        loss = sum(y.square().sum() for y in out) if isinstance(out, tuple) else out.square().sum()
        loss.backward()
        for name, p in model.named_parameters():
            if variant == "rjcma_dcn3_block" and ".dense_coattn.query_linear." in name:
                assert p.grad is None, f"{name}: the released 3-modal block never uses its query projection"
            else:
                assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"


def test_window_length_is_checked_and_mask_zeroes_padding():
    model = build_official("dca_icme24", SECOND_CAM).eval()
    assert isinstance(model, OfficialCAM) and model.window_length == SECOND_CAM.length
    audio, video = _inputs(SECOND_CAM)
    with pytest.raises(ValueError, match="window"):
        model(audio[:, :5], video[:, :5])
    with pytest.raises(ValueError, match="video must be"):
        model(audio, video[..., :-1])
    mask = torch.ones(2, SECOND_CAM.length)
    mask[1, 6:] = 0
    with torch.no_grad():
        y, ym = model(audio, video), model(audio, video, mask)
    assert torch.equal(ym[1, 6:], torch.zeros_like(ym[1, 6:]))
    assert torch.equal(ym[0], y[0])
    block = build_official("rjcma_dcn3_block", SECOND_DCN)
    x1, x2, x3 = _inputs(SECOND_DCN)
    with pytest.raises(ValueError, match="modalities"):
        block(x1, x2)
    with pytest.raises(ValueError, match="window"):
        block(x1[:, :7], x2[:, :7], x3[:, :7])


def test_variant_table():
    assert set(VARIANTS) == set(ALL_VARIANTS)
    with pytest.raises(ConfigError):
        CAMSizes(dim=7, head_hidden=4, length=4, iterations=1)


@pytest.mark.parametrize("variant", CAM_VARIANTS)
def test_blstm_dropout_rates_are_the_released_ones(variant):
    """The released models: LSTM(512, 512, 2, 0.1) for audio_extract / video_extract and dropout=0 for Joint, one
    rate used between the LSTM layers and on [X ; S] (the authors' layer.LSTM wrapper)."""
    model = build_official(variant, CAMSizes(dim=8, head_hidden=4, length=6, iterations=1, lstm_layers=2,
                                             regions=4))
    blstms = {name: m for name, m in model.named_children() if name in ("audio_extract", "video_extract", "Joint")}
    assert "Joint" in blstms and (variant == "jca_tbiom23") == ("audio_extract" not in blstms)
    for name, m in blstms.items():
        want = 0.0 if name == "Joint" else 0.1
        assert m.rnn.dropout == want and m.dropout.p == want, name
