"""From video to face crops: detect, track, align and crop, on a recording's timeline.

Every function takes the pipeline's settings as one :class:`~avaffect.features.faces.pipeline.FacePipeline`
(declared and checked there only) and hands faces back as a :class:`FaceTrack` (crops, boxes, masks): face data
flows through explicit values, never through the recording. Entry points:

* :func:`load_face_crops` — a recording's face track on ``rec.times``: the Aff-Wild2
  ``cropped_aligned`` jpgs when the recording has a crops folder, else detection on its video;
* :func:`track_faces` — any video file, on its own frame times (or on given times);
* :func:`track_frames` — the same on an iterable of ``(time, rgb)`` frames;
* :func:`iter_face_steps` — the pipeline one frame at a time (what the others collect), for streaming a long
  video (:mod:`avaffect.features.face_stream`) without holding its crops.

Frames without a face get a zero (black) crop, ``crop_present`` False and a NaN box; they are never
dropped (the ABAW convention).

Matching frames to a timeline: each time in ``times`` takes the decoded frame nearest to it (by
the frames' stream timestamps), unless that frame is more than ``max_gap_frames`` frame intervals
away (past the end of the video, or a hole in it): that step has no face. Only frames nearest to
some step are processed, so a 25 Hz timeline over a 30 fps video runs the detector 25 times a
second. ``detect_every`` = k runs the detector on every k-th processed frame only and keeps the
tracked box in between (the crop is still cut from each frame); while the track is lost, and on the frame of a
shot cut, the detector runs on every frame, so the tracker's counts (``hold``, ``reacquire_after``) are in
processed frames whatever ``k`` is.
"""

from __future__ import annotations

import logging
import time as _time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avaffect.data.layout import crop_name, crop_path
from avaffect.data.recording import PersonFaces, Recording
from avaffect.errors import DataError, MediaError
from avaffect.features.faces.align import align_crop, head_yaw
from avaffect.features.faces.detectors import Detection, get_detector
from avaffect.features.faces.frames import assign_frames
from avaffect.features.faces.people import ShotCuts, person_faces
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.features.faces.source import resolve_face_source
from avaffect.features.faces.tracking import FaceTracker, TrackState, match_detection
from avaffect.media import DECODE_FIX, iter_video_frames

__all__ = [
    "FaceTrack",
    "FaceStep",
    "iter_face_steps",
    "track_frames",
    "track_faces",
    "load_face_crops",
    "face_crops",
    "load_precomputed_crops",
    "draw_face_box",
]

log = logging.getLogger(__name__)

@dataclass
class FaceTrack:
    """The tracked face of a video on a timeline of ``T`` steps.

    ``times`` float64 ``[T]`` (the timeline); ``boxes`` float32 ``[T, 4]`` (x1, y1, x2, y2) frame
    pixels, NaN without a face; ``crop_present`` bool ``[T]``: a crop was cut (a face was found, or its box was
    held over a short miss or carried by ``detect_every``); ``crops`` uint8 ``[T, size, size, 3]`` RGB, zeros
    without a face; ``detected`` bool ``[T]``: the detector found the face on that very frame (the third meaning,
    "the visual vector is valid", is the model's rule: :func:`~avaffect.features.extractors.base.
    face_mask_from_features`); ``angles``
    float32 ``[T]`` rotation applied by the alignment (degrees); ``frame_times`` float64 ``[T]``: the
    time of the decoded frame used (NaN where none). ``stats``: frames decoded and processed,
    detector calls on whole frames and around the track (``roi_calls``), seconds spent detecting and
    in total, ``detect_fps`` (frames detected per second of detection) and ``fps`` (frames
    processed per second, decoding, tracking and cropping included).
    """

    times: np.ndarray
    boxes: np.ndarray
    crop_present: np.ndarray
    crops: np.ndarray
    detected: np.ndarray
    angles: np.ndarray
    frame_times: np.ndarray
    detector: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.times))

    @property
    def size(self) -> int:
        return int(self.crops.shape[1])

    @property
    def face_rate(self) -> float:
        """Fraction of steps with a face."""
        return float(self.crop_present.mean()) if len(self.crop_present) else 0.0


