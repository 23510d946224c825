"""The fusion zoo: TCN, feature-major JCA, gates, cross-attention, spatial attention and their presets."""

from importlib import resources

import pytest
import torch
import yaml

from avaffect.models import create_model, get_entry, model_config
from avaffect.models.blocks.cross_attention import CrossAttention
from avaffect.models.blocks.gates import DCAGate, GRJCAGate, HGRJCAGates
from avaffect.models.blocks.jca import FeatureMajorJCA, RecursiveJCA, TimeMajorJCA
from avaffect.models.blocks.spatial_attention import AudioGuidedSpatialAttention
from avaffect.models.blocks.tcn import TCN
from avaffect.models.registry import yaml_keys

SIZES = [(2, 8, 5, 7, 2), (1, 12, 16, 4, 1), (3, 5, 3, 3, 2)]  # B, L, d_a, d_v, K
ZOO = ["ca", "jca", "dca", "grjca", "hgrjca", "hgrjca_abaw6", "rjca_abaw8", "grjca_abaw8", "hgrjca_abaw8", "rja_blstm"]
GATED = {"dca": 2, "grjca": 3, "hgrjca": 2, "hgrjca_abaw6": 2, "grjca_abaw8": 4, "hgrjca_abaw8": 3}


def _inputs(b, l, da, dv, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, l, dtype=torch.bool)
    mask[0, l // 2 + 1:] = False
    return torch.randn(b, l, da, generator=g), torch.randn(b, l, dv, generator=g), mask


def _assert_all_grads(module, skip=()):
    for name, p in module.named_parameters():
        if any(s in name for s in skip):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} receives no gradient"


def _params(name, l, k, **extra):
    params = {"num_outputs": k, "hidden": 8, "head_hidden": 6, "dropout": 0.0, **extra}
    if name != "ca":
        params["window_length"] = l
    if "abaw" in name:
        params["tcn_levels"] = 2
    return params


def _padding_invariant(fn, b, l, da, dv, n_valid):
    xa, xv, _ = _inputs(b, l, da, dv, seed=5)
    mask = torch.ones(b, l, dtype=torch.bool)
    mask[:, n_valid:] = False
    y1 = fn(xa, xv, mask)
    xa2, xv2 = xa.clone(), xv.clone()
    xa2[:, n_valid:] = 100.0
    xv2[:, n_valid:] = -50.0
    y2 = fn(xa2, xv2, mask)
    if isinstance(y1, tuple):
        for u, v in zip(y1, y2, strict=True):
            torch.testing.assert_close(u[mask], v[mask])
            assert (v[~mask] == 0).all()
    else:
        torch.testing.assert_close(y1[mask], y2[mask])


# ------------------------------------------------------------------------------------------------ blocks


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("b,l,da,dv,k", SIZES)
def test_tcn_shapes_gradients_and_padding(b, l, da, dv, k, causal):
    torch.manual_seed(0)
    tcn = TCN(da, dv, num_levels=3, kernel_size=3, causal=causal)
    x, _, mask = _inputs(b, l, da, dv)
    y = tcn(x, mask)
    assert y.shape == (b, l, dv)
    assert (y[~mask] == 0).all()
    y[mask].sum().backward()
    _assert_all_grads(tcn)
    assert (tcn.levels[0].residual is None) == (da == dv)
    _padding_invariant(lambda a, v, m: tcn(a, m), b, l, da, dv, max(1, l - 2))


def test_tcn_causal_ignores_the_future_and_centred_sees_it():
    torch.manual_seed(0)
    x = torch.randn(1, 20, 3)
    x2 = x.clone()
    x2[:, 12:] += 1.0
    causal = TCN(3, 4, num_levels=2, kernel_size=3, causal=True).eval()
    torch.testing.assert_close(causal(x)[:, :12], causal(x2)[:, :12])
    centred = TCN(3, 4, num_levels=2, kernel_size=3, causal=False).eval()
    assert not torch.allclose(centred(x)[:, 11], centred(x2)[:, 11])
    assert causal.receptive_field == 1 + 2 * 2 * 3


