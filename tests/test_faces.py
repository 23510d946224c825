"""Faces: detectors, tracking, alignment, crops — on the real CREMA-D clips and on synthetic frames."""

from __future__ import annotations

import importlib.util
import pickle

import cv2
import numpy as np
import pytest
from shareddata import crema_d_clips

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError, DataError
from avaffect.features.faces import (
    Detection,
    FaceTracker,
    Tracking,
    align_crop,
    crop_matrix,
    eye_angle,
    get_detector,
    list_detectors,
    load_face_crops,
    track_faces,
    track_frames,
)
from avaffect.features.faces.align import apply_matrix
from avaffect.features.faces.detectors import decode_retinaface, retinaface_priors
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.media import probe, read_video, video_frame_times


@pytest.fixture(scope="module")
def crema_tracks():
    """Every CREMA-D clip tracked once with the default detector (112 px crops)."""
    out = {}
    for clip in crema_d_clips():
        info = probe(clip)
        out[clip.name] = (track_faces(clip, FacePipeline()), (info.height, info.width))
    return out


@pytest.fixture(scope="module")
def crema_frame():
    """A CREMA-D frame and the detection on it whose eyes were found."""
    det = get_detector("haar")
    frames, _ = read_video(crema_d_clips()[0])
    for frame in frames[:20]:
        found = det.detect(frame)
        if found and found[0].eyes is not None:
            return frame, found[0]
    frame = frames[0]
    return frame, det.detect(frame)[0]


def _face_image(frame: np.ndarray, det: Detection, size: int) -> np.ndarray:
    return align_crop(frame, det.box, size, margin=0.25, angle=0.0)


# ------------------------------------------------------------------------------------------ registry


def test_registry_lists_detectors_and_rejects_bad_names():
    assert {"haar", "dlib", "yunet", "retinaface", "precomputed"} <= set(list_detectors())
    with pytest.raises(ConfigError, match="unknown face detector"):
        get_detector("nope")
    with pytest.raises(ConfigError, match="unknown parameter"):
        get_detector("haar", bogus=1)
    det = get_detector("haar")
    det.detect(np.zeros((64, 64, 3), np.uint8))  # builds the cascades
    clone = pickle.loads(pickle.dumps(det))  # worker processes get a copy without OpenCV objects
    assert clone.params == det.params and clone.detect(np.zeros((64, 64, 3), np.uint8)) == []


# ------------------------------------------------------------------------------------------ real clips


def test_crema_d_face_found_in_most_frames(crema_tracks):
    for name, (track, (h, w)) in crema_tracks.items():
        assert len(track) >= 30, name
        assert track.detected.mean() >= 0.9, (name, track.detected.mean())
        assert track.crop_present.mean() >= 0.9, (name, track.crop_present.mean())
        assert track.stats["tracks_started"] == 1, name  # one actor, one track
        boxes = track.boxes[track.crop_present]
        assert np.all(boxes[:, 0] >= -1) and np.all(boxes[:, 1] >= -1), name
        assert np.all(boxes[:, 2] <= w + 1) and np.all(boxes[:, 3] <= h + 1), name
        assert np.all(boxes[:, 2] > boxes[:, 0] + 40) and np.all(boxes[:, 3] > boxes[:, 1] + 40), name
        assert np.all(np.isnan(track.boxes[~track.crop_present]))
        assert track.crops.shape == (len(track), 112, 112, 3) and track.crops.dtype == np.uint8
        nonzero = track.crops.reshape(len(track), -1).max(axis=1) > 0
        np.testing.assert_array_equal(nonzero, track.crop_present)
        assert np.all(np.diff(track.times) > 0)


