"""Every face of a video, each kept as one person across shot cuts: multi-face tracking by detection.

Rules (:class:`PeopleTracker`, counts in processed frames; the settings are ``cut_threshold``, ``detect_every`` and
``people`` of :class:`~avaffect.features.faces.pipeline.FacePipeline`):

* **shot cut** (:func:`shot_change`): a processed frame whose coarse colour histogram differs from the previous
  processed frame's by more than ``cut_threshold`` (half the L1 distance of the normalised hue-saturation-value
  histograms of a 64 x 36 thumbnail, in [0, 1]) starts a new shot: every on-screen track is closed at once
  (boxes do not continue across a cut) and the detector runs on that frame whatever ``detect_every`` says, so a
  face on screen right after a cut is found on the cut's own frame;
* **one box per face**: of two detections where one lies mostly inside the other (over 60 % of the smaller's
  area), the larger is kept (a detector's nested double hit on one face is not two people);
* **follow**: the detections of a frame are matched to the on-screen tracks by IoU (one-to-one, the
  assignment of largest total IoU, :func:`scipy.optimize.linear_sum_assignment`); a pair below
  ``iou_threshold`` is no match;
* **who it is**: a detection that continues no track is compared by appearance (:func:`appearance`: a colour
  histogram and a normalised grey thumbnail of the face, cosine similarity) with every person seen before who is
  not on screen now; at ``reid_threshold`` or above it is that person again (the best one), else a new person.
  A person's appearance is the running mean of their detected faces' (``appearance_rate``);
* **lost**: an on-screen track without a matching detection keeps its box for ``hold`` processed frames (a
  detector drop-out is not a missing face), then is off screen; the person stays known and can come back;
* **too short to matter**: a person on screen for fewer than ``min_person_s`` seconds in the whole video is
  dropped at the end (:func:`track_people`); the rest are numbered 1, 2, ... by first appearance.

The appearance cue is deliberately simple (no face-recognition network ships offline): it separates people who
look different in colour and shading (clothes at the face's border, hair, skin, lighting); two people who look
alike to it after a cut may be merged, and one person under very different lighting may be split. The
measured identity purity on the test videos is in ``docs/benchmarks/people.md``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from avaffect.data.recording import PersonFaces, Recording
from avaffect.errors import DataError, MediaError
from avaffect.features.faces.align import eye_angle
from avaffect.features.faces.detectors import Detection, FaceDetector, get_detector
from avaffect.features.faces.frames import assign_frames
from avaffect.features.faces.pipeline import FacePipeline, PeopleTracking
from avaffect.features.faces.speaking import audio_energy, mouth_motion, mouth_patch, speaking_scores
from avaffect.features.faces.tracking import iou
from avaffect.media import DECODE_FIX, iter_video_frames, probe

__all__ = ["PersonState", "PeopleTracker", "People", "ShotCuts", "appearance", "one_box_per_face", "shot_change",
           "iter_people_frames", "track_people", "person_faces", "frame_signature"]


@dataclass
class PersonState:
    """One person on one processed frame: their id (1, 2, ... in order of appearance, before the final
    renumbering), box (x1, y1, x2, y2), whether the detector found it on this very frame, and the eye-line
    angle (degrees, 0 when never measured)."""

    person: int
    box: np.ndarray
    detected: bool
    angle: float
    mouth: float = float("nan")  # mouth motion since the previous frame (speaking.mouth_motion)


def appearance(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A unit vector describing how a face looks: the hue-saturation histogram (8 x 4 bins) of the box grown by a
    quarter of its side (hair, collar), and the box's grey 12 x 12 thumbnail, zero-mean; both normalised, then
    concatenated and normalised (cosine similarity = dot product)."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    grow = 0.25 * max(x2 - x1, y2 - y1)
    gx1, gy1 = int(max(0, x1 - grow)), int(max(0, y1 - grow))
    gx2, gy2 = int(min(w, x2 + grow)), int(min(h, y2 + grow))
    fx1, fy1, fx2, fy2 = int(max(0, x1)), int(max(0, y1)), int(min(w, x2)), int(min(h, y2))
    if gx2 <= gx1 or gy2 <= gy1 or fx2 <= fx1 or fy2 <= fy1:
        return np.zeros(8 * 4 + 144, np.float32)
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[gy1:gy2, gx1:gx2]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [8, 4], [0, 180, 0, 256]).reshape(-1)
    hist = np.sqrt(hist / max(hist.sum(), 1.0))  # Hellinger: the histogram's cosine is its Bhattacharyya coefficient
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[fy1:fy2, fx1:fx2]), cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey, (12, 12), interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)
    thumb -= thumb.mean()
    thumb /= max(float(np.linalg.norm(thumb)), 1e-6)
    vec = np.concatenate([hist.astype(np.float32), 0.5 * thumb])
    return (vec / max(float(np.linalg.norm(vec)), 1e-6)).astype(np.float32)


def one_box_per_face(detections: list[Detection], inside: float = 0.6) -> list[Detection]:
    """``detections`` without those lying mostly inside a larger one (over ``inside`` of their own area)."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.area):
        nested = False
        for k in kept:
            ix = max(0.0, min(d.box[2], k.box[2]) - max(d.box[0], k.box[0]))
            iy = max(0.0, min(d.box[3], k.box[3]) - max(d.box[1], k.box[1]))
            nested = nested or ix * iy > inside * max(d.area, 1e-6)
        if not nested:
            kept.append(d)
    return kept


