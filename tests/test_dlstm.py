"""DLSTM-ATT: DLSTM, embedding attention, decision fusions, presets and the pre-train → freeze → fuse recipe."""

from importlib import resources

import pytest
import torch
import yaml

from avaffect.errors import ConfigError
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.models import create_model, list_models, model_config
from avaffect.models.blocks.dlstm import DLSTM, BimodalAttentionFusion, EmbeddingAttention, HLBFusion, OLBFusion
from avaffect.models.registry import yaml_keys
from avaffect.training import recipes

SIZES = [(2, 8, 5, 7, 2), (1, 12, 16, 4, 1), (3, 5, 3, 3, 2)]  # B, L, d_a, d_v, K
SMALL = {"audio_hidden": 4, "video_hidden": 6, "joint_hidden": 5, "attention_window": 3, "dropout": 0.0,
         "bypass_epochs": 2}
PRESETS = [("dlstm", {"modality": "audio"}), ("dlstm", {"modality": "video"}), ("dlstm", {"modality": "joint"}),
           ("dlstm_att", {}), ("dlstm_olb", {}), ("dlstm_hlb", {}), ("dlstm_early_late", {}),
           ("dlstm_att", {"embedding_attention": False}), ("dlstm_early_late", {"fusion": "olb"})]
NAMES = ["dlstm", "dlstm_att", "dlstm_olb", "dlstm_hlb", "dlstm_early_late"]


def _inputs(b, l, da, dv, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, l, dtype=torch.bool)
    mask[0, l // 2:] = False  # padding at the end of a window
    return torch.randn(b, l, da, generator=g), torch.randn(b, l, dv, generator=g), mask


def _explicit_attention(queries, e, mask, w_a, n):
    """Reference: for every (b, t) score the valid embeddings of the window one by one."""
    b, l, d = e.shape
    r = (n - 1) // 2
    ctx, weights = torch.zeros(b, l, d), torch.zeros(b, l, n)
    for i in range(b):
        for t in range(l):
            pos = [p for p in range(t - r, t + r + 1) if 0 <= p < l and mask[i, p]]
            if not pos:
                continue
            s = torch.stack([queries[i, t] @ w_a @ e[i, p] for p in pos])
            a = torch.softmax(s, dim=0)
            ctx[i, t] = sum(a[j] * e[i, p] for j, p in enumerate(pos))
            for j, p in enumerate(pos):
                weights[i, t, p - t + r] = a[j]
    return ctx, weights


@pytest.mark.parametrize("b,l,da,dv,k", SIZES)
@pytest.mark.parametrize("name,extra", PRESETS)
def test_preset_shapes_and_gradients(name, extra, b, l, da, dv, k):
    torch.manual_seed(0)
    model = create_model(name, da, dv, {**SMALL, **extra, "num_outputs": k})
    model.set_epoch(SMALL["bypass_epochs"])  # attention on
    audio, video, mask = _inputs(b, l, da, dv)
    y = model(audio, video, mask)
    assert y.shape == (b, l, k)
    assert (y[~mask] == 0).all()
    y[mask].pow(2).sum().backward()
    hlb = getattr(getattr(model, "fusion", None), "linear", None) is not None
    for pname, p in model.named_parameters():
        if hlb and ".out." in pname:  # HLB reads the hidden states; the output layers serve pre-training
            assert p.grad is None
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} receives no gradient"


@pytest.mark.parametrize("k", [1, 2])
def test_dlstm_block_outputs(k):
    net = DLSTM(5, 7, k, num_layers=2, dropout=0.5)
    y, h = net(torch.randn(3, 6, 5), torch.ones(3, 6, dtype=torch.bool))
    assert y.shape == (3, 6, k) and h.shape == (3, 6, 7)
    torch.testing.assert_close(y, net.out(h))
    assert not net.lstm.bidirectional and net.lstm.num_layers == 2 and net.lstm.dropout == 0.5
    with pytest.raises(ValueError, match="odd"):
        EmbeddingAttention(4, 4, window=4)