@dataclass
class FaceStep:
    """One processed frame of :func:`iter_face_steps`: the frame's time, the timeline steps it serves (sorted),
    its crop (``None`` without a face), box, whether the detector found it on this very frame, and the
    alignment angle."""

    frame_time: float
    steps: np.ndarray
    crop: np.ndarray | None
    box: np.ndarray | None
    detected: bool
    angle: float
    track: int = 0  # the single-face tracker's track number (0: no face); it changes when the face followed does
    score: float = float("nan")  # the detector's score on the last frame it found this face (NaN: not known)
    yaw: float = float("nan")  # align.head_yaw of its landmarks on that frame (NaN without a nose landmark)


def iter_face_steps(
    frames: Iterable[tuple[float, np.ndarray]],
    pipeline: FacePipeline,
    times: np.ndarray | None = None,
    *,
    given: PersonFaces | None = None,
    stats: dict[str, Any] | None = None,
    ahead: bool = True,
) -> Iterator[FaceStep]:
    """The face pipeline one frame at a time (what :func:`track_frames` collects): memory stays at a few frames,
    so long videos stream through it. ``times``: the timeline (default: the frames' own times); ``stats``, when
    given, is filled with the counters :attr:`FaceTrack.stats` documents as the frames go by.

    ``given``: one person's boxes on ``times`` (a multi-person pass found them): the crops are cut from those
    boxes, no detection or tracking runs. Otherwise the single-face tracker follows the largest face
    (``pipeline.tracking``); while it holds, the detector first searches around its box (``roi_search``); a shot
    cut (:func:`~avaffect.features.faces.people.shot_change` above ``cut_threshold``; 0: never) ends its track at
    once and runs the detector on the cut's frame, so a face after a cut is found there and a new track
    (``FaceStep.track``) starts instead of the old one continuing on whoever stands at the same place.

    ``ahead`` (with ``detect_every`` k > 1): the detection of the next k-th frame runs on a worker thread while this
    one cuts the crops of the frames in between (OpenCV and LiteRT release the GIL, so both cores work). It starts
    once the detection before it is done and the track holds, with that track's box, and is used only when no shot
    cut comes first: exactly the input the detector would get one frame at a time, so the steps are the same with
    ``ahead`` on or off (tested). The worker also searches the landmarks (Haar's eye search,
    :meth:`~avaffect.features.faces.detectors.base.FaceDetector.add_landmarks`) of the one face the tracker will
    match on that frame, found by the tracker's own rule from the box it has when the work is handed over (a face's
    eyes never decide which face is followed): the same eyes as searching them after the match. Faces not followed
    get no eye search; a match the worker could not foresee (a new track) gets its search on this thread, before
    the next detection is handed over, so the two threads never run the detector at once. ``detect_seconds``
    counts the detector's own time, on whichever thread (``detect_ahead_seconds`` of it on the worker;
    ``detect_cpu_seconds`` the CPU seconds of those threads while they ran it);
    ``detect_wait_seconds`` the time this thread waited for a detection ahead."""
    if times is not None:
        times = np.asarray(times, dtype=np.float64).reshape(-1)
    if given is not None:
        yield from _given_steps(frames, given, pipeline, times, stats)
        return
    det = get_detector(pipeline.detector, **pipeline.detector_params)
    tracker = FaceTracker(pipeline.tracking)
    every = pipeline.detect_every
    st = stats if stats is not None else {}
    st.update(frames_decoded=0, frames_processed=0, detector_calls=0, roi_calls=0, detect_seconds=0.0,
              detect_ahead_seconds=0.0, detect_wait_seconds=0.0, detect_cpu_seconds=0.0, detections_ahead=0,
              faces_detected=0, eyes_found=0, eye_searches=0, detector=det.name, detect_every=every, cuts=0)

    def counted(it):
        for item in it:
            st["frames_decoded"] += 1
            yield item

    def with_cuts(it):  # each processed frame with whether a shot cut lands on it (signatures in frame order)
        shots = ShotCuts(pipeline.cut_threshold)
        for frame_t, rgb, steps in it:
            yield frame_t, rgb, steps, shots(rgb)

    def find(rgb: np.ndarray, box: np.ndarray | None, eyes_of: np.ndarray | None = None,
             ) -> tuple[list, int, int, float, bool]:
        """The detector's boxes for one frame: around the track's ``box`` first (when given), then the whole
        frame; with ``eyes_of`` (a track's box), the landmarks of the detection that track will match
        (:func:`~avaffect.features.faces.tracking.match_detection`, the tracker's own rule), the others' left to
        :meth:`FaceDetector.add_landmarks`. With the calls made, the seconds they took and whether that eye search
        ran."""
        t0, c0 = _time.perf_counter(), _time.thread_time()
        found, roi = [], 0
        if box is not None:
            found, roi = det.detect_boxes(rgb, box, search=pipeline.roi_pad), 1
        full = 0 if found else 1
        if not found:
            found = det.detect_boxes(rgb)
        searched = False
        if eyes_of is not None:
            match = match_detection(eyes_of, found, pipeline.tracking)
            if match is not None and match.eyes is None:
                found = [det.add_landmarks(rgb, [d])[0] if d is match else d for d in found]
                searched = True
        st["detect_cpu_seconds"] += _time.thread_time() - c0  # one thread runs the detector at a time
        return found, roi, full, _time.perf_counter() - t0, searched

    def landmarks(rgb: np.ndarray, found: list) -> list:  # on this thread, the worker idle
        t0, c0 = _time.perf_counter(), _time.thread_time()
        out = det.add_landmarks(rgb, found)
        st["detect_seconds"] += _time.perf_counter() - t0
        st["detect_cpu_seconds"] += _time.thread_time() - c0
        return out

    def track_box() -> np.ndarray | None:
        return tracker.box.copy() if pipeline.roi_search and tracker.active and tracker.lost == 0 else None

    source = with_cuts(assign_frames(counted(frames), times, pipeline.max_gap_frames))
    window: deque = deque()  # processed frames read ahead of the one being processed
    pool = ThreadPoolExecutor(1, thread_name_prefix="avaffect-detect") if ahead and every > 1 else None
    future: Future | None = None  # the detection of window[every - 1], started with the track's box
    since = 0
    score = yaw = float("nan")  # the detector's score when it last found the face followed, the face's yaw then
    eye_turn, track_no = 0, 0  # the track's detections since its last eye search (eyes_every), which track
    try:
        while True:
            if not window:
                item = next(source, None)
                if item is None:
                    break
                window.append(item)
            frame_t, rgb, steps, cut = window.popleft()
            if cut:
                st["cuts"] += 1
                tracker.reset_track()
            if cut or since % every == 0 or tracker.lost > 0:  # a lost track: look on every frame
                since = 0
                if future is not None:
                    t0 = _time.perf_counter()
                    result = future.result()
                    st["detect_wait_seconds"] += _time.perf_counter() - t0
                    st["detections_ahead"] += 1
                    st["detect_ahead_seconds"] += result[3]
                    future = None
                else:
                    result = find(rgb, track_box())
                found, roi, full, seconds, searched = result
                st["roi_calls"] += roi
                st["detector_calls"] += full
                st["detect_seconds"] += seconds
                state = tracker.update(found)  # the boxes decide which face is followed, never its eyes
                if state.detection is not None:
                    if tracker.tracks_started != track_no:  # a new track searches its eyes at once
                        track_no, eye_turn = tracker.tracks_started, 0
                    if eye_turn % pipeline.eyes_every == 0:
                        st["eye_searches"] += 1
                        if not searched and state.detection.eyes is None:  # not done ahead: here, the worker idle
                            state = _with_eyes(tracker, state, landmarks(rgb, [state.detection])[0])
                    eye_turn += 1
                if pool is not None and tracker.active and tracker.lost == 0:
                    while len(window) < every:  # read ahead to the next frame the detector runs on
                        item = next(source, None)
                        if item is None:
                            break
                        window.append(item)
                    # with no cut before it, that frame is detected with the box the track has now, and the eyes
                    # of the face the track will match there searched with it when they are due
                    if len(window) == every and not any(w[3] for w in window):
                        due = tracker.box.copy() if eye_turn % pipeline.eyes_every == 0 else None
                        future = pool.submit(find, window[-1][1], track_box(), due)
                score = state.detection.score if state.detection is not None else float("nan")
                yaw = head_yaw(state.detection.landmarks5) if state.detection is not None else float("nan")
                if state.detection is not None:  # how often the alignment got a fresh eye line
                    st["faces_detected"] += 1
                    st["eyes_found"] += state.detection.eyes is not None
            else:
                state = tracker.carry()
            since += 1
            st["frames_processed"] += 1
            st["tracks_started"] = tracker.tracks_started
            if state.box is not None:
                angle = state.angle if pipeline.align else 0.0
                yield FaceStep(frame_t, steps, cut_crop(rgb, state.box, angle, pipeline), state.box,
                               bool(state.detected), float(angle), tracker.tracks_started, score, yaw)
            else:
                yield FaceStep(frame_t, steps, None, None, False, 0.0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _with_eyes(tracker: FaceTracker, state: TrackState, found: Detection) -> TrackState:
    """``state`` once the eye search has run on its detection (``found``: that detection with its landmarks)."""
    if found.eyes is None:
        return replace(state, detection=found)
    return replace(state, angle=tracker.observe_eyes(found.eyes), detection=found)


def cut_crop(rgb: np.ndarray, box: np.ndarray, angle: float, pipeline: FacePipeline) -> np.ndarray:
    """The pipeline's ``crop_size`` crop around ``box`` (its ``margin``), turned by the eye-line ``angle`` when the
    pipeline aligns (else upright): every path's crop of a face, so that they agree to the pixel."""
    return align_crop(rgb, box, pipeline.crop_size, pipeline.margin, angle if pipeline.align else 0.0)


def _given_steps(frames: Iterable[tuple[float, np.ndarray]], given: PersonFaces, pipeline: FacePipeline,
                 times: np.ndarray | None, stats: dict[str, Any] | None) -> Iterator[FaceStep]:
    """:func:`iter_face_steps` on boxes given per step: a step's crop is cut from its own box, no detection."""
    st = stats if stats is not None else {}
    st.update(frames_decoded=0, frames_processed=0, detector_calls=0, roi_calls=0, detect_seconds=0.0,
              detector=f"person {given.person}", detect_every=1, tracks_started=1, cuts=0)
    for frame_t, rgb, steps in assign_frames(frames, times, pipeline.max_gap_frames):
        st["frames_decoded"] += 1
        st["frames_processed"] += 1
        box = given.boxes[int(steps[0])]
        if not np.all(np.isfinite(box)):
            yield FaceStep(frame_t, steps, None, None, False, 0.0)
            continue
        angle = float(given.angles[int(steps[0])]) if pipeline.align else 0.0
        yield FaceStep(frame_t, steps, cut_crop(rgb, box, angle, pipeline), box.copy(), True, angle, given.person)


def track_frames(frames: Iterable[tuple[float, np.ndarray]], pipeline: FacePipeline,
                 times: np.ndarray | None = None, given: PersonFaces | None = None) -> FaceTrack:
    """Detect, track, align and crop the face in ``(time, rgb uint8 [H, W, 3])`` frames (:func:`iter_face_steps`,
    whose rules these are), collected into a :class:`FaceTrack` on ``times`` (default: the frames' own times)."""
    size = pipeline.crop_size
    fixed = times is not None
    if fixed:
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        T = len(times)
        crops = np.zeros((T, size, size, 3), dtype=np.uint8)
        boxes = np.full((T, 4), np.nan, dtype=np.float32)
        mask = np.zeros(T, dtype=bool)
        detected = np.zeros(T, dtype=bool)
        angles = np.zeros(T, dtype=np.float32)
        frame_times = np.full(T, np.nan, dtype=np.float64)
    else:
        rows: list[tuple[float, np.ndarray, np.ndarray | None, bool, float]] = []

    stats: dict[str, Any] = {}
    start = _time.perf_counter()
    zero = np.zeros((size, size, 3), dtype=np.uint8)
    for step in iter_face_steps(frames, pipeline, times, given=given, stats=stats):
        if fixed:
            frame_times[step.steps] = step.frame_time
            if step.box is not None:
                crops[step.steps] = step.crop
                boxes[step.steps] = step.box
                mask[step.steps] = True
                detected[step.steps] = step.detected
                angles[step.steps] = step.angle
        else:
            rows.append((step.frame_time, zero if step.crop is None else step.crop, step.box, step.detected,
                         step.angle))
    total = _time.perf_counter() - start

    if not fixed:
        T = len(rows)
        times = np.array([r[0] for r in rows], dtype=np.float64)
        frame_times = times.copy()
        crops = np.stack([r[1] for r in rows]) if rows else np.zeros((0, size, size, 3), dtype=np.uint8)
        boxes = np.full((T, 4), np.nan, dtype=np.float32)
        mask = np.array([r[2] is not None for r in rows], dtype=bool)
        for i, r in enumerate(rows):
            if r[2] is not None:
                boxes[i] = r[2]
        detected = np.array([r[3] for r in rows], dtype=bool)
        angles = np.array([r[4] for r in rows], dtype=np.float32)
    processed, detect_seconds = stats["frames_processed"], stats["detect_seconds"]
    stats.update(
        total_seconds=total,
        detect_fps=max(1, processed // stats["detect_every"]) / detect_seconds if detect_seconds > 0 else float("nan"),
        fps=processed / total if total > 0 else float("nan"),
    )
    det_name = stats.pop("detector")
    stats.setdefault("tracks_started", 0)
    return FaceTrack(times=times, boxes=boxes, crop_present=mask, crops=crops, detected=detected, angles=angles,
                     frame_times=frame_times, detector=det_name, stats=stats)


def track_faces(video_path: str | Path, pipeline: FacePipeline, times: np.ndarray | None = None,
                given: PersonFaces | None = None) -> FaceTrack:
    """:func:`track_frames` on a video file decoded with PyAV (timestamps from the stream)."""
    path = Path(video_path)
    track = track_frames(iter_video_frames(path), pipeline, times, given)
    if track.stats["frames_decoded"] == 0:
        raise MediaError(path, "cannot decode the video: no frame could be decoded", DECODE_FIX)
    return track


def read_crop(path: str | Path, size: int | None = None, gray: bool = False) -> np.ndarray | None:
    """One face-crop image: RGB (or grayscale) uint8, resized to ``size x size`` when given (area
    interpolation when shrinking, linear when enlarging); None when the file is missing or unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        return None
    if size is not None and img.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_precomputed_crops(crops_dir: str | Path, num_steps: int, size: int = 112, blank_level: int = 0
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read Aff-Wild2 ``cropped_aligned`` crops ``00001.jpg`` ... (1-based, one per step).

    Returns ``(crops uint8 [T, size, size, 3] RGB, face_mask bool [T], boxes float32 [T, 4])``. A
    missing, unreadable or blank (max pixel <= ``blank_level``) jpg means no face: zero crop, mask
    False, NaN box. The box of a crop is its own extent ``(0, 0, width, height)`` (where it sat in
    the video is not known).
    """
    crops_dir = Path(crops_dir)
    if not crops_dir.is_dir():
        raise DataError(
            crops_dir,
            "face crops folder not found",
            "check the dataset's cropped_aligned/<video>/ folder or use a detector on the video",
        )
    crops = np.zeros((num_steps, size, size, 3), dtype=np.uint8)
    mask = np.zeros(num_steps, dtype=bool)
    boxes = np.full((num_steps, 4), np.nan, dtype=np.float32)
    unreadable = 0
    for i in range(num_steps):
        path = crop_path(crops_dir, i)
        if not path.is_file():
            continue
        rgb = read_crop(path)
        if rgb is None:
            unreadable += 1
            continue
        if int(rgb.max()) <= blank_level:
            continue
        h, w = rgb.shape[:2]
        crops[i] = read_crop(path, size) if (h, w) != (size, size) else rgb
        mask[i] = True
        boxes[i] = (0.0, 0.0, float(w), float(h))
    if unreadable:
        log.warning("%s: %d face crops unreadable; treated as no face", crops_dir, unreadable)
    if num_steps and not mask.any():
        log.warning("%s: no usable face crop for any of the %d steps (expected %s ...)", crops_dir, num_steps,
                    crop_name(0))
    return crops, mask, boxes


def load_face_crops(rec: Recording, pipeline: FacePipeline, source: str = "auto") -> FaceTrack:
    """The face track of a recording on its timeline ``rec.times``: crops, boxes ``(x1, y1, x2, y2)`` in video
    pixels (NaN without a face, zero crop, mask False).

    ``source`` picks the crops folder or the video by the one rule of :mod:`avaffect.features.faces.source`.
    From the crops folder (:func:`load_precomputed_crops`; the ``precomputed`` detector's ``blank_level``) the
    boxes are the crops' own extent; from the video the pipeline runs on it (:func:`track_faces`), on the face
    the recording describes (:func:`~avaffect.features.faces.people.person_faces`: the largest, one person's, or
    the one on its side)."""
    source = resolve_face_source(rec, source, pipeline.detector)
    if source == "crops":
        blank = int(pipeline.detector_params.get("blank_level", 0))
        crops, mask, boxes = load_precomputed_crops(rec.crops_dir, rec.num_steps, pipeline.crop_size, blank)
        times = np.asarray(rec.times, np.float64)
        return FaceTrack(times=times, boxes=boxes, crop_present=mask, crops=crops, detected=mask.copy(),
                         angles=np.zeros(len(mask), np.float32), frame_times=times, detector="crops")
    track = track_faces(rec.video_path, pipeline, rec.times, person_faces(rec, pipeline))
    log.info("%s: face in %d/%d steps, detector %.1f frames/s", rec.name, int(track.crop_present.sum()), len(track),
             track.stats["detect_fps"])
    return track


def face_crops(rec: Recording, pipeline: FacePipeline, source: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """``(crops uint8 [T, size, size, 3] RGB, crop present bool [T])`` of a recording on its timeline
    (:func:`load_face_crops`), checked to have one crop per step. A step counts only where the recording's own
    face mask allows a face too."""
    track = load_face_crops(rec, pipeline, source)
    crops = np.asarray(track.crops)
    mask = np.asarray(track.crop_present, dtype=bool).reshape(-1)
    if len(crops) != rec.num_steps or len(mask) != rec.num_steps:
        raise DataError(
            rec.crops_dir or rec.video_path,
            f"face cropping gave {len(crops)} crops / {len(mask)} mask steps for {rec.num_steps} timeline steps "
            f"of recording {rec.name}",
            "re-run face cropping for this recording",
        )
    return crops, mask & rec.face_mask


def draw_face_box(
    rgb: np.ndarray,
    box: np.ndarray,
    color: tuple[int, int, int] = (0, 255, 0),
    thickness: int = 2,
    label: str | None = None,
) -> np.ndarray:
    """A copy of ``rgb`` with ``box`` drawn (nothing drawn for a NaN box); for overlay videos."""
    out = np.ascontiguousarray(rgb).copy()
    box = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(box)):
        return out
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    if label:
        cv2.putText(out, label, (x1, max(12, y1 - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return out