@pytest.mark.parametrize("joint_fc", [False, True])
@pytest.mark.parametrize("block_cls", [TimeMajorJCA, FeatureMajorJCA])
@pytest.mark.parametrize("b,l,da,dv,k", SIZES)
def test_jca_blocks_shapes_gradients_padding(block_cls, joint_fc, b, l, da, dv, k):
    torch.manual_seed(0)
    jca = block_cls(da, dv, l, joint_fc=joint_fc)
    xa, xv, mask = _inputs(b, l, da, dv)
    ya, yv = jca(xa, xv, mask)
    assert ya.shape == (b, l, da) and yv.shape == (b, l, dv)
    (ya[mask].sum() + yv[mask].pow(2).sum()).backward()
    _assert_all_grads(jca)
    _padding_invariant(jca.eval(), b, l, da, dv, max(1, l - 2))
    with pytest.raises(ValueError, match="built for windows"):
        jca(torch.randn(1, l + 1, da), torch.randn(1, l + 1, dv))


@pytest.mark.parametrize("time_norm", [True, False])
@pytest.mark.parametrize("joint_fc", [False, True])
def test_feature_major_jca_equations(joint_fc, time_norm):
    torch.manual_seed(2)
    b, l, da, dv = 2, 6, 3, 4
    jca = FeatureMajorJCA(da, dv, l, joint_fc=joint_fc, time_norm=time_norm)
    s = l**0.5 if time_norm else 1.0
    xa, xv = torch.randn(b, l, da), torch.randn(b, l, dv)
    ya, yv = jca(xa, xv)
    d = da + dv
    for i, (x, y) in enumerate([(xa, ya), (xv, yv)]):
        for n in range(b):
            X = x[n].T  # d_m x L
            J = torch.cat([xa[n].T, xv[n].T], dim=0)  # d x L
            if joint_fc:
                J = jca.joint_fc.weight @ J + jca.joint_fc.bias[:, None]
            C = torch.tanh(X.T @ jca.w_j[i] @ J / d**0.5)  # L x L
            assert C.shape == (l, l) and jca.w_c[i].shape == (l, l) and jca.w_h[i].shape == (l, l)
            H = torch.relu(X @ jca.w_c[i] @ C / s)  # d_m x L
            torch.testing.assert_close(y[n].T, H @ jca.w_h[i] + X)


def test_recursive_jca_orientations_and_blocks():
    for orientation, cls in [("time_major", TimeMajorJCA), ("feature_major", FeatureMajorJCA)]:
        r = RecursiveJCA(3, 4, 5, num_iterations=3, orientation=orientation, joint_fc=True)
        assert all(isinstance(b, cls) and b.joint_fc is not None for b in r.blocks)
        assert r.block_for(2) is r.blocks[1]
        its = r.iterates(torch.randn(2, 5, 3), torch.randn(2, 5, 4))
        assert len(its) == 4 and its[-1][0].shape == (2, 5, 3)
    shared = RecursiveJCA(3, 4, 5, num_iterations=3, share_weights=True, orientation="feature_major")
    assert shared.block_for(3) is shared.blocks[0]
    with pytest.raises(IndexError):
        shared.block_for(4)
    with pytest.raises(ValueError, match="orientation"):
        RecursiveJCA(3, 4, 5, orientation="sideways")


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("b,l,da,dv,k", SIZES)
def test_cross_attention_shapes_gradients_padding(residual, b, l, da, dv, k):
    torch.manual_seed(0)
    ca = CrossAttention(da, dv, residual)
    xa, xv, mask = _inputs(b, l, da, dv)
    ya, yv = ca(xa, xv, mask)
    assert ya.shape == (b, l, da) and yv.shape == (b, l, dv)
    (ya[mask].pow(2).sum() + yv[mask].pow(2).sum()).backward()
    _assert_all_grads(ca)
    _padding_invariant(ca, b, l, da, dv, max(1, l - 2))