def frame_signature(rgb: np.ndarray) -> np.ndarray:
    """A frame's coarse colour histogram (16 hue x 4 saturation + 8 value bins of a 64 x 36 thumbnail of the
    frame's pixels sampled on a grid), summing to 2 (each part to 1)."""
    step = max(1, min(rgb.shape[:2]) // 72)  # every step-th pixel first: the histogram does not need them all
    small = cv2.resize(np.ascontiguousarray(rgb[::step, ::step]), (64, 36), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hs = cv2.calcHist([hsv], [0, 1], None, [16, 4], [0, 180, 0, 256]).reshape(-1)
    v = cv2.calcHist([hsv], [2], None, [8], [0, 256]).reshape(-1)
    return np.concatenate([hs / max(hs.sum(), 1.0), v / max(v.sum(), 1.0)])


def shot_change(previous: np.ndarray | None, current: np.ndarray) -> float:
    """How different two frame signatures are: half the L1 distance averaged over the two histograms, in [0, 1]
    (0 when there is no previous frame)."""
    return 0.0 if previous is None else float(np.abs(previous - current).sum() / 4.0)


class ShotCuts:
    """Shot cuts in a sequence of frames, fed one at a time (:meth:`__call__`): a frame whose
    :func:`frame_signature` differs from the previous frame's by more than ``threshold`` (:func:`shot_change`;
    0: never, and no signature is computed). ``count``: the cuts seen so far. The single-face pipeline and the
    people tracker both use it."""

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.count = 0
        self._signature: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray) -> bool:
        """Whether ``rgb`` starts a new shot."""
        if self.threshold <= 0:
            return False
        sig = frame_signature(rgb)
        cut = shot_change(self._signature, sig) > self.threshold
        self._signature = sig
        self.count += cut
        return cut


@dataclass
class _Track:
    person: int
    box: np.ndarray
    angle: float | None
    lost: int = 0


class PeopleTracker:
    """Follows every face of a frame sequence, giving each a person id kept across cuts (module docstring)."""

    def __init__(self, config: PeopleTracking | None = None, cut_threshold: float = 0.5) -> None:
        self.config = config or PeopleTracking()
        self.cut_threshold = cut_threshold
        self.tracks: list[_Track] = []  # on screen now
        self.looks: dict[int, np.ndarray] = {}  # person -> running mean appearance
        self.shots = ShotCuts(cut_threshold)

    @property
    def cuts(self) -> int:
        return self.shots.count

    def is_cut(self, rgb: np.ndarray) -> bool:
        """Whether ``rgb`` starts a new shot (compared with the previous frame given here)."""
        cut = self.shots(rgb)
        if cut:
            self.tracks = []  # nothing continues across a cut by position; people come back by appearance
        return cut

    def update(self, rgb: np.ndarray, detections: list[Detection]) -> list[PersonState]:
        """Feed a frame and its detections; get the people on it."""
        cfg, out, old = self.config, [], self.tracks
        detections = one_box_per_face(detections)
        boxes = np.stack([d.box for d in detections]) if detections else np.zeros((0, 4), np.float32)
        matched: dict[int, int] = {}  # track index -> detection index
        if old and len(boxes):
            overlap = np.stack([iou(t.box, boxes) for t in old])
            from scipy.optimize import linear_sum_assignment  # lazy: 0.4 s that single-face predict never needs

            rows, cols = linear_sum_assignment(-overlap)
            matched = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if overlap[r, c] >= cfg.iou_threshold}
        tracks = []
        for r, c in matched.items():
            out.append(self._follow(old[r], detections[c], rgb))
            tracks.append(old[r])
        taken = {t.person for t in tracks}
        for j in sorted(set(range(len(detections))) - set(matched.values())):
            track, state = self._start(detections[j], rgb, taken)  # new, or someone seen before
            tracks.append(track)
            taken.add(state.person)
            out.append(state)
        for i, t in enumerate(old):
            if i in matched or t.person in taken:
                continue
            t.lost += 1  # not seen on this frame: held for a while, then off screen
            if t.lost <= cfg.hold:
                tracks.append(t)
                out.append(PersonState(t.person, t.box.copy(), False, t.angle or 0.0))
        self.tracks = tracks
        return sorted(out, key=lambda s: s.person)

    @property
    def any_lost(self) -> bool:
        """Whether an on-screen track missed its face on the last detection (the detector then runs every frame)."""
        return any(t.lost > 0 for t in self.tracks)

    def carry(self) -> list[PersonState]:
        """The people on a frame where detection is skipped (``detect_every``): the on-screen boxes, as they are."""
        return [PersonState(t.person, t.box.copy(), False, t.angle or 0.0) for t in self.tracks
                if t.lost <= self.config.hold]

    def _follow(self, t: _Track, det: Detection, rgb: np.ndarray) -> PersonState:
        t.box, t.lost = det.box.astype(np.float32).copy(), 0
        if det.eyes is not None:
            t.angle = eye_angle(det.eyes)
        self._learn(t.person, appearance(rgb, det.box))
        return PersonState(t.person, t.box.copy(), True, t.angle or 0.0)

    def _start(self, det: Detection, rgb: np.ndarray, taken: set[int]) -> tuple[_Track, PersonState]:
        """A detection that continues no on-screen track: the best-looking match among the people not seen on this
        frame (``taken``; a held box of that person gives way), or a new person."""
        look = appearance(rgb, det.box)
        candidates = [(float(look @ v), p) for p, v in self.looks.items() if p not in taken]
        best = max(candidates, default=(-math.inf, 0))
        person = best[1] if best[0] >= self.config.reid_threshold else len(self.looks) + 1
        angle = eye_angle(det.eyes) if det.eyes is not None else None
        self._learn(person, look)
        box = det.box.astype(np.float32).copy()
        return _Track(person, box, angle), PersonState(person, box.copy(), True, angle or 0.0)

    def _learn(self, person: int, look: np.ndarray) -> None:
        old = self.looks.get(person)
        if old is None:
            self.looks[person] = look
        else:
            mixed = (1 - self.config.appearance_rate) * old + self.config.appearance_rate * look
            self.looks[person] = mixed / max(float(np.linalg.norm(mixed)), 1e-6)