@pytest.mark.parametrize("size", [48, 224])
def test_load_face_crops_on_a_timeline(size):
    CLIPS = crema_d_clips()
    clip = CLIPS[0]
    frame_times = video_frame_times(clip)
    # a 10 Hz timeline, plus a step one second past the end of the video (no frame there: no face)
    times = np.append(np.arange(0.0, frame_times[-1], 0.1), frame_times[-1] + 1.0)
    rec = Recording(
        name=clip.stem,
        times=times,
        labels=np.full((len(times), 2), np.nan),
        face_mask=np.zeros(len(times), bool),
        video_path=clip,
    )
    t = load_face_crops(rec, FacePipeline(crop_size=size))
    crops, mask, boxes = t.crops, t.crop_present, t.boxes
    assert crops.shape == (len(times), size, size, 3) and crops.dtype == np.uint8
    assert mask.dtype == bool and boxes.shape == (len(times), 4) and boxes.dtype == np.float32
    assert mask[:-1].mean() >= 0.9 and not mask[-1]
    np.testing.assert_array_equal(crops.reshape(len(times), -1).max(axis=1) > 0, mask)
    assert np.all(np.isfinite(boxes[mask])) and np.all(np.isnan(boxes[~mask]))


def test_detect_every_carries_the_box(crema_frame):
    frames, times = read_video(crema_d_clips()[1])
    track = track_frames(zip(times[:12], frames[:12]), FacePipeline(crop_size=48, detect_every=4))
    assert track.stats["frames_processed"] == 12
    assert track.stats["detector_calls"] + track.stats["roi_calls"] >= 3
    assert track.crop_present.all() and track.detected.sum() <= 3
    np.testing.assert_array_equal(track.boxes[1], track.boxes[0])  # carried, not re-detected


# ------------------------------------------------------------------------------------------ no face


def test_blank_frames_give_no_face_and_zero_crops():
    blank = np.zeros((240, 320, 3), np.uint8)
    assert get_detector("haar").detect(blank) == []
    assert get_detector("precomputed").detect(blank) == []
    track = track_frames([(0.0, blank), (0.04, blank + 40), (0.08, blank)], FacePipeline())
    assert track.crops.shape == (3, 112, 112, 3)
    assert not track.crop_present.any() and not track.crops.any() and np.all(np.isnan(track.boxes))


# ------------------------------------------------------------------------------------------ tracking


def _det(x1, y1, side, score=1.0):
    return Detection(np.array([x1, y1, x1 + side, y1 + side], np.float32), score)


def test_tracker_follows_its_face_not_the_largest():
    tr = FaceTracker(smoothing=0.0, hold=2, reacquire_after=4)
    assert tr.update([]).box is None
    first = tr.update([_det(300, 50, 60), _det(10, 10, 100)])  # starts on the largest
    np.testing.assert_allclose(first.box, [10, 10, 110, 110])
    # a bigger face appears elsewhere: the track stays on its own face, which moved a little
    s = tr.update([_det(200, 100, 180), _det(14, 12, 100)])
    np.testing.assert_allclose(s.box, [14, 12, 114, 112])
    # short miss: the box is held (still a face), then the frame has none
    assert tr.update([]).box is not None and tr.update([_det(400, 300, 50)]).box is not None
    assert tr.update([]).box is None
    # lost for longer than reacquire_after: a new track on the largest face
    tr.update([])
    new = tr.update([_det(200, 100, 180), _det(400, 300, 50)])
    np.testing.assert_allclose(new.box, [200, 100, 380, 280])
    assert tr.tracks_started == 2


def test_tracker_smooths_boxes_and_keeps_the_angle():
    tr = FaceTracker(Tracking(smoothing=0.5))
    eyes = np.array([[30, 40], [70, 40 + 40 * np.tan(np.radians(10))]], np.float32)
    lm = np.full((5, 2), np.nan, np.float32)
    lm[:2] = eyes
    tr.update([Detection([0, 0, 100, 100], 1.0, lm)])
    s = tr.update([_det(10, 0, 100)])  # no eyes on this frame: the angle is kept
    np.testing.assert_allclose(s.box, [5, 0, 105, 100])
    assert s.angle == pytest.approx(10.0, abs=1e-3)


