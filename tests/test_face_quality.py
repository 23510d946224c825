"""Face quality per frame: the rule's terms, and ``predict --face-quality`` / ``--min-face-quality`` on a real clip
and on the same clip blurred (the blurred frames fall below the minimum and count as frames without a face)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from mediafiles import reencode_video_only

from avaffect.cli.main import main
from avaffect.features.faces.quality import face_quality


def test_the_quality_terms():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    flat = np.full((112, 112, 3), 128, np.uint8)
    box = np.array([0, 0, 100, 100], np.float32)
    assert face_quality(sharp, box, 0.0).face_quality == pytest.approx(1.0)
    assert face_quality(flat, box, 0.0).face_quality == 0.0 and face_quality(flat, box, 0.0).sharpness == 0.0
    assert face_quality(sharp, np.array([0, 0, 52, 52], np.float32), 0.0).face_quality == pytest.approx(0.5)
    assert face_quality(sharp, box, 30.0).face_quality == pytest.approx(0.5)
    assert face_quality(sharp, box, -50.0).face_quality == 0.0


@pytest.mark.slow
def test_predict_reports_face_quality_and_masks_below_the_minimum(tiny_run, crema_d, tmp_path):
    clip = sorted(crema_d.glob("*.flv"))[0]
    ckpt = str(tiny_run / "model.safetensors")
    assert main(["predict", ckpt, str(clip), "--out", str(tmp_path / "q"), "--min-face-quality", "0.5"]) == 0
    q = pd.read_csv(tmp_path / "q" / f"{clip.stem}.csv")
    cols = ["face_size", "sharpness", "roll", "detector_score", "face_quality"]
    assert all(c in q.columns for c in cols) and q["face_detected"].all()
    assert np.isfinite(q[cols].to_numpy()).all() and (q["face_quality"] > 0.9).all()  # a sharp, frontal face
    blurred = tmp_path / "blurred.mp4"
    reencode_video_only(clip, blurred, lambda rgb: cv2.GaussianBlur(rgb, (0, 0), 4.0))
    assert main(["predict", ckpt, str(blurred), "--out", str(tmp_path / "b"), "--face-quality"]) == 0
    b = pd.read_csv(tmp_path / "b" / "blurred.csv")
    found = b["face_quality"].notna()
    assert found.mean() > 0.5 and (b.loc[found, "face_quality"] < 0.5).all()
    assert b.loc[found, "sharpness"].max() < q["sharpness"].min() / 5
    assert main(["predict", ckpt, str(blurred), "--out", str(tmp_path / "m"), "--min-face-quality", "0.5"]) == 0
    m = pd.read_csv(tmp_path / "m" / "blurred.csv")
    assert not m["face_detected"].any()  # every blurred face is below the minimum: no face for the model
    summary = json.loads((tmp_path / "m" / "blurred.json").read_text())
    assert summary["face_quality"]["frames_masked"] == int(found.sum())
    assert "Laplacian" in summary["face_quality"]["rule"]


def test_face_quality_off_the_streaming_path_is_refused_with_the_fix(tiny_run, crema_d, tmp_path, capsys):
    """Quality is measured as the face pipeline runs frame by frame: with --no-stream the video fails with the
    reason and the fix, instead of a summary that silently lacks the columns (and a minimum never applied)."""
    clip = sorted(crema_d.glob("*.flv"))[0]
    rc = main(["predict", str(tiny_run / "model.safetensors"), str(clip), "--out", str(tmp_path / "q"),
               "--min-face-quality", "0.5", "--no-stream"])
    out = capsys.readouterr().out
    assert rc != 0 and "FAILED" in out and "--no-stream" in out and "streaming path" in out
    assert not (tmp_path / "q" / f"{clip.stem}.csv").exists()


def test_head_yaw_from_the_eyes_and_the_nose():
    """The yaw proxy: 0 for a nose on the eye midpoint, atan(offset / half eye distance) otherwise, the same for a
    tilted head (measured along the eye line), NaN without a nose (Haar's landmarks)."""
    from avaffect.features.faces.align import head_yaw
    from avaffect.features.faces.detectors.base import landmarks_from

    eyes = np.array([[40.0, 50.0], [80.0, 50.0]])
    assert head_yaw(landmarks_from(eyes, [60.0, 70.0])) == pytest.approx(0.0, abs=1e-6)
    turned = landmarks_from(eyes, [60.0 + 20.0 * np.tan(np.radians(30)), 70.0])
    assert head_yaw(turned) == pytest.approx(30.0, abs=1e-3)
    c, s = np.cos(np.radians(25)), np.sin(np.radians(25))
    rot = np.array([[c, -s], [s, c]])
    tilted = (turned[:3] - 60.0) @ rot.T + 60.0  # the same face rolled by 25 degrees
    assert head_yaw(landmarks_from(tilted[:2], tilted[2])) == pytest.approx(30.0, abs=1e-3)
    assert np.isnan(head_yaw(landmarks_from(eyes))) and np.isnan(head_yaw(None))
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    box = np.array([0, 0, 100, 100], np.float32)
    assert face_quality(sharp, box, 0.0, yaw=40.0).face_quality == pytest.approx(0.5)
    assert face_quality(sharp, box, 0.0, yaw=-70.0).face_quality == 0.0
    assert face_quality(sharp, box, 0.0).face_quality == pytest.approx(1.0)  # unknown yaw: no term


def test_a_detector_with_a_nose_gives_each_frame_its_yaw(monkeypatch):
    """The face pipeline carries the yaw of the last detection of the face followed, like its score."""
    from avaffect.features.faces import crops
    from avaffect.features.faces.detectors.base import Detection, FaceDetector, landmarks_from
    from avaffect.features.faces.pipeline import FacePipeline

    class Nosed(FaceDetector):
        name = "nosed-test"

        def detect(self, rgb):
            nose = [160.0 + 40.0 * np.tan(np.radians(35)), 150.0]
            return [Detection([100, 80, 220, 200], 0.9, landmarks_from([[120.0, 120.0], [200.0, 120.0]], nose))]

    monkeypatch.setattr(crops, "get_detector", lambda name, **params: Nosed())
    frames = [(i / 30, np.full((360, 640, 3), 90, np.uint8)) for i in range(12)]
    steps = list(crops.iter_face_steps(frames, FacePipeline(crop_size=64, detect_every=5)))
    assert all(s.box is not None for s in steps)
    assert [s.yaw for s in steps] == pytest.approx([35.0] * 12, abs=1e-3)
    q = face_quality(steps[0].crop, steps[0].box, steps[0].angle, steps[0].score, steps[0].yaw)
    assert q.yaw == pytest.approx(35.0, abs=1e-3)
