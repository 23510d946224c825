"""Bring-your-own face models: ``face_onnx`` and ``predict --face-model`` on tiny ONNX models built here in the
EmotiEffLib layout (input [N, 3, S, S]; last two output columns valence and arousal), checked against the same
arithmetic in NumPy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import avaffect  # noqa: E402
from avaffect.cli.main import main  # noqa: E402
from avaffect.data.folder import recording_from_video  # noqa: E402
from avaffect.features.backbones.resnet import IMAGE_NORMALIZATIONS, prepare_crops  # noqa: E402
from avaffect.features.extractors import get_extractor  # noqa: E402
from avaffect.features.faces import load_face_crops  # noqa: E402
from avaffect.features.faces.pipeline import FacePipeline  # noqa: E402
from avaffect.workflows.predict import VideoPredictor, write_outputs  # noqa: E402

SIZE = 32
RNG = np.random.default_rng(0)
W = RNG.normal(size=(3, 10)).astype(np.float32)  # channel means -> 8 "expression" logits + valence, arousal
B = RNG.normal(size=10).astype(np.float32)


def _tiny_model(path, two_outputs: bool = False, size: int | str = SIZE):
    """mean over the pixels per channel ([N, 3]) -> Gemm -> [N, 10] (and the [N, 3] means as an embedding)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])
    head = helper.make_tensor_value_info("head", TensorProto.FLOAT, ["N", 10])
    emb = helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("ReduceMean", ["input"], ["emb"], axes=[2, 3], keepdims=0),
             helper.make_node("Gemm", ["emb", "W", "B"], ["head"])]
    graph = helper.make_graph(nodes, "tiny_va", [x], [emb, head] if two_outputs else [head],
                              [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def _reference(crops: np.ndarray, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    mean, std = (np.asarray(v, np.float32) for v in IMAGE_NORMALIZATIONS[normalize])
    x = (prepare_crops(crops, SIZE, "resize").astype(np.float32) / 255.0 - mean) / std  # [N, S, S, 3]
    emb = x.mean(axis=(1, 2))
    return emb, emb @ W + B


@pytest.fixture(scope="module")
def clip(crema_d):
    return sorted(crema_d.glob("*.flv"))[0]


def test_face_onnx_features_are_the_models_outputs(clip, tmp_path):
    single, double = _tiny_model(tmp_path / "one.onnx"), _tiny_model(tmp_path / "two.onnx", two_outputs=True)
    rec = recording_from_video(clip)
    t = load_face_crops(rec, FacePipeline(crop_size=SIZE))
    crops, mask = t.crops, t.crop_present
    assert mask.mean() > 0.9
    emb, head = _reference(crops[mask], "half")
    for path, output, want in ((single, "va", head[:, -2:]), (single, "embedding", head),
                               (double, "embedding", emb), (double, "va", head[:, -2:])):
        ex = get_extractor("face_onnx", weights=str(path), output=output, normalize="half")
        assert ex.input_size == SIZE  # read from the model's own input shape
        feats = ex.extract(recording_from_video(clip))  # streams the video
        assert feats.shape == (rec.num_steps, want.shape[1]) and ex.dim == want.shape[1]
        np.testing.assert_allclose(feats[mask], want, rtol=1e-4, atol=1e-4)
        assert not feats[~mask].any()
    dynamic = _tiny_model(tmp_path / "dyn.onnx", size="S")
    with pytest.raises(Exception, match="give input_size"):
        _ = get_extractor("face_onnx", weights=str(dynamic)).dim
    assert get_extractor("face_onnx", weights=str(dynamic), input_size=SIZE).dim == 10


def test_predict_face_model_writes_the_models_valence_and_arousal(clip, tmp_path):
    model = _tiny_model(tmp_path / "va.onnx")
    out = tmp_path / "pred"
    assert main(["predict", "--face-model", str(model), str(clip), "--out", str(out)]) == 0
    csv = pd.read_csv(out / f"{clip.stem}.csv")
    rec = recording_from_video(clip)
    assert list(csv.columns) == ["frame", "time", "valence", "arousal", "face_detected", "trained_on"]
    assert len(csv) == rec.num_steps and set(csv["trained_on"]) == {"face_model"}
    t = load_face_crops(rec, FacePipeline(crop_size=SIZE))
    crops, mask = t.crops, t.crop_present
    _, head = _reference(crops[mask], "imagenet")  # an unregistered file: ImageNet normalisation by default
    np.testing.assert_array_equal(csv["face_detected"].to_numpy(), mask)
    np.testing.assert_allclose(csv.loc[mask, ["valence", "arousal"]].to_numpy(), head[:, -2:], rtol=1e-4, atol=1e-4)
    assert csv.loc[~mask, "valence"].isna().all()  # no face, no value
    summary = json.loads((out / f"{clip.stem}.json").read_text())
    assert summary["model"] == "face_onnx:va.onnx" and summary["audio"] == "not used"
    assert "zero-shot" in summary["meaning"] and (out / f"{clip.stem}.png").stat().st_size > 1000


def test_a_missing_registered_face_model_says_where_to_get_it_and_where_to_put_it(clip, tmp_path, monkeypatch,
                                                                                   capsys):
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    assert main(["predict", "--face-model", "enet_b0_8_va_mtl", str(clip), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "home" / "weights" / "enet_b0_8_va_mtl.onnx") in err
    assert "github.com/sb-ai-lab/EmotiEffLib" in err and "Traceback" not in err
    ex = get_extractor("face_onnx", weights="mbf_va_mtl")
    assert (ex.input_size, ex.normalize) == (112, "half")  # the registry carries how to run the file
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    assert main(["predict", "--face-model", str(broken), str(clip), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err  # refused once, before any video, naming the file
    assert "broken.onnx: cannot load this ONNX model" in err and "Traceback" not in err


def test_the_face_model_predictor_is_a_video_predictor_kept_between_videos(clip, tmp_path):
    """The Python API: one face model loaded once, two videos, the typed summary equal to the JSON's."""
    predictor = avaffect.load_predictor(face_model=str(_tiny_model(tmp_path / "va.onnx")))
    assert isinstance(predictor, VideoPredictor)
    runs = [predictor(clip), predictor(clip)]
    assert runs[0].summary.audio == "not used" and runs[0].summary.targets == ["valence", "arousal"]
    pd.testing.assert_frame_equal(runs[0].frame, runs[1].frame)
    write_outputs(runs[0], tmp_path / "out", "x")
    written = json.loads((tmp_path / "out" / "x.json").read_text())
    assert written == json.loads(json.dumps(runs[0].summary.as_json()))