def test_cross_attention_equations():
    torch.manual_seed(3)
    ca = CrossAttention(3, 4)
    xa, xv = torch.randn(1, 5, 3), torch.randn(1, 5, 4)
    ya, yv = ca(xa, xv)
    C = xa[0] @ ca.w @ xv[0].T / 7**0.5
    torch.testing.assert_close(ya[0], torch.softmax(C, dim=0).T @ xa[0])
    torch.testing.assert_close(yv[0], torch.softmax(C, dim=1) @ xv[0])


@pytest.mark.parametrize("b,l,da,dv,k", SIZES)
def test_spatial_attention(b, l, da, dv, k):
    torch.manual_seed(0)
    regions = 49 if b == 1 else 4
    sa = AudioGuidedSpatialAttention(da, dv, d_out=6, attn_dim=5, regions=regions)
    xa, _, mask = _inputs(b, l, da, dv)
    video = torch.randn(b, l, regions * dv)
    y = sa(xa, video, mask)
    assert y.shape == (b, l, 6) and (y[~mask] == 0).all()
    assert sa.last_attention.shape == (b, l, regions)
    torch.testing.assert_close(sa.last_attention.sum(-1), torch.ones(b, l))
    y[mask].pow(2).sum().backward()
    _assert_all_grads(sa)
    # memory order (R, C): the pooled vector is a convex combination of the rows of video.view(R, C)
    maps = video.view(b, l, regions, dv)
    pooled = (sa.last_attention[..., None] * maps).sum(2)
    torch.testing.assert_close(y[mask], sa.w_f(pooled)[mask])
    with pytest.raises(ValueError, match="visual values"):
        sa(xa, torch.randn(b, l, regions * dv + 1))


# ------------------------------------------------------------------------------------------------- gates


def test_dca_gate_equations():
    torch.manual_seed(4)
    b, l, da, dv = 2, 5, 3, 4
    gate = DCAGate(da, dv, temperature=0.1)
    x0 = (torch.randn(b, l, da), torch.randn(b, l, dv))
    xm = (torch.randn(b, l, da), torch.randn(b, l, dv))
    ya, yv = gate(x0, xm)
    for i, (y, name) in enumerate([(ya, "audio"), (yv, "video")]):
        fc = gate.gates[i].fc
        G = torch.softmax((xm[i] @ fc.weight.T + fc.bias) / 0.1, dim=-1)
        torch.testing.assert_close(gate.last_gate_weights[name], G)
        torch.testing.assert_close(y, torch.relu(x0[i] * G[..., :1] + xm[i] * G[..., 1:]))


def test_grjca_gate_equations_and_shapes():
    torch.manual_seed(5)
    b, l, da, dv, m = 2, 5, 3, 4, 3
    its = [(torch.randn(b, l, da), torch.randn(b, l, dv)) for _ in range(m + 1)]
    gate = GRJCAGate(da, dv, m, temperature=0.5)
    ya, _ = gate(its)
    G = gate.last_gate_weights["audio"]
    assert G.shape == (b, l, m + 1)
    torch.testing.assert_close(G.sum(-1), torch.ones(b, l))
    fc = gate.gates[0].fc
    torch.testing.assert_close(G, torch.softmax(fc(its[-1][0]) / 0.5, dim=-1))
    torch.testing.assert_close(ya, torch.relu(sum(its[t][0] * G[..., t:t + 1] for t in range(m + 1))))
    with pytest.raises(ValueError, match="iterates"):
        gate(its[:-1])