def test_embedding_attention_matches_explicit_loop():
    torch.manual_seed(3)
    b, l, h, d, n = 2, 7, 3, 4, 5
    att = EmbeddingAttention(h, d, window=n)
    q, e, mask = torch.randn(b, l, h), torch.randn(b, l, d), torch.ones(b, l, dtype=torch.bool)
    mask[1, 4:] = False
    ctx, a = att(q, e, mask)
    ref_ctx, ref_a = _explicit_attention(q, e, mask, att.key.weight, n)
    torch.testing.assert_close(ctx, ref_ctx)
    torch.testing.assert_close(a, ref_a)
    torch.testing.assert_close(a[mask].sum(-1), torch.ones(int(mask.sum())))
    assert a[0, 0, :2].eq(0).all() and a[0, -1, -2:].eq(0).all()  # outside the recording
    assert a[1, 3, 3:].eq(0).all()  # padded steps 4, 5


def test_attending_dlstm_equals_explicit_recursion():
    """The step loop feeds c_t = attention(h_{t-1}) to the LSTM: replaying the contexts it must have used
    (from its own h, with h_{-1} = 0) through the whole-sequence LSTM reproduces its outputs."""
    torch.manual_seed(4)
    b, l, d, h, n = 2, 9, 4, 5, 3
    net = DLSTM(d, h, 2, dropout=0.0, attention=EmbeddingAttention(h, d, window=n)).eval()
    e, mask = torch.randn(b, l, d), torch.ones(b, l, dtype=torch.bool)
    mask[0, 6:] = False
    with torch.no_grad():
        y, hs = net(e, mask)
        queries = torch.cat([torch.zeros(b, 1, h), hs[:, :-1]], dim=1)
        ctx, weights = _explicit_attention(queries, e * mask[..., None], mask, net.attention.key.weight, n)
        h_ref, _ = net.lstm(ctx)
    torch.testing.assert_close(hs[mask], h_ref[mask])
    torch.testing.assert_close(y[mask], net.out(h_ref)[mask])
    torch.testing.assert_close(net.attention.last_weights, weights)


def test_bypass_follows_epoch():
    torch.manual_seed(5)
    model = create_model("dlstm_att", 3, 4, {**SMALL, "bypass_epochs": 2})
    video_dlstm = model.branches["video"]
    att = video_dlstm.attention
    assert not att.bypassed  # inference (no epoch given) always attends
    x, mask = torch.randn(2, 6, 4), torch.ones(2, 6, dtype=torch.bool)
    plain = DLSTM(4, 6, 2)
    plain.load_state_dict({k: v for k, v in video_dlstm.state_dict().items() if not k.startswith("attention.")})
    for epoch, bypassed in [(0, True), (1, True), (2, False), (7, False)]:
        model.set_epoch(epoch)
        assert att.bypassed is bypassed and bool(video_dlstm.state_dict()["attention.bypass"]) is bypassed
        same = torch.allclose(video_dlstm(x, mask)[0], plain(x, mask)[0])
        assert same is bypassed  # bypassed: c_t = e_t, i.e. the plain DLSTM on the embeddings


def test_bimodal_attention_fusion_equations():
    torch.manual_seed(6)
    b, l, k, sizes = 2, 4, 2, [3, 5, 2]
    fusion = BimodalAttentionFusion(sizes, k)
    ys = [torch.randn(b, l, k) for _ in sizes]
    hs = [torch.randn(b, l, s) for s in sizes]
    z = fusion(ys, hs)
    a = fusion.last_weights
    assert fusion.weight.shape == (k, sum(sizes), len(sizes))  # W_m is (c n) x n per output dimension
    torch.testing.assert_close(a.sum(-1), torch.ones(b, l, k))
    for m in range(k):
        c = torch.cat(hs, dim=-1)
        a_m = torch.softmax(c @ fusion.weight[m], dim=-1)
        torch.testing.assert_close(a[..., m, :], a_m)
        torch.testing.assert_close(z[..., m], sum(a_m[..., i] * ys[i][..., m] for i in range(len(sizes))))