@dataclass
class People:
    """The people of a video on a timeline of ``T`` steps: ``boxes`` float32 ``[P, T, 4]`` (x1, y1, x2, y2, NaN
    where the person is not on screen), ``detected`` bool ``[P, T]``, ``angles`` float32 ``[P, T]``, the steps
    where a shot cut was detected (``cuts``), the mouth motion ``[P, T]``, the persons dropped as too short, and
    counters (``stats``)."""

    times: np.ndarray
    boxes: np.ndarray
    detected: np.ndarray
    angles: np.ndarray
    cuts: np.ndarray
    mouth: np.ndarray  # [P, T] mouth motion (NaN off screen), for the speaking score
    dropped: int = 0
    stats: dict = field(default_factory=dict)

    def speaking(self, video: str | Path, window_s: float = 2.0) -> np.ndarray:
        """``[P, T]`` speaking scores in [0, 1] against ``video``'s soundtrack (NaN where the person is not on
        screen; :func:`~avaffect.features.faces.speaking.speaking_scores`). No audio track: all NaN."""
        if not len(self) or not probe(Path(video)).has_audio:
            return np.full(self.mouth.shape, np.nan)
        fps = 1.0 / float(np.median(np.diff(self.times))) if len(self.times) > 1 else 25.0
        return speaking_scores(self.mouth, audio_energy(video, self.times), fps, window_s)

    def __len__(self) -> int:
        """The number of people."""
        return int(self.boxes.shape[0])

    @property
    def on_screen(self) -> np.ndarray:
        """``[P, T]`` bool: the person's face is on screen at that step."""
        return np.isfinite(self.boxes[..., 0])

    def side_order(self) -> list[int]:
        """Person indices (0-based) from the leftmost to the rightmost, by the median centre of their boxes."""
        centres = [float(np.nanmedian((b[:, 0] + b[:, 2]) / 2)) if np.isfinite(b[:, 0]).any() else math.inf
                   for b in self.boxes]
        return sorted(range(len(self)), key=lambda p: centres[p])