@pytest.mark.parametrize("m", [1, 2, 3])
def test_hgrjca_gates(m):
    torch.manual_seed(6)
    b, l, da, dv = 2, 6, 3, 5
    rjca = RecursiveJCA(da, dv, l, num_iterations=m)
    xa, xv, mask = _inputs(b, l, da, dv)
    gates = HGRJCAGates(da, dv, m)
    assert gates.recursion_input == "ungated"  # the printed form is the default
    ya, yv = gates(rjca, xa, xv, mask)
    assert ya.shape == (b, l, da) and yv.shape == (b, l, dv)
    w = gates.last_gate_weights
    assert set(w) == {f"{mod}/iter{t}" for mod in ("audio", "video") for t in range(1, m + 1)} | {
        "audio/stage", "video/stage"}
    for key, g in w.items():
        assert g.shape == (b, l, m if key.endswith("stage") else 2), key
        torch.testing.assert_close(g.sum(-1), torch.ones(b, l))
    # iteration 1 by hand: X_g^(1) = ReLU(X^(0) G_0 + X_att^(1) G_1)
    att_a, _ = rjca.block_for(1)(xa, xv, mask)
    g1 = w["audio/iter1"]
    xg1 = torch.relu(xa * g1[..., :1] + att_a * g1[..., 1:]) * mask[..., None]
    if m == 1:
        torch.testing.assert_close(ya, xg1)
    (ya[mask].sum() + yv[mask].sum()).backward()
    _assert_all_grads(gates)
    _assert_all_grads(rjca)
    if m > 1:
        gated = HGRJCAGates(da, dv, m, recursion_input="gated")
        gated.load_state_dict(gates.state_dict())
        assert not torch.allclose(gated(rjca, xa, xv, mask)[0], ya)
    with pytest.raises(ValueError, match="recursion_input"):
        HGRJCAGates(da, dv, m, recursion_input="sometimes")


# ----------------------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("b,l,da,dv,k", SIZES)
@pytest.mark.parametrize("name", ZOO)
def test_zoo_preset_shapes_and_gradients(name, b, l, da, dv, k):
    # seed 1: at these toy sizes an unlucky init can leave every ReLU of one block dead (seen for seed 0)
    torch.manual_seed(1)
    model = create_model(name, da, dv, _params(name, l, k))
    audio, video, mask = _inputs(b, l, da, dv)
    y = model(audio, video, mask)
    assert y.shape == (b, l, k)
    assert (getattr(model, "window_length", None) == l) == (name != "ca")
    y[mask].sum().backward()
    _assert_all_grads(model)
    weights = model.last_gate_weights
    assert bool(weights) == (name in GATED)
    for key, g in weights.items():
        assert g.shape[:2] == (b, l) and g.dim() == 3, key
        torch.testing.assert_close(g.sum(-1), torch.ones(b, l))
    if name in GATED:
        assert max(g.shape[-1] for g in weights.values()) == GATED[name]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_padding_does_not_change_valid_outputs(name):
    torch.manual_seed(1)
    l = 10
    model = create_model(name, 4, 6, _params(name, l, 2)).eval()
    _padding_invariant(model, 2, l, 4, 6, 7)


@pytest.mark.parametrize("name,extra", [
    ("jca", {"encoder": "tcn", "orientation": "feature_major", "joint_fc": True}),
    ("ca", {"encoder": "linear", "residual": True}),
    ("dca", {"encoder": "tcn", "tcn_causal": True, "num_iterations": 3, "share_weights": True}),
    ("hgrjca", {"recursion_input": "ungated", "orientation": "feature_major"}),
    ("hgrjca_abaw8", {"num_iterations": 1}),
    ("grjca_abaw8", {"num_iterations": 4}),
    ("rja_blstm", {"use_u_blstm": False, "num_iterations": 1}),
    ("rja_blstm", {"use_j_blstm": False, "num_iterations": 4, "separate_heads": False}),
])
def test_zoo_variants(name, extra):
    torch.manual_seed(2)
    b, l, da, dv, k = 2, 6, 5, 3, 2
    model = create_model(name, da, dv, _params(name, l, k, **extra))
    audio, video, mask = _inputs(b, l, da, dv)
    y = model(audio, video, mask)
    assert y.shape == (b, l, k)
    y[mask].sum().backward()
    _assert_all_grads(model)


