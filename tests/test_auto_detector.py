"""The face detector ``auto``: MediaPipe where avaffect[faces] and its model file are installed, else Haar; what ran
named in predict's JSON and in feature ids; a checkpoint keeps ``auto`` unless its training crops came from it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import avaffect
from avaffect.cli.main import main
from avaffect.config import make_config
from avaffect.errors import ConfigError
from avaffect.features import tflite
from avaffect.features.extractors.base import get_extractor
from avaffect.features.faces.detectors import (
    AUTO_MEDIAPIPE,
    AUTO_ORDER,
    HaarDetector,
    MediaPipeDetector,
    get_detector,
    list_detectors,
    resolve_detector,
)
from avaffect.features.faces.tracking import iou
from avaffect.media import iter_video_frames
from avaffect.models.checkpoint import read_checkpoint_meta
from avaffect.training.run import train
from avaffect.workflows.predict import load_predictor


def test_auto_resolves_to_the_first_detector_this_install_has(face_models_home, tmp_path, monkeypatch):
    assert "auto" in list_detectors() and [c.name for c, _ in AUTO_ORDER] == ["mediapipe", "haar"]
    assert resolve_detector("haar") == "haar" and resolve_detector("yunet") == "yunet"  # a named one is itself
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "empty"))  # LiteRT here, its model files not
    assert resolve_detector("auto") == "haar" and isinstance(get_detector("auto"), HaarDetector)
    monkeypatch.setenv("AVAFFECT_HOME", str(face_models_home))
    assert resolve_detector("auto") == "mediapipe"
    det = get_detector("auto")
    assert isinstance(det, MediaPipeDetector) and det.name == "mediapipe"
    assert {k: det.params[k] for k in AUTO_MEDIAPIPE} == AUTO_MEDIAPIPE and det.params["range"] == "short+full"
    monkeypatch.setattr(tflite, "_RUNTIMES", ("no_such_runtime_a.interpreter", "no_such_runtime_b.interpreter"))
    assert resolve_detector("auto") == "haar"  # the model files, but no interpreter to run them


def test_auto_takes_no_detector_parameters():
    with pytest.raises(ConfigError, match="auto takes no parameters.*min_face.*name it instead"):
        get_detector("auto", min_face=0.2)


def test_a_feature_id_names_the_detector_auto_ran(face_models_home, tmp_path, monkeypatch):
    """Features cut by different detectors are different features: ``auto``'s id is that of what it runs (Haar's own,
    or ``auto:mediapipe``: its MediaPipe draws the box like Haar, not like ``mediapipe`` at its defaults)."""
    ids = {}
    for home in (tmp_path / "empty", face_models_home):
        monkeypatch.setenv("AVAFFECT_HOME", str(home))
        ids[home] = {d: get_extractor("face_hog", detector=d, detect_every=5).id for d in ("auto", "haar", "mediapipe")}
    plain, faces = ids[tmp_path / "empty"], ids[face_models_home]
    assert plain["auto"] == plain["haar"]  # auto runs Haar at its defaults there: the same crops, the same features
    assert len({faces["auto"], plain["haar"], plain["mediapipe"]}) == 3  # its MediaPipe draws Haar-like boxes
    assert (plain["haar"], plain["mediapipe"]) == (faces["haar"], faces["mediapipe"])  # a named one: the same id


def _frames(clip):
    return [rgb for _, rgb in iter_video_frames(clip)]


def test_mediapipe_short_plus_full_finds_a_small_face_the_short_range_misses(face_models_home, crema_d, monkeypatch):
    """A CREMA-D face shrunk to ~1/9 of a 640 x 360 frame: the short-range model finds none, ``short+full`` finds it
    with the full-range model, and around its box (where the face is large) the short-range model finds it again."""
    monkeypatch.setenv("AVAFFECT_HOME", str(face_models_home))
    rgb = _frames(sorted(crema_d.glob("*.flv"))[0])[10]
    canvas = np.zeros((360, 640, 3), np.uint8)
    small = cv2.resize(rgb, (rgb.shape[1] // 3, rgb.shape[0] // 3), interpolation=cv2.INTER_AREA)
    canvas[20:20 + small.shape[0], 30:30 + small.shape[1]] = small
    assert get_detector("mediapipe").detect(canvas) == []
    both = get_detector("mediapipe", range="short+full")
    found = both.detect(canvas)
    assert len(found) == 1
    box = found[0].box
    assert 30 < box[0] < box[2] < 30 + small.shape[1] and 20 < box[1] < box[3] < 20 + small.shape[0]
    near = both.detect_near(canvas, box, 0.5)
    assert len(near) == 1 and iou(near[0].box, box[None])[0] > 0.6
    with pytest.raises(ConfigError, match="weights=PATH is for one range"):
        get_detector("mediapipe", range="short+full", weights=str(both.weights))


def test_auto_draws_mediapipes_box_like_haars(face_models_home, crema_d, monkeypatch):
    """The box scaled and shifted (:data:`AUTO_MEDIAPIPE`) about BlazeFace's own, landmarks unmoved; on CREMA-D it
    overlaps Haar's box more than BlazeFace's own box does."""
    monkeypatch.setenv("AVAFFECT_HOME", str(face_models_home))
    own, auto, haar = get_detector("mediapipe"), get_detector("auto"), get_detector("haar")
    gain = []
    for clip in sorted(crema_d.glob("*.flv"))[:3]:
        rgb = _frames(clip)[5]
        (a,), (b,), (h,) = own.detect(rgb), auto.detect(rgb), haar.detect(rgb)
        side = a.box[3] - a.box[1]
        centre = (a.box[:2] + a.box[2:]) / 2 + np.array([0.0, AUTO_MEDIAPIPE["box_shift"] * side])
        half = (a.box[2:] - a.box[:2]) / 2 * AUTO_MEDIAPIPE["box_scale"]
        np.testing.assert_allclose(b.box, np.concatenate([centre - half, centre + half]), rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(b.landmarks5, a.landmarks5)
        gain.append(iou(b.box, h.box[None])[0] - iou(a.box, h.box[None])[0])
    assert min(gain) > 0.05


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
def test_a_model_trained_on_a_crops_folder_predicts_with_the_best_detector_here(auto_run, face_models_home, crema_d,
                                                                                 tmp_path, monkeypatch, capsys):
    """The checkpoint keeps ``auto``; predict runs Haar or MediaPipe by what is installed, names it, and on CREMA-D
    both flag a face on the same frames (every one)."""
    spec = read_checkpoint_meta(auto_run)["preprocessing"]
    assert spec.faces.source == "crops" and spec.faces.detector == "auto"
    assert spec.video_extractor.params["detector"] == "auto"
    clip = sorted(crema_d.glob("*.flv"))[0]
    runs = {}
    for home in (tmp_path / "empty", face_models_home):
        monkeypatch.setenv("AVAFFECT_HOME", str(home))
        df = avaffect.predict(auto_run, clip)
        runs[df.attrs["summary"]["face_source"]] = df
    assert set(runs) == {"haar", "mediapipe"}
    assert main(["predict", str(auto_run), str(clip), "--out", str(tmp_path / "out")]) == 0
    assert "face in 100% (mediapipe)" in capsys.readouterr().out  # the command line says which detector ran
    haar, mp = runs["haar"], runs["mediapipe"]
    assert len(haar) == len(mp) and haar["face_detected"].all() and mp["face_detected"].all()
    assert not np.allclose(haar["valence"], mp["valence"])  # different crops, a different run


@pytest.mark.slow
def test_features_auto_cut_in_training_are_stored_under_the_detector_that_ran(synth_root, face_models_home, tmp_path,
                                                                             monkeypatch):
    """Training crops cut from the videos by ``auto``: the store and the checkpoint's record name the id of the
    detector that ran (``auto:mediapipe``), the checkpoint keeps ``auto`` (whichever runs draws the same box)."""
    monkeypatch.setenv("AVAFFECT_HOME", str(face_models_home))
    params = {"detector": "auto", "source": "video", "detect_every": 5}
    cfg = make_config({
        "data": {"root": str(synth_root)},
        "features": {"store": str(tmp_path / "store"), "video": {"name": "face_hog", "params": params}},
        "model": {"name": "rjca", "params": {"hidden": 8, "head_hidden": 8}},
        "training": {"window": 60, "hop": 30, "batch_size": 4, "max_epochs": 1, "accelerator": "cpu"},
    })
    train(cfg, tmp_path / "run", progress=False)
    spec = read_checkpoint_meta(tmp_path / "run" / "model.safetensors")["preprocessing"]
    assert spec.faces.source == "video" and spec.faces.detector == "auto"
    assert spec.video_extractor.params["detector"] == "auto"
    assert spec.video_extractor.id == get_extractor("face_hog", **params).id
    assert spec.video_extractor.id in {p.name for p in (tmp_path / "store").rglob("*") if p.is_dir()}
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "empty"))
    assert get_extractor("face_hog", **params).id != spec.video_extractor.id  # Haar's crops: other features


def test_a_checkpoint_made_where_auto_ran_another_detector_is_not_another_version(auto_run, face_models_home, tmp_path,
                                                                                  monkeypatch, caplog):
    """The feature id of ``auto`` differs by install; predict says which detector runs here instead of warning of
    another version (on the install where the checkpoint was made, it says nothing)."""
    made = read_checkpoint_meta(auto_run)["preprocessing"].video_extractor.id
    assert made in get_extractor("face_hog", detector="auto", detect_every=5).auto_ids()
    assert get_extractor("face_hog", detect_every=5).auto_ids() == set()  # a named detector: no such ids
    caplog.set_level("INFO")
    said = {}
    for home in (tmp_path / "empty", face_models_home):
        monkeypatch.setenv("AVAFFECT_HOME", str(home))
        caplog.clear()
        load_predictor(auto_run)
        said[get_extractor("face_hog", detector="auto", detect_every=5).id == made] = caplog.text
    assert "another" not in said[True] and "another version" not in said[False]
    assert "the face detector auto runs" in said[False]