def test_eyes_taken_after_the_match_give_what_a_detection_with_eyes_gives():
    """The face pipeline matches boxes first and searches the eyes of the face followed only afterwards
    (``observe_eyes``): the same boxes and angles as detections that carried their eyes."""
    rng = np.random.default_rng(3)
    with_eyes, later = FaceTracker(Tracking(smoothing=0.5)), FaceTracker(Tracking(smoothing=0.5))
    for i in range(12):
        x = 10 + 3 * i
        lm = np.full((5, 2), np.nan, np.float32)
        lm[:2] = [[x + 30, 40 + rng.normal(0, 3)], [x + 70, 40 + rng.normal(0, 3)]]
        has_eyes = i % 3 != 1
        a = with_eyes.update([Detection([x, 0, x + 100, 100], 1.0, lm if has_eyes else None)])
        b = later.update([Detection([x, 0, x + 100, 100], 1.0)])
        if has_eyes:
            b.angle = later.observe_eyes(lm[:2])
        np.testing.assert_array_equal(a.box, b.box)
        assert a.angle == b.angle


def test_tracking_keeps_the_same_face_when_a_second_face_appears(crema_frame):
    frame, det = crema_frame
    face = _face_image(frame, det, 160)
    canvas = np.full((400, 640, 3), 128, np.uint8)
    frames = []
    for i in range(12):
        img = canvas.copy()
        img[100:260, 60:220] = face
        if i >= 4:  # a second face appears at frame 4: smaller, then (frame 8) larger than the first
            side = 110 if i < 8 else 220
            img[120 : 120 + side, 400 : 400 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        frames.append((i / 25, img))
    track = track_frames(frames, FacePipeline(roi_search=False))
    assert track.crop_present.all()
    centres_x = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    assert np.all(centres_x < 320), centres_x  # always the face on the left
    assert track.stats["tracks_started"] == 1
    # and the first frame with two faces of which the right one is larger starts on that one
    only_late = track_frames(frames[8:], FacePipeline())
    assert ((only_late.boxes[:, 0] + only_late.boxes[:, 2]) / 2 > 320).all()


# ------------------------------------------------------------------------------------------ alignment


def test_crop_matrix_levels_the_eyes_and_centres_the_box():
    box = np.array([100, 80, 200, 180], np.float32)
    centre = np.array([150, 130])
    theta = np.radians(15)
    eyes = centre + np.array([[-25, -15], [25, -15]]) @ np.array(
        [[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]]
    )
    angle = eye_angle(eyes)
    assert angle == pytest.approx(15.0, abs=1e-6)
    m = crop_matrix(box, 112, margin=0.2, angle=angle)
    out = apply_matrix(m, eyes)
    assert out[0, 1] == pytest.approx(out[1, 1], abs=1e-6)  # level
    assert out[0, 0] < out[1, 0]  # not flipped
    np.testing.assert_allclose(apply_matrix(m, centre[None]), [[56, 56]], atol=1e-6)
    scale = 112 / (100 * 1.4)  # the box side plus 20 % margin on each side becomes 112 px
    assert np.linalg.norm(out[1] - out[0]) == pytest.approx(np.linalg.norm(eyes[1] - eyes[0]) * scale, rel=1e-6)


def test_align_crop_sizes_and_outside_the_frame():
    img = np.full((100, 120, 3), 200, np.uint8)
    for size in (48, 112, 224):
        crop = align_crop(img, np.array([10, 10, 60, 60]), size)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    edge = align_crop(img, np.array([-30, -30, 20, 20]), 48)  # half outside: black there
    assert edge[0, 0].max() == 0 and edge[-1, -1].min() == 200
    assert not align_crop(img, np.array([500, 500, 600, 600]), 48).any()
    big = align_crop(np.full((2000, 2000, 3), 90, np.uint8), np.array([100, 100, 1900, 1900]), 48)  # pyrDown path
    assert np.abs(big[24, 24].astype(int) - 90).max() <= 1


@pytest.mark.parametrize("rotation", [15.0, -15.0])
def test_alignment_levels_the_eyes_of_a_rotated_face(crema_frame, rotation):
    frame, det = crema_frame
    cx, cy = (float(v) for v in det.center)
    rotated = cv2.warpAffine(
        frame, cv2.getRotationMatrix2D((cx, cy), rotation, 1.0), frame.shape[1::-1], borderMode=cv2.BORDER_REPLICATE
    )
    haar = get_detector("haar")
    found = haar.detect(rotated)
    if not found or found[0].eyes is None:
        pytest.skip("the eye cascade found no eye pair on the rotated frame (transform tested directly above)")
    before = eye_angle(found[0].eyes)
    assert abs(before) > 8 and np.sign(before) == -np.sign(rotation)  # cv2 angles are counter-clockwise
    aligned = align_crop(rotated, found[0].box, 224, angle=before)
    again = haar.detect(aligned)
    if not again or again[0].eyes is None:
        pytest.skip("the eye cascade found no eye pair on the aligned crop")
    assert abs(eye_angle(again[0].eyes)) < 6.0


# ------------------------------------------------------------------------------------------ precomputed


def test_precomputed_crops_with_a_missing_jpg(tmp_path):
    folder = tmp_path / "cropped_aligned" / "1-30-1280x720"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (1, 3, 4):
        img = rng.integers(20, 255, (112, 112, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img)
    cv2.imwrite(str(folder / "00005.jpg"), np.zeros((112, 112, 3), np.uint8))  # a blank crop: no face
    rec = Recording(
        name="1-30-1280x720",
        times=np.arange(6) / 30,
        labels=np.zeros((6, 2)),
        face_mask=np.ones(6, bool),
        crops_dir=folder,
    )
    t = load_face_crops(rec, FacePipeline(crop_size=48))
    crops, mask, boxes = t.crops, t.crop_present, t.boxes
    np.testing.assert_array_equal(mask, [True, False, True, True, False, False])
    assert crops.shape == (6, 48, 48, 3) and not crops[~mask].any() and all(c.any() for c in crops[mask])
    np.testing.assert_array_equal(boxes[0], [0, 0, 112, 112])
    assert np.isnan(boxes[1]).all()
    t224 = load_face_crops(rec, FacePipeline(crop_size=224, detector="precomputed"))
    assert t224.crops.shape == (6, 224, 224, 3) and (t224.crop_present == mask).all()
    with pytest.raises(DataError, match="crops folder"):
        load_face_crops(Recording(name="x", times=[0.0], labels=[[0, 0]], face_mask=[True]),
                        FacePipeline(detector="precomputed"))
    with pytest.raises(DataError, match="neither a video"):
        load_face_crops(rec, FacePipeline(), source="video")


def test_face_source_rule(tmp_path):
    """One rule: crops when asked or when the recording has them (auto), the video otherwise; the
    detector's name never changes it (only ``precomputed`` means crops)."""
    from avaffect.features.faces.source import resolve_face_source

    video = tmp_path / "clip.mp4"
    both = Recording(name="a", times=[0.0], labels=[[0, 0]], face_mask=[True], crops_dir=tmp_path, video_path=video)
    crops_only = Recording(name="b", times=[0.0], labels=[[0, 0]], face_mask=[True], crops_dir=tmp_path)
    video_only = Recording(name="c", times=[0.0], labels=[[0, 0]], face_mask=[True], video_path=video)
    for detector in ("haar", "yunet", "dlib"):
        assert resolve_face_source(both, "auto", detector) == "crops"
        assert resolve_face_source(both, "video", detector) == "video"
        assert resolve_face_source(video_only, "auto", detector) == "video"
    assert resolve_face_source(both, "video", "precomputed") == "crops"
    assert resolve_face_source(crops_only, "crops") == "crops"
    with pytest.raises(DataError, match="no face crops folder"):
        resolve_face_source(video_only, "crops")
    with pytest.raises(DataError, match="neither a video"):
        resolve_face_source(crops_only, "video")
    with pytest.raises(ConfigError):
        resolve_face_source(both, "dataset")


# ------------------------------------------------------------------------------------------ weights


@pytest.mark.parametrize(
    "name, filename, source",
    [
        ("yunet", "face_detection_yunet_2023mar.onnx", "opencv_zoo"),
        ("retinaface", "retinaface.onnx", "RetinaFace ONNX"),
    ],
)
def test_missing_weights_say_what_to_download_and_where(tmp_path, monkeypatch, name, filename, source):
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    with pytest.raises(AvaffectError) as err:
        get_detector(name)
    msg = str(err.value)
    assert filename in msg and source in msg and "weights=" in msg
    assert str(tmp_path / "home" / "weights" / filename) in msg
    given = tmp_path / "mine.onnx"
    with pytest.raises(AvaffectError, match="mine.onnx") as err:
        get_detector(name, weights=str(given))
    assert filename in str(err.value) and source in str(err.value)


def test_retinaface_anchor_decoding():
    priors = retinaface_priors(640, 640)
    assert priors.shape == (16800, 4)  # 80x80x2 + 40x40x2 + 20x20x2
    np.testing.assert_allclose(priors[0], [4, 4, 16, 16])
    np.testing.assert_allclose(priors[1], [4, 4, 32, 32])
    np.testing.assert_allclose(priors[12800], [8, 8, 64, 64])
    # encode a known box and 5 points against some priors, decode them back
    idx = np.array([5, 13000, 16799])
    p = priors[idx]
    box = np.array([[10, 12, 40, 50], [100, 90, 180, 190], [300, 280, 560, 600]], np.float32)
    c, s = (box[:, :2] + box[:, 2:]) / 2, box[:, 2:] - box[:, :2]
    loc = np.concatenate([(c - p[:, :2]) / (0.1 * p[:, 2:]), np.log(s / p[:, 2:]) / 0.2], axis=1)
    pts = c[:, None, :] + np.array([[-5, -5], [5, -5], [0, 0], [-4, 6], [4, 6]], np.float32)
    lm = ((pts - p[:, None, :2]) / (0.1 * p[:, None, 2:])).reshape(-1, 10)
    boxes, points = decode_retinaface(loc, lm, p)
    np.testing.assert_allclose(boxes, box, atol=1e-3)
    np.testing.assert_allclose(points, pts, atol=1e-3)


# ------------------------------------------------------------------------------------------ dlib


def test_dlib_missing_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "dlib" else real(n, *a))
    with pytest.raises(AvaffectError, match=r"pip install 'avaffect\[dlib\]'"):
        get_detector("dlib")


def test_dlib_detector_with_five_point_landmarks(crema_frame):
    pytest.importorskip("dlib")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face-recognition-models not installed")
    frame, haar_det = crema_frame
    found = get_detector("dlib").detect(frame)
    assert len(found) == 1
    d = found[0]
    assert d.eyes is not None and np.isfinite(d.landmarks5[2]).all() and np.isnan(d.landmarks5[3:]).all()
    assert d.eyes[0, 0] < d.eyes[1, 0] and abs(eye_angle(d.eyes)) < 10
    x1, y1, x2, y2 = d.box
    assert x1 < d.landmarks5[2, 0] < x2 and y1 < d.landmarks5[2, 1] < y2  # nose inside the box
    from avaffect.features.faces.tracking import iou

    assert iou(d.box, haar_det.box[None])[0] > 0.4


class _FakeRetinaNet:
    """Stands in for cv2.dnn's network: returns fixed outputs (in a shuffled order)."""

    def __init__(self, outs):
        self.outs = outs
        self.blob = None

    def setInput(self, blob):  # noqa: N802 - cv2's name
        self.blob = blob

    def getUnconnectedOutLayersNames(self):  # noqa: N802
        return ("conf", "landms", "loc")

    def forward(self, names):
        return list(self.outs)


def test_retinaface_detect_letterboxes_decodes_and_suppresses(tmp_path):
    weights = tmp_path / "retinaface.onnx"
    weights.write_bytes(b"not loaded: the network is replaced below")
    det = get_detector("retinaface", weights=str(weights), input_size=640)
    priors = retinaface_priors(640, 640)
    box = np.array([100, 60, 260, 240], np.float32)  # in the 640 x 640 input (the frame shrunk by 2)
    c, s = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
    i = int(np.argmin(np.linalg.norm(priors[:, :2] - c, axis=1) + 1000 * (priors[:, 2] != 128)))
    loc = np.zeros((len(priors), 4), np.float32)
    conf = np.tile(np.array([[0.0, -4.0]], np.float32), (len(priors), 1))  # logits: softmaxed
    landms = np.zeros((len(priors), 10), np.float32)
    pts = c + np.array([[-30, -20], [30, -20], [0, 5], [-20, 40], [20, 40]], np.float32)
    for j, shift, logit in ((i, 0.0, 5.0), (i + 2, 4.0, 3.0)):  # the second overlaps: removed by NMS
        p = priors[j]
        loc[j, :2] = (c + shift - p[:2]) / (0.1 * p[2:])
        loc[j, 2:] = np.log(s / p[2:]) / 0.2
        landms[j] = ((pts - p[:2]) / (0.1 * p[2:])).reshape(-1)
        conf[j, 1] = logit
    det._net = _FakeRetinaNet([conf[None], landms[None], loc[None]])
    det._priors = priors
    frame = np.full((720, 1280, 3), 50, np.uint8)
    found = det.detect(frame)
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, box * 2, atol=0.05)
    np.testing.assert_allclose(found[0].landmarks5, pts * 2, atol=0.05)
    assert found[0].score > 0.99
    blob = det._net.blob
    assert blob.shape == (1, 3, 640, 640)
    np.testing.assert_allclose(blob[0, :, 0, 0], [50 - 104, 50 - 117, 50 - 123])  # BGR minus the mean
    np.testing.assert_allclose(blob[0, :, -1, 0], [-104, -117, -123])  # padding below the 360-row image