def test_linear_baselines_equations():
    torch.manual_seed(7)
    ys = [torch.randn(2, 3, 2) for _ in range(2)]
    hs = [torch.randn(2, 3, 4), torch.randn(2, 3, 6)]
    olb = OLBFusion(2, 2)
    torch.testing.assert_close(olb(ys, hs), (ys[0] + ys[1]) / 2)  # starts at the average
    with torch.no_grad():
        olb.weight.copy_(torch.tensor([[0.2, 0.7], [1.5, -1.0]]))
    z = olb(ys, hs)
    torch.testing.assert_close(z[..., 0], 0.2 * ys[0][..., 0] + 0.7 * ys[1][..., 0])
    torch.testing.assert_close(z[..., 1], 1.5 * ys[0][..., 1] - 1.0 * ys[1][..., 1])
    hlb = HLBFusion([4, 6], 2)
    torch.testing.assert_close(hlb(ys, hs), torch.cat(hs, -1) @ hlb.linear.weight.T)


@pytest.mark.parametrize("name", NAMES)
def test_padded_inputs_do_not_change_valid_outputs(name):
    torch.manual_seed(8)
    l = 10
    model = create_model(name, 4, 6, {**SMALL, "attention_window": 5}).eval()
    model.set_epoch(5)
    audio, video, mask = _inputs(2, l, 4, 6, seed=1)
    mask[1, 7:] = False
    y1 = model(audio, video, mask)
    audio2, video2 = audio.clone(), video.clone()
    audio2[~mask] = 100.0
    video2[~mask] = -100.0
    torch.testing.assert_close(y1[mask], model(audio2, video2, mask)[mask])


def _batches(n=2, b=2, l=12, da=3, dv=4, k=2, seed=9):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        audio, video, mask = torch.randn(b, l, da, generator=g), torch.randn(b, l, dv, generator=g), None
        mask = torch.ones(b, l, dtype=torch.bool)
        mask[-1, -3:] = False
        labels = torch.tanh(audio[..., :k] + video[..., :k])
        out.append({"audio": audio, "video": video, "mask": mask, "labels": labels})
    return out


def _snapshot(params):
    return [p.detach().clone() for p in params]