def iter_people_frames(frames: Iterable[tuple[float, np.ndarray]], detector: FaceDetector,
                       pipeline: FacePipeline, stats: dict) -> Iterator[tuple[float, list[PersonState], bool]]:
    """``(frame time, people on it, whether it starts a new shot)`` per frame (each person with their mouth motion
    since the previous frame, :mod:`~avaffect.features.faces.speaking`): detection every
    ``config.detect_every``-th frame, on every cut frame and on every frame while a track is lost; boxes carried in
    between."""
    tracker = PeopleTracker(pipeline.people, pipeline.cut_threshold)
    stats.update(frames=0, detector_calls=0, cuts=0)
    since = 0
    mouths: dict[int, np.ndarray | None] = {}  # each on-screen person's mouth patch on the previous frame
    for t, rgb in frames:
        cut = tracker.is_cut(rgb)
        if cut or since % pipeline.detect_every == 0 or tracker.any_lost:
            people = tracker.update(rgb, detector.detect(rgb))
            stats["detector_calls"] += 1
            since = 0
        else:
            people = tracker.carry()
        since += 1
        patches = {s.person: mouth_patch(rgb, s.box) for s in people}
        for s in people:
            s.mouth = mouth_motion(None if cut else mouths.get(s.person), patches[s.person])
        mouths = patches
        stats["frames"] += 1
        stats["cuts"] = tracker.cuts
        yield float(t), people, cut