def test_yunet_detect_parses_the_output_rows(tmp_path):
    weights = tmp_path / "face_detection_yunet_2023mar.onnx"
    weights.write_bytes(b"not loaded")
    det = get_detector("yunet", weights=str(weights))

    class FakeYN:
        def setInputSize(self, size):  # noqa: N802
            self.size = size

        def detect(self, img):
            self.shape = img.shape
            row = [10, 20, 50, 60, 20, 35, 45, 36, 33, 50, 22, 65, 44, 66, 0.95]
            return 1, np.array([row], np.float32)

    det._net, det._net_size = FakeYN(), (0, 0)
    found = det.detect(np.zeros((720, 1280, 3), np.uint8))
    assert det._net.size == (640, 360) and det._net.shape == (360, 640, 3)  # shrunk to max_side 640
    (d,) = found
    np.testing.assert_allclose(d.box, [20, 40, 120, 160])
    np.testing.assert_allclose(d.landmarks5[0], [40, 70])
    assert d.eyes is not None and d.score == pytest.approx(0.95)


def test_timeline_matching_takes_the_nearest_frame_and_skips_holes():
    rng = np.random.default_rng(1)
    frame_times = np.r_[np.arange(10) * 0.04, 2.0 + np.arange(5) * 0.04]  # 25 fps with a 1.6 s hole
    frames = [(t, rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for t in frame_times]
    steps = np.array([0.0, 0.05, 0.39, 0.41, 1.0, 1.98, 2.1, 2.5])
    track = track_frames(frames, FacePipeline(detector="precomputed", crop_size=16, margin=0.0,
                                              tracking={"smoothing": 0.0}), steps)
    np.testing.assert_allclose(track.frame_times[[0, 1, 2, 3, 5, 6]], [0.0, 0.04, 0.36, 0.36, 2.0, 2.08], atol=1e-9)
    assert np.isnan(track.frame_times[[4, 7]]).all()  # in the hole / past the end: no frame, no face
    np.testing.assert_array_equal(track.crop_present, ~np.isnan(track.frame_times))
    assert track.stats["frames_processed"] == 5  # only frames nearest to a step
    np.testing.assert_allclose(track.boxes[0], [0, 0, 32, 32])
