"""``predict --explain``: the occlusion runner against its definition, the columns on a real clip (the values
unchanged, contributions finite, the voice's zero where there is no voice), the plot and the page."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mediafiles import reencode_video_only

from avaffect.cli.main import main
from avaffect.evaluation.explain import EXPLAIN_NOTE, explain_note, occlusion_runner, split_occlusion
from avaffect.evaluation.streaming import predict_windows


def _toy(a, v, m, f):
    x = a.mean(-1, keepdims=True) * 0.5 + v.mean(-1, keepdims=True) * f[..., None]
    return np.concatenate([np.tanh(np.cumsum(x, 1) * 0.1), np.tanh(x)], -1).astype(np.float32)


def test_the_occlusion_runner_is_the_value_minus_the_value_without_each_modality():
    rng = np.random.default_rng(0)
    n, mean = 97, rng.normal(size=3).astype(np.float32)
    a, v = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 4)).astype(np.float32)
    face = rng.random(n) > 0.2
    both = predict_windows(occlusion_runner(_toy, mean), a, v, face, 30, 10)
    values, parts, more = split_occlusion(both, 2)
    assert more.shape == (n, 0)  # no gates
    plain = predict_windows(_toy, a, v, face, 30, 10)
    np.testing.assert_array_equal(values, plain)  # the values are the prediction's own, to the bit
    no_voice = predict_windows(_toy, np.tile(mean, (n, 1)), v, face, 30, 10)
    no_face = predict_windows(_toy, a, v, np.zeros(n, bool), 30, 10)
    np.testing.assert_allclose(parts["voice"], plain - no_voice, atol=1e-6)
    np.testing.assert_allclose(parts["face"], plain - no_face, atol=1e-6)


@pytest.mark.slow
def test_explain_columns_on_a_real_clip(tiny_run, crema_d, tmp_path):
    clip = sorted(crema_d.glob("*.flv"))[0]
    ckpt = str(tiny_run / "model.safetensors")
    assert main(["predict", ckpt, str(clip), "--out", str(tmp_path / "plain")]) == 0
    assert main(["predict", ckpt, str(clip), "--out", str(tmp_path / "x"), "--explain", "--html"]) == 0
    plain = pd.read_csv(tmp_path / "plain" / f"{clip.stem}.csv")
    x = pd.read_csv(tmp_path / "x" / f"{clip.stem}.csv")
    cols = ["voicing", "valence_voice", "arousal_voice", "valence_face", "arousal_face"]
    assert list(x.columns) == [*plain.columns[:-1], *cols, "trained_on"]
    pd.testing.assert_frame_equal(x[plain.columns], plain)  # the values do not change
    assert np.isfinite(x[cols].to_numpy()).all() and x["voicing"].between(0, 1).all()
    assert (x[cols[1:]].abs().to_numpy().max(axis=0) > 0).all()  # a face and a voice: both move the values
    summary = json.loads((tmp_path / "x" / f"{clip.stem}.json").read_text())
    assert "occlusion" in summary["explain"]
    assert "trained without modality dropout" in summary["explain"]  # the fixture's run: what the reading is
    page = (tmp_path / "x" / f"{clip.stem}.html").read_text()
    assert "valence: voice" in page and "Dotted: how far the voice" in page
    # no audio track: the voice is already its missing input, so it contributes nothing; no voicing
    silent = tmp_path / "silent.mp4"
    reencode_video_only(clip, silent)
    assert main(["predict", ckpt, str(silent), "--out", str(tmp_path / "s"), "--explain"]) == 0
    s = pd.read_csv(tmp_path / "s" / "silent.csv")
    assert (s[["valence_voice", "arousal_voice"]].to_numpy() == 0).all() and s["voicing"].isna().all()
    assert (s[["valence_face", "arousal_face"]].abs().to_numpy().max(axis=0) > 0).all()


def test_the_note_says_what_occlusion_means_for_how_the_model_was_trained():
    for recorded in (None, {}, {"voice": 0.0, "face": 0.0}):  # older checkpoints record nothing
        assert "trained without modality dropout" in explain_note(recorded)
    both = explain_note({"voice": 0.25, "face": 0.25})
    assert both.startswith(EXPLAIN_NOTE) and "(voice 0.25, face 0.25)" in both and "what that modality added" in both
    voice = explain_note({"voice": 0.3, "face": 0.0})
    assert "of the voice only (0.3)" in voice and "never learned to mean 'no face'" in voice


def test_explain_needs_a_fusion_checkpoint(tmp_path, capsys):
    assert main(["predict", "--face-model", str(tmp_path / "m.onnx"), str(tmp_path / "v.mp4"), "--explain"]) == 2
    assert "--explain needs a fusion checkpoint" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dca", "hgrjca"])
def test_explain_gives_a_gated_models_gate_weights(name, crema_d, tmp_path):
    """A gated preset (random weights, real extractors): one column per candidate of every gate, the weights of
    each gate summing to 1 at every frame (averages of softmax rows over the windows covering it)."""
    import torch

    from avaffect.features.extractors import get_extractor
    from avaffect.features.preprocessing_spec import PreprocessingSpec
    from avaffect.models.checkpoint import save_checkpoint
    from avaffect.models.wrapper import AVRegressor

    torch.manual_seed(0)
    audio, video = get_extractor("logmel_stats"), get_extractor("face_hog")
    model = AVRegressor(name, audio.dim, video.dim, {"window_length": 32, "hidden": 8, "head_hidden": 8}).eval()
    spec = PreprocessingSpec(audio_extractor={"name": audio.name, "params": audio.params, "id": audio.id},
                             video_extractor={"name": video.name, "params": video.params, "id": video.id},
                             window=32, hop=16, fps=30.0, targets=["valence", "arousal"])
    ckpt = save_checkpoint(tmp_path / "model.safetensors", model, spec)
    clip = sorted(crema_d.glob("*.flv"))[0]
    assert main(["predict", str(ckpt), str(clip), "--out", str(tmp_path / "x"), "--explain"]) == 0
    x = pd.read_csv(tmp_path / "x" / f"{clip.stem}.csv")
    gates = [c for c in x.columns if c.startswith("gate_")]
    assert gates and x[gates].notna().all().all() and ((x[gates] >= 0) & (x[gates] <= 1)).all().all()
    groups: dict[str, list[str]] = {}
    for c in gates:
        groups.setdefault(c.rsplit("_", 1)[0], []).append(c)
    assert {"gate_audio", "gate_video"} <= set(groups) if name == "dca" else \
        {"gate_audio_iter1", "gate_audio_stage", "gate_video_stage"} <= set(groups)
    for cols in groups.values():
        if len(cols) > 1:
            np.testing.assert_allclose(x[cols].sum(axis=1), 1.0, atol=1e-4)
    summary = json.loads((tmp_path / "x" / f"{clip.stem}.json").read_text())
    assert "gate_<modality>_<j>" in summary["explain"]


def test_the_page_draws_contributions_gates_and_an_ensembles_band():
    from avaffect.evaluation.page import page_html

    n = 5
    cols = {"time": np.arange(n) / 10, "valence": np.zeros(n), "arousal": np.full(n, 0.5),
            "face_detected": np.ones(n, bool), "valence_spread": np.full(n, 0.1), "arousal_spread": np.zeros(n)}
    cols.update({f"{t}_{m}": np.zeros(n) for t in ("valence", "arousal") for m in ("voice", "face")})
    cols.update({"gate_audio_0": np.full(n, 0.3), "gate_audio_1": np.full(n, 0.7)})
    page = page_html(pd.DataFrame(cols), {}, "clip.mp4", "clip")
    data = json.loads(page.split('id="avaffect-data">', 1)[1].split("</script>", 1)[0])
    names = [s[0] for s in data["series"]]
    assert names[:2] == ["valence", "arousal"] and "valence: voice" in names and "gate: audio" in names
    assert data["series"][names.index("gate: audio")][2] == [0.7] * n  # the last candidate's weight
    lo, hi = data["bands"][0][1], data["bands"][0][2]
    assert lo == [-0.1] * n and hi == [0.1] * n
    assert "Dotted: how far the voice" in page and "Fine dotted (gate" in page