def test_freezing_keeps_unimodal_weights_in_a_fusion_step():
    torch.manual_seed(10)
    model = create_model("dlstm_early_late", 3, 4, {**SMALL, "dropout": 0.5})
    recipes.freeze_unimodal(model)
    uni, fus = recipes.unimodal_parameters(model), recipes.fusion_parameters(model)
    assert uni and fus and not any(p.requires_grad for p in uni) and all(p.requires_grad for p in fus)
    before_uni, before_fus = _snapshot(uni), _snapshot(fus)
    bypass = model.branches["video"].attention.bypassed
    recipes.train_fusion(model, _batches(n=1), epochs=1, lr=0.05, weight_decay=0.01)
    assert all(torch.equal(a, p) for a, p in zip(before_uni, uni, strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(before_fus, fus, strict=True))
    model.train()
    assert model.training and not any(m.training for m in model.branches.modules())  # no dropout when frozen
    model.set_epoch(0)
    assert model.branches["video"].attention.bypassed is bypass  # a frozen branch runs as it was trained


def test_pretrain_then_fuse_loop_on_tensors():
    torch.manual_seed(11)
    model = create_model("dlstm_att", 3, 4, SMALL)
    uni, fus = recipes.unimodal_parameters(model), recipes.fusion_parameters(model)
    init_uni, init_fus = _snapshot(uni), _snapshot(fus)
    stage1 = {}

    def spy(*args, **kwargs):
        stage1["uni"] = _snapshot(uni)
        return original(*args, **kwargs)

    original, recipes.train_fusion = recipes.train_fusion, spy
    try:
        history = recipes.pretrain_then_fuse_loop(model, _batches(), pretrain_epochs=3, fusion_epochs=2, lr=0.02)
    finally:
        recipes.train_fusion = original
    assert set(history) == {"audio", "video", "fusion"} and len(history["video"]) == 3 and len(history["fusion"]) == 2
    assert all(torch.isfinite(torch.tensor(v)).all() for v in history.values())
    assert all(not torch.equal(a, b) for a, b in zip(init_uni, stage1["uni"], strict=True))  # stage 1 trains
    assert all(torch.equal(a, b) for a, b in zip(stage1["uni"], uni, strict=True))  # stage 2 does not
    assert any(not torch.equal(a, b) for a, b in zip(init_fus, fus, strict=True))
    assert not model.branches["video"].attention.bypassed  # pre-trained past the bypass epochs


def test_run_level_driver_wires_stages(tmp_path, monkeypatch):
    """pretrain_then_fuse with run.train replaced by a stand-in that builds the run's model and saves it:
    stage 1 runs the `dlstm` preset per branch, stage 2 starts from their weights, frozen."""
    from avaffect.config import make_config
    from avaffect.models.checkpoint import save_checkpoint
    from avaffect.training import run

    calls, built = [], {}

    def fake_train(cfg, run_dir, recordings=None, progress=True, init=None):
        model = run.build_model(cfg, 3, 4)
        if init is not None:
            init(model)
        calls.append((cfg.model.name, dict(cfg.model.params), cfg.training.max_epochs))
        if cfg.model.name == "dlstm":
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_()
        built[str(run_dir)] = model
        spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats"}, video_extractor={"name": "face_hog"},
                                 window=cfg.training.window, hop=cfg.training.hop, fps=30.0)
        path = save_checkpoint(run_dir / "model.safetensors", model, spec)
        return run.RunResult(run_dir, {}, {}, path)

    monkeypatch.setattr(run, "train", fake_train)
    cfg = make_config({"model": {"name": "dlstm_early_late", "params": SMALL},
                       "training": {"max_epochs": 4, "targets": ["arousal"]}})  # num_outputs follows targets
    res = recipes.pretrain_then_fuse(cfg, tmp_path, recordings=[], pretrain_training={"max_epochs": 2})
    assert [(c[0], c[1].get("modality"), c[2]) for c in calls] == [
        ("dlstm", "audio", 2), ("dlstm", "video", 2), ("dlstm", "joint", 2), ("dlstm_early_late", None, 4)]
    assert calls[-1][1]["freeze_unimodal"] is True and "hidden" not in calls[0][1]
    fusion = built[str(tmp_path)].net
    assert fusion.branches_frozen and set(res.pretrain) == {"audio", "video", "joint"}
    for b in ("audio", "video", "joint"):
        pre = built[str(tmp_path / "pretrain" / b)].net.dlstm.state_dict()
        for k, v in fusion.branches[b].state_dict().items():
            torch.testing.assert_close(v, pre[k])
    with pytest.raises(ConfigError, match="DLSTM fusion preset"):
        recipes.stage_configs(make_config({"model": {"name": "concat"}}))

    # protocol.repetitions: stage 2 N times (seeds 0, 1, 2) on the same stage-1 DLSTMs, scores averaged
    calls.clear()

    def scored_train(cfg, run_dir, recordings=None, progress=True, init=None):
        res = fake_train(cfg, run_dir, recordings, progress, init)
        score = 0.1 * (1 + cfg.training.seed)
        return run.RunResult(run_dir, {"ccc_arousal": score}, {}, res.checkpoint)

    monkeypatch.setattr(run, "train", scored_train)
    reps_cfg = make_config(cfg.model_dump(mode="json"), {"protocol": {"repetitions": 3}})
    res = recipes.pretrain_then_fuse(reps_cfg, tmp_path / "reps", recordings=[])
    assert [c[0] for c in calls].count("dlstm") == 3 and [c[0] for c in calls].count("dlstm_early_late") == 3
    assert len(res.repetitions) == 3 and res.fusion.metrics["ccc_arousal"] == pytest.approx(0.2)
    assert (tmp_path / "reps" / "repetitions" / "summary.md").is_file()
    for i in range(3):
        frozen = built[str(tmp_path / "reps" / "repetitions" / f"rep{i}")].net
        for b in ("audio", "video", "joint"):
            pre = built[str(tmp_path / "reps" / "pretrain" / b)].net.dlstm.state_dict()
            for k, v in frozen.branches[b].state_dict().items():
                torch.testing.assert_close(v, pre[k])


