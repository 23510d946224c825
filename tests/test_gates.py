"""The gates as the papers print them (ABAW6 Eqs. 10-15, ABAW8 Eqs. 9-20), their initialisation, the oracle control,
the gate measurements (``evaluation/gates.py``) and the synthetic plan's per-modality weak segments."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from avaffect.cli.main import main
from avaffect.config import load_config
from avaffect.data.synth import WEAK_CONFLICTING, WEAK_NOISY, WEAK_NONE, SynthConfig
from avaffect.data.synth.plan import _Plan
from avaffect.evaluation.gates import auroc, collapsed_fraction, paired_difference, ridge_probe, separation
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.models import create_model
from avaffect.models.blocks.gates import DCAGate, GRJCAGate, HGRJCAGates, SoftmaxGate
from avaffect.models.blocks.jca import RecursiveJCA
from avaffect.models.checkpoint import FORMAT, load_checkpoint, read_checkpoint_meta, save_checkpoint
from avaffect.models.safetensors_io import write_tagged
from avaffect.models.wrapper import AVRegressor
from avaffect.shipped import paper_config_names

B, L, DA, DV = 2, 8, 5, 7


def _inputs(d_a: int, d_v: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, L - 2:] = False
    return torch.randn(B, L, d_a, generator=g), torch.randn(B, L, d_v, generator=g), mask


def _softmax_gate(gate: SoftmaxGate, x: torch.Tensor) -> torch.Tensor:
    """``softmax(X W_g [+ b] / T)`` written out from the layer's weights."""
    logits = x @ gate.fc.weight.T + (gate.fc.bias if gate.fc.bias is not None else 0.0)
    e = torch.exp(logits / gate.temperature - (logits / gate.temperature).max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def hgrjca_by_hand(rjca: RecursiveJCA, gates: HGRJCAGates, xa, xv, mask, recursion: str):
    """HGRJCA written out step by step from the equations, independently of ``HGRJCAGates.forward``::

        printed (ABAW6 Eqs. 8-15, ABAW8 Eqs. 7-8, 14-20), recursion "ungated":
            X_att^(t)   = JCA_t(X_att^(t-1))                 the plain RJCA recursion, X_att^(0) = X
            X_att,g^(t) = ReLU(X_att^(t-1) ⊗ G_0^(t) + X_att^(t) ⊗ G_1^(t)),  G^(t) = softmax(X_att^(t) W^(t) / T)
        variant "gated": iteration t+1 consumes X_att,g^(t), which is also its gate's first candidate
        stage:  X^(f) = ReLU(sum_t X_att,g^(t) ⊗ G_t^(f)),  G^(f) = softmax(X_att,g^(M) W_f / T)  (1 when M = 1)
    """
    m = mask[..., None].float()
    prev = (xa, xv)
    gated_per_iter = []
    for t in range(1, rjca.num_iterations + 1):
        att = rjca.block_for(t)(*prev, mask)
        xg = []
        for i in range(2):
            g = _softmax_gate(gates.iteration_gates[t - 1][i], att[i])
            xg.append(torch.relu(prev[i] * g[..., 0:1] + att[i] * g[..., 1:2]) * m)
        gated_per_iter.append(xg)
        prev = att if recursion == "ungated" else tuple(xg)
    outs = []
    for i in range(2):
        if gates.stage_gates is None:
            outs.append(torch.relu(gated_per_iter[0][i]) * m)
            continue
        g = _softmax_gate(gates.stage_gates[i], gated_per_iter[-1][i])
        outs.append(torch.relu(sum(xg[i] * g[..., t:t + 1] for t, xg in enumerate(gated_per_iter))) * m)
    return outs


@pytest.mark.parametrize("recursion", ["ungated", "gated"])
@pytest.mark.parametrize("orientation", ["time_major", "feature_major"])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_hgrjca_matches_the_equations_by_hand(recursion, orientation, m):
    torch.manual_seed(3)
    rjca = RecursiveJCA(DA, DV, L, num_iterations=m, orientation=orientation)
    gates = HGRJCAGates(DA, DV, m, temperature=0.5, recursion_input=recursion)
    xa, xv, mask = _inputs(DA, DV)
    ya, yv = gates(rjca, xa, xv, mask)
    ha, hv = hgrjca_by_hand(rjca, gates, xa, xv, mask, recursion)
    torch.testing.assert_close(ya, ha)
    torch.testing.assert_close(yv, hv)
    if recursion == "ungated" and m > 1:
        # the printed form leaves the RJCA recursion untouched: iteration t's gate weighs RJCA's own iterates
        its = rjca.iterates(xa, xv, mask)
        got = _iteration_output(gates, rjca, xa, xv, mask, m)
        g = gates.last_gate_weights[f"audio/iter{m}"]
        expected = torch.relu(its[m - 1][0] * g[..., :1] + its[m][0] * g[..., 1:]) * mask[..., None]
        torch.testing.assert_close(got, expected)


def _iteration_output(gates, rjca, xa, xv, mask, t):
    """X_att,g^(t) of the audio side, read from the module's stage-gate input at M = t (a forward hook)."""
    seen = []
    gate = gates.stage_gates[0] if gates.stage_gates is not None else None
    if gate is None or t != gates.num_iterations:
        raise AssertionError("use t = M > 1")
    hook = gate.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    gates(rjca, xa, xv, mask)
    hook.remove()
    return seen[0]


HGRJCA_PAPER_CONFIGS = [n for n in paper_config_names()
                        if load_config(n).model.name.startswith("hgrjca") and not n.endswith("gated_recursion")]
GATED_PAPER_CONFIGS = [n for n in paper_config_names()
                       if load_config(n).model_params().get("gate_init") is not None]


def test_the_lists_of_paper_configs_are_what_the_issue_names():
    assert len(HGRJCA_PAPER_CONFIGS) == 16  # abaw8 hgrjca m1-m4, table1, table3, e2e (x2 targets); abaw6 two rows
    assert {"hgrjca_abaw6/table1_grjca", "hgrjca_abaw6/e2e_table1_grjca", "abaw8/table3_grjca_valence"} <= set(
        HGRJCA_PAPER_CONFIGS)
    assert set(HGRJCA_PAPER_CONFIGS) < set(GATED_PAPER_CONFIGS)


def _tiny_model(name: str):
    cfg = load_config(name)
    params = {**cfg.model_params(), "window_length": L}
    torch.manual_seed(0)
    return create_model(cfg.model.name, DA, DV, params), params


@pytest.mark.parametrize("name", HGRJCA_PAPER_CONFIGS)
def test_each_hgrjca_paper_config_runs_the_printed_gate(name):
    """The per-iteration gate's candidates are X_att^(t-1) and X_att^(t), both ungated, and the model's fused
    output equals the hand computation of the printed equations (not the gated-recursion variant)."""
    model, params = _tiny_model(name)
    assert params["recursion_input"] == "ungated"
    fusion = model.fusion
    xa, xv, mask = _inputs(params.get("hidden", 64), params.get("hidden", 64), seed=1)
    # small inputs keep the gates soft: at unit scale the Xavier-initialised gates with T = 0.1 are near one-hot
    # on most steps (benchmarks/zoo.py --init-collapse), where both recursion forms give almost the same output
    xa, xv = 0.05 * xa, 0.05 * xv
    ya, yv = fusion.gate(fusion.rjca, xa, xv, mask)
    ha, hv = hgrjca_by_hand(fusion.rjca, fusion.gate, xa, xv, mask, "ungated")
    torch.testing.assert_close(ya, ha)
    torch.testing.assert_close(yv, hv)
    if fusion.rjca.num_iterations > 1:
        ga, _ = hgrjca_by_hand(fusion.rjca, fusion.gate, xa, xv, mask, "gated")
        assert not torch.allclose(ya, ga, atol=1e-5), "the printed and the gated-recursion forms coincide here"


def _xavier_std(w: torch.Tensor) -> float:
    fan_out, fan_in = w.shape[0], w.shape[1]
    return math.sqrt(2.0 / (fan_in + fan_out))


@pytest.mark.parametrize("name", GATED_PAPER_CONFIGS)
def test_each_gated_paper_config_starts_from_xavier(name):
    """Gate layers: Xavier-uniform weights, no bias (as printed); JCA weights, W_h included: plain Xavier-uniform."""
    model, params = _tiny_model(name)
    assert params["gate_init"] == "xavier" and params["init_residual_scale"] == 1.0
    gates = [m for m in model.modules() if isinstance(m, SoftmaxGate)]
    assert gates
    for g in gates:
        w = g.fc.weight
        bound = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
        assert g.fc.bias is None
        assert w.abs().max() <= bound + 1e-6 and w.abs().max() > 0.6 * bound
    weights = torch.cat([g.fc.weight.flatten() for g in gates])
    expected = np.mean([_xavier_std(g.fc.weight) for g in gates])
    assert 0.8 < weights.std().item() / expected < 1.2
    for block in model.fusion.rjca.blocks:
        for w in block.w_h:
            assert 0.8 < w.std().item() / _xavier_std(w.T) < 1.2  # not the 0.1 x Xavier of the toolkit default


@pytest.mark.parametrize("init,ratio", [("pytorch", None), ("xavier", 1.0), ("xavier_temperature", 0.1)])
def test_gate_init_options(init, ratio):
    torch.manual_seed(0)
    gate = SoftmaxGate(256, 2, temperature=0.1, init=init)
    std = gate.fc.weight.std().item()
    xavier = math.sqrt(2.0 / 258)
    if ratio is None:  # nn.Linear: U(-1/sqrt(d), 1/sqrt(d)), std 1/sqrt(3 d), and a bias
        assert 0.85 < std / (1 / math.sqrt(3 * 256)) < 1.15 and gate.fc.bias.abs().sum() > 0
    else:
        assert 0.85 < std / (ratio * xavier) < 1.15 and gate.fc.bias.abs().sum() == 0
    with pytest.raises(ValueError, match="gate init"):
        SoftmaxGate(4, 2, init="he")


def test_init_residual_scale_multiplies_w_h_only():
    torch.manual_seed(0)
    small = RecursiveJCA(32, 32, 16, 2)
    torch.manual_seed(0)
    plain = RecursiveJCA(32, 32, 16, 2, init_residual_scale=1.0)
    for bs, bp in zip(small.blocks, plain.blocks, strict=True):
        for ws, wp in zip(bs.w_h, bp.w_h, strict=True):
            torch.testing.assert_close(ws, 0.1 * wp)
        for ws, wp in zip(list(bs.w_j) + list(bs.w_c), list(bp.w_j) + list(bp.w_c), strict=True):
            torch.testing.assert_close(ws, wp)


# ------------------------------------------------------------------------------------------------ oracle gate


@pytest.mark.parametrize("gate", ["dca", "grjca", "hgrjca"])
def test_the_oracle_gate_reads_only_the_state(gate):
    torch.manual_seed(0)
    model = create_model(gate, DA + 3, DV, {"window_length": L, "hidden": 8, "oracle_gate_channels": 3})
    xa, xv, mask = _inputs(DA, DV)
    state = torch.zeros(B, L, 3)
    state[:, : L // 2, 0] = 1.0
    model(torch.cat([xa, state], -1), xv, mask)
    first = {k: w.clone() for k, w in model.last_gate_weights.items()}
    xa2, xv2, _ = _inputs(DA, DV, seed=5)
    model(torch.cat([xa2, state], -1), xv2, mask)
    for k, w in model.last_gate_weights.items():
        torch.testing.assert_close(w, first[k])  # other features, same state: same gate weights
        assert torch.allclose(w[:, 0], w[:, L // 2 - 1]) and torch.allclose(w[:, L // 2], w[:, -1])
    assert model.audio_encoder(torch.randn(B, L, DA), mask).shape[-1] == 8  # the state is cut off the audio input


def test_the_oracle_gate_needs_its_state_and_a_gate():
    rjca_its = [(torch.randn(B, L, DA), torch.randn(B, L, DV))] * 3
    with pytest.raises(ValueError, match="state"):
        GRJCAGate(DA, DV, 2, state_dim=3)(rjca_its)
    with pytest.raises(ValueError, match="state"):
        DCAGate(DA, DV)(rjca_its[0], rjca_its[1], state=torch.zeros(B, L, 3))
    with pytest.raises(ValueError, match="gated preset"):
        create_model("rjca_abaw8", DA + 3, DV, {"window_length": L, "oracle_gate_channels": 3})


# ------------------------------------------------------------------------------------------- gate measurements


def test_auroc_against_counting_pairs():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=300), 1)  # ties on purpose
    labels = rng.random(300) < 0.3 + 0.3 * (scores > 0)
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auroc(scores, labels) == pytest.approx(pairs, abs=1e-12)
    assert separation(-scores, labels) == pytest.approx(max(pairs, 1 - pairs))
    assert math.isnan(auroc(scores, np.zeros(300, bool)))


def test_collapsed_fraction():
    w = np.array([[0.995, 0.005], [0.5, 0.5], [0.001, 0.999], [0.98, 0.02]])
    assert collapsed_fraction(w) == 0.5
    assert collapsed_fraction(w[None]) == 0.5  # any leading shape
    assert math.isnan(collapsed_fraction(np.ones((3, 1))))


def test_ridge_probe_is_least_squares_without_penalty():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)) * [1, 10, 0.1, 3] + 5
    y = np.stack([x @ [1, -2, 3, 0.5], x @ [0, 1, 1, 1]], 1) + rng.normal(size=(200, 2)) * 0.1
    xt = rng.normal(size=(20, 4))
    design = np.hstack([x, np.ones((200, 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(ridge_probe(x, y, xt, alpha=0.0), np.hstack([xt, np.ones((20, 1))]) @ coef,
                               rtol=1e-6, atol=1e-6)


def test_paired_difference_matches_a_paired_t_test():
    a, b = np.array([0.61, 0.64, 0.58, 0.66, 0.60]), np.array([0.60, 0.61, 0.59, 0.62, 0.57])
    mean, lo, hi = paired_difference(a, b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert mean == pytest.approx((a - b).mean())
    assert (lo, hi) == pytest.approx((ci.low, ci.high))
    assert math.isnan(paired_difference(a[:1], b[:1])[1])


# ------------------------------------------------------------------------------------ synthetic weak segments


def test_per_modality_weak_segments():
    cfg = SynthConfig(face_weak_rate=0.3, voice_weak_rate=0.2, weak_overlap=False, face_weak_kinds="noisy",
                      voice_weak_kinds="noisy,conflicting", face_weak_min_s=3, face_weak_max_s=5,
                      voice_weak_min_s=2, voice_weak_max_s=2.5, duration_s=40)
    for i in range(6):
        p = _Plan(cfg, i, "train")
        face, voice = p.face_weak != WEAK_NONE, p.voice_weak != WEAK_NONE
        assert not (face & voice).any()
        assert set(np.unique(p.face_weak)) <= {WEAK_NONE, WEAK_NOISY}
        assert set(np.unique(p.voice_weak)) <= {WEAK_NONE, WEAK_NOISY, WEAK_CONFLICTING}
        assert abs(face.mean() - 0.3) < 0.02 and abs(voice.mean() - 0.2) < 0.05
        assert p.face_present.all()  # no missing kind
        for codes, (lo, hi) in ((face, (3, 5)), (voice, (2, 2.5))):
            edges = np.flatnonzero(np.diff(np.concatenate([[0], codes.astype(np.int8), [0]])))
            runs = (edges[1::2] - edges[::2]) / cfg.fps
            assert len(runs) and (runs <= hi + 1e-9).all()
            assert (runs < lo - 1e-9).sum() <= 1  # the last run placed may be cut to hit the target exactly


def test_weak_segment_options_are_checked():
    with pytest.raises(ValueError, match="face_weak_kinds"):
        SynthConfig(face_weak_kinds="noisy,loud")
    with pytest.raises(ValueError, match="voice_weak_min_s"):
        SynthConfig(voice_weak_min_s=5, voice_weak_max_s=2)
    with pytest.raises(ValueError, match="add up"):
        SynthConfig(face_weak_rate=0.5, voice_weak_rate=0.5, weak_overlap=False)


def test_synth_cli_takes_the_per_modality_options(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "bad"), "--face-weak-kinds", "noisy,loud"]) == 2
    assert "face_weak_kinds" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["synth", "--out", str(tmp_path / "ok"), "-q", "--n-train", "1", "--n-val", "0", "--duration-s", "1",
                 "--no-weak-overlap", "--face-weak-rate", "0.3", "--voice-weak-kinds", "noisy"]) == 0
    stored = SynthConfig.model_validate_json((tmp_path / "ok" / "synth_config.json").read_text())
    assert (stored.weak_overlap, stored.face_weak_rate, stored.voice_weak_kinds) == (False, 0.3, "noisy")


def test_a_checkpoint_keeps_the_recursion_it_was_trained_with(tmp_path):
    """Checkpoints store every preset field now; one written before (params silent on recursion_input, then
    ``gated`` by default) is rebuilt with the gated recursion it was trained with, not today's default."""
    model = AVRegressor("hgrjca", 6, 8, {"window_length": 5, "hidden": 8})
    spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats", "params": {}, "id": "logmel_stats-1"},
                             video_extractor={"name": "face_hog", "params": {}, "id": "face_hog-1"},
                             window=5, hop=5, fps=30.0, targets=["valence", "arousal"])
    path = save_checkpoint(tmp_path / "new.safetensors", model, spec)
    params = read_checkpoint_meta(path)["model"]["params"]
    assert params["recursion_input"] == "ungated" and params["gate_init"] == "pytorch" and params["hidden"] == 8
    assert load_checkpoint(path)[0].net.fusion.gate.recursion_input == "ungated"
    old = {"format": FORMAT, "avaffect_version": "0.1.0", "model": json.dumps(model.describe()),
           "preprocessing": spec.model_dump_json(), "extra": "{}"}
    old_path = write_tagged(tmp_path / "old.safetensors", model.state_dict(), old)
    assert load_checkpoint(old_path)[0].net.fusion.gate.recursion_input == "gated"


def _zoo_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo.py"
    spec = importlib.util.spec_from_file_location("zoo_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gating_benchmark_runs_end_to_end(tmp_path, capsys):
    """``benchmarks/zoo.py --condition`` at toy size: real synthetic media, extraction, Lightning training of an
    ungated model and an oracle-gated one over two paired seeds, the measurements and the report."""
    zoo = _zoo_benchmark()
    out = tmp_path / "out"
    assert zoo.main(["--condition", "one_weak", "--out", str(out), "--work", str(tmp_path / "work"), "--models",
                     "rjca", "dca+oracle", "--seeds", "2", "--max-epochs", "1", "--n-train", "2", "--n-val", "1",
                     "--duration", "6"]) == 0
    report = (out / "report.md").read_text()
    assert "| dca+oracle | 2 |" in report and "| rjca | 2 |" in report
    runs = pd.read_csv(out / "condition_runs.csv")
    assert set(runs["model"]) == {"rjca", "dca+oracle"} and len(runs) == 4
    oracle = runs[runs["model"] == "dca+oracle"]
    assert (oracle["gate_sep_voice"] > 0.99).all()  # the oracle's gates read the true weak state
    assert runs["p_va_one_weak"].notna().all()
    assert "ΔP_VA" in capsys.readouterr().out  # the table is printed too