def track_people(video: str | Path, times: np.ndarray, pipeline: FacePipeline | None = None) -> People:
    """Every person of ``video`` on the timeline ``times`` (each step takes the decoded frame nearest to it, as in
    the face pipeline): one decode, multi-face tracking with identities (module docstring), written step by step
    into the result (memory: the result's arrays, not the video's frames), persons on screen for less than
    ``pipeline.people.min_person_s`` dropped, the rest numbered by first appearance."""
    pipeline = pipeline or FacePipeline()
    det = get_detector(pipeline.detector, **pipeline.detector_params)
    times = np.asarray(times, np.float64).reshape(-1)
    T = len(times)
    rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    stats: dict = {"frames_decoded": 0}
    serves: deque[np.ndarray] = deque()  # the steps of the frame iter_people_frames is on

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        def decoded():
            for item in iter_video_frames(Path(video)):
                stats["frames_decoded"] += 1
                yield item
        for t, rgb, steps in assign_frames(decoded(), times, pipeline.max_gap_frames):
            serves.append(steps)
            yield t, rgb

    cut_steps = []
    for _, people, cut in iter_people_frames(frames(), det, pipeline, stats):
        steps = serves.popleft()
        if cut:
            cut_steps.append(int(steps.min()))
        for s in people:
            boxes, det_, ang, mouth = rows.setdefault(s.person, (np.full((T, 4), np.nan, np.float32),
                                                                 np.zeros(T, bool), np.zeros(T, np.float32),
                                                                 np.full(T, np.nan, np.float32)))
            boxes[steps], det_[steps], ang[steps], mouth[steps] = s.box, s.detected, s.angle, s.mouth
    if not stats["frames_decoded"]:
        raise MediaError(Path(video), "cannot decode the video: no frame could be decoded", DECODE_FIX)
    fps = 1.0 / float(np.median(np.diff(times))) if T > 1 else 25.0
    keep = [p for p in sorted(rows, key=lambda p: int(np.argmax(np.isfinite(rows[p][0][:, 0]))))
            if np.isfinite(rows[p][0][:, 0]).sum() >= pipeline.people.min_person_s * fps]
    if keep:
        boxes, detected, angles, mouth = (np.stack([rows[p][i] for p in keep]) for i in range(4))
    else:
        boxes, detected, angles, mouth = (np.zeros((0, T, 4), np.float32), np.zeros((0, T), bool),
                                          np.zeros((0, T), np.float32), np.zeros((0, T), np.float32))
    stats["people_seen"] = len(rows)
    return People(times, boxes, detected, angles, np.asarray(sorted(set(cut_steps)), np.int64), mouth,
                  len(rows) - len(keep), stats)



def side_person(people: People, side: str) -> int | None:
    """The person (0-based) of a two-person video on ``side`` ("left" / "right"): of the two people on screen
    longest, the one whose boxes' median centre is further that way; ``None`` when nobody was found."""
    if not len(people):
        return None
    longest = sorted(np.argsort(-people.on_screen.sum(axis=1), kind="stable")[:2].tolist())
    order = [p for p in people.side_order() if p in longest]
    return order[0] if side == "left" else order[-1]


_SIDE_CACHE: dict[tuple, PersonFaces | None] = {}  # the last few side choices (left and right share a pass)


def person_faces(rec: Recording, pipeline: FacePipeline) -> PersonFaces | None:
    """The boxes the face pipeline cuts ``rec``'s crops from instead of tracking the largest face: its own
    ``person`` when it is one person of a video, the person on its side for ``face_choice`` left / right (one
    people pass over the video, shared by the left and the right recording), else ``None``."""
    if rec.person is not None or rec.face_choice == "largest":
        return rec.person
    if rec.video_path is None:
        raise DataError(rec.name, f"a {rec.face_choice} recording needs its video to find the face on that side",
                        "put the base video beside the annotations, or the recording's cropped_aligned folder")
    path = Path(rec.video_path)
    key = (str(path), path.stat().st_mtime_ns, pipeline.model_dump_json(exclude={"crop_size", "margin", "align"}),
           len(rec.times), float(rec.times[0]) if len(rec.times) else 0.0)
    if key not in _SIDE_CACHE:
        people = track_people(path, rec.times, pipeline)
        for side in ("left", "right"):
            p = side_person(people, side)
            nobody = PersonFaces(0, np.full((len(rec.times), 4), np.nan), np.zeros(len(rec.times)))
            _SIDE_CACHE[key + (side,)] = nobody if p is None else PersonFaces(p + 1, people.boxes[p], people.angles[p])
        _SIDE_CACHE[key] = None
        while len(_SIDE_CACHE) > 12:
            _SIDE_CACHE.pop(next(iter(_SIDE_CACHE)))
    return _SIDE_CACHE.get(key + (rec.face_choice,))