def test_rja_blstm_spatial_attention():
    torch.manual_seed(3)
    b, l, da, c = 2, 6, 5, 3
    model = create_model("rja_blstm", da, 49 * c, _params("rja_blstm", l, 2, spatial_attention=True,
                                                            spatial_attn_dim=4))
    audio, video, mask = _inputs(b, l, da, 49 * c)
    y = model(audio, video, mask)
    assert y.shape == (b, l, 2) and model.spatial.last_attention.shape == (b, l, 49)
    y[mask].sum().backward()
    _assert_all_grads(model)
    _padding_invariant(model.eval(), b, l, da, 49 * c, 4)
    with pytest.raises(ValueError, match="multiple"):
        create_model("rja_blstm", da, 50, {"spatial_attention": True})


def test_abaw_defaults_and_limits():
    from avaffect.errors import ConfigError

    for name in ("grjca_abaw8", "hgrjca_abaw8"):
        cfg = model_config(name)
        assert (cfg.num_outputs, cfg.orientation, cfg.joint_fc, cfg.encoder, cfg.activation) == (
            1, "feature_major", True, "tcn", "tanh")
        with pytest.raises(ConfigError):
            model_config(name, {"num_iterations": 5})
        with pytest.raises(ConfigError):
            model_config(name, {"encoder": "blstm"})
    assert model_config("hgrjca_abaw6").orientation == "time_major"
    assert model_config("rja_blstm").num_iterations == 2


@pytest.mark.parametrize("name", ZOO)
def test_model_yaml_validates_and_builds(name):
    text = resources.files("avaffect").joinpath("configs", "models", f"{name}.yaml").read_text()
    params = yaml.safe_load(text)
    cfg = model_config(name, params)
    assert cfg == get_entry(name).config_cls(), "the YAML holds the preset's defaults"
    assert list(params) == yaml_keys(name), "the YAML lists every field of the preset, in order"
    model = create_model(name, 6, 49 * 2, params)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", ["dca", "grjca", "hgrjca", "grjca_abaw8", "hgrjca_abaw8", "hgrjca_abaw6"])
def test_gate_bias_option_gives_the_printed_equations(name):
    """``gate_bias: false``: every gate is ``softmax(X W_g / T)`` with no bias, as the papers print it."""
    with_bias = create_model(name, 6, 8, {"window_length": 5, "gate_bias": True})
    without = create_model(name, 6, 8, {"window_length": 5, "gate_bias": False})
    gate_fcs = [m for n, m in without.named_modules() if n.endswith(".fc") and "gate" in n]
    assert gate_fcs and all(m.bias is None for m in gate_fcs)
    assert all(m.bias is not None for n, m in with_bias.named_modules() if n.endswith(".fc") and "gate" in n)
    audio, video, mask = torch.randn(2, 5, 6), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    assert without(audio, video, mask).shape[:2] == (2, 5)


def test_fusion_dropout_acts_on_the_attended_features_only_in_training():
    model = create_model("grjca", 6, 8, {"window_length": 5, "fusion_dropout": 0.5, "dropout": 0.0})
    audio, video, mask = torch.randn(2, 5, 6), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    seen = []
    model.head.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    model.train()
    model(audio, video, mask)
    model.eval()
    model(audio, video, mask)
    dropped = (seen[0] == 0) & (seen[1] != 0)
    assert 0.2 < dropped.float().mean().item() < 0.8  # about half the attended features zeroed in training
    assert torch.allclose(seen[0][~dropped & (seen[1] != 0)], 2 * seen[1][~dropped & (seen[1] != 0)], atol=1e-5)


def test_head_dropout_is_the_heads_rate_apart_from_the_encoders():
    model = create_model("grjca", 6, 8, {"window_length": 5, "dropout": 0.1, "head_dropout": 0.8, "encoder": "tcn"})
    head_rates = {m.p for m in model.head.modules() if isinstance(m, torch.nn.Dropout)}
    encoder_rates = {m.p for m in model.audio_encoder.modules() if isinstance(m, torch.nn.Dropout)}
    assert head_rates == {0.8} and encoder_rates == {0.1}
    same = create_model("grjca", 6, 8, {"window_length": 5, "dropout": 0.2})
    assert {m.p for m in same.head.modules() if isinstance(m, torch.nn.Dropout)} == {0.2}