@pytest.mark.parametrize("name", NAMES)
def test_yaml_validates_and_builds(name):
    assert name in list_models()
    text = resources.files("avaffect").joinpath("configs", "models", f"{name}.yaml").read_text()
    params = yaml.safe_load(text)
    cfg = model_config(name, params)
    assert set(params) == set(cfg.model_fields_set) and list(params) == yaml_keys(name)
    model = create_model(name, 3, 5, {**params, **SMALL})
    audio, video, mask = _inputs(1, 4, 3, 5)
    assert model(audio, video, mask).shape == (1, 4, params["num_outputs"])


def test_config_validation():
    assert model_config("dlstm_olb").fusion == "olb" and model_config("dlstm_early_late").early_late
    with pytest.raises(ConfigError, match="odd"):
        model_config("dlstm_att", {"attention_window": 12})
    with pytest.raises(ConfigError, match="not used by the DLSTM presets"):
        model_config("dlstm_att", {"hidden": 64})
    with pytest.raises(ConfigError, match="bogus"):
        model_config("dlstm_att", {"bogus": 1})


def test_olb_shared_weights_is_one_vector_for_every_dimension():
    from avaffect.models.blocks.dlstm import OLBFusion

    shared, own = OLBFusion(3, 2, shared=True), OLBFusion(3, 2)
    assert tuple(shared.weight.shape) == (1, 3) and tuple(own.weight.shape) == (2, 3)
    with torch.no_grad():
        shared.weight.copy_(torch.tensor([[0.2, 0.3, 0.5]]))
    ys = [torch.randn(2, 4, 2) for _ in range(3)]
    z = shared(ys, [])
    expected = 0.2 * ys[0] + 0.3 * ys[1] + 0.5 * ys[2]  # the same W for valence and arousal
    torch.testing.assert_close(z, expected)
    model = create_model("dlstm_olb", 3, 5, {**SMALL, "olb_shared_weights": True})
    assert tuple(model.fusion.weight.shape) == (1, 2)


@pytest.mark.parametrize("attention", [False, True])
def test_truncated_bptt_carries_the_state_and_cuts_the_gradient(attention):
    from avaffect.models.blocks.dlstm import DLSTM, EmbeddingAttention

    torch.manual_seed(0)
    att = EmbeddingAttention(6, 4, 3, bypass_epochs=0) if attention else None
    full = DLSTM(4, 6, 2, num_layers=2, dropout=0.0, attention=att)
    cut = DLSTM(4, 6, 2, num_layers=2, dropout=0.0, attention=att, tbptt_steps=5)
    cut.load_state_dict(full.state_dict())
    for m in (full, cut):
        m.train()
        m.set_epoch(1)
    x = torch.randn(2, 12, 4, requires_grad=True)
    y_full, _ = full(x)
    y_cut, _ = cut(x)
    torch.testing.assert_close(y_cut, y_full)  # the state is carried: the same forward values
    (g_cut,) = torch.autograd.grad(y_cut[:, 11].sum(), x)
    (g_full,) = torch.autograd.grad(y_full[:, 11].sum(), x)
    # step 11 sees back to the chunk start (step 10) only — with the attention also the embeddings step 10's
    # window reads directly (steps 9..11: half-width 1), not through the recursion
    first = 9 if attention else 10
    assert g_full[:, :first].abs().sum() > 0 and g_cut[:, :first].abs().sum() == 0
    assert g_cut[:, first:].abs().sum() > 0
    cut.eval()
    assert cut.tbptt_steps == 5 and torch.allclose(cut(x)[0], full.eval()(x)[0])
