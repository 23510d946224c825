"""Single-face tracking by detection: one face per recording, followed from frame to frame.

Rules (:class:`FaceTracker`; the settings are :class:`~avaffect.features.faces.pipeline.Tracking`):

* **start**: the largest detection of the first frame that has faces;
* **follow**: on each frame, the detection with the highest IoU with the current box when it is
  at least ``iou_threshold``; else the one whose centre is nearest, if it moved less than
  ``max_center_shift`` x the box side and its size changed less than 2x; other faces are ignored,
  even larger ones;
* **lost**: a frame where no detection matches. For up to ``hold`` such frames in a row the last
  box is kept (a detector drop-out is not a missing face: the frame still has a face); after that
  the frame has no face. After ``reacquire_after`` lost frames the track is dropped and the next
  frame with faces starts a new one on its largest face;
* **smoothing**: the box (and the eye-line angle) is an exponential moving average,
  ``new = smoothing * previous + (1 - smoothing) * detected`` (0: none), restarted with each track.
  A detection without eyes keeps the track's previous angle.

Counts are in processed frames (the frames a caller feeds to :meth:`FaceTracker.update`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avaffect.errors import ConfigError
from avaffect.features.faces.align import eye_angle
from avaffect.features.faces.detectors import Detection
from avaffect.features.faces.pipeline import Tracking, face_pipeline

__all__ = ["TrackState", "FaceTracker", "iou", "match_detection", "select_largest"]


@dataclass
class TrackState:
    """The tracker's answer for one frame: ``box`` (smoothed, float32 [4]) or ``None`` when the frame
    has no face; ``detected``: the box comes from a detection on this frame (not held); ``angle``:
    the smoothed eye-line angle in degrees (0 when never measured); ``detection``: the matched raw
    detection, if any."""

    box: np.ndarray | None
    detected: bool
    angle: float
    detection: Detection | None = None


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box ``[4]`` with ``[N, 4]`` boxes (x1, y1, x2, y2)."""
    box = np.asarray(box, dtype=np.float64).reshape(4)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def select_largest(detections: list[Detection]) -> Detection | None:
    """The detection with the largest box area (ties: the higher score)."""
    if not detections:
        return None
    return max(detections, key=lambda d: (d.area, d.score))


def match_detection(box: np.ndarray, detections: list[Detection], config: Tracking) -> Detection | None:
    """The detection that continues a track whose box is ``box`` (the *follow* rule of the module docstring), or
    ``None``: what :meth:`FaceTracker.update` matches, also for a caller that needs to know it ahead (the face
    pipeline searches that face's eyes on its detection worker)."""
    if not detections:
        return None
    boxes = np.stack([d.box for d in detections])
    overlaps = iou(box, boxes)
    best = int(np.argmax(overlaps))
    if overlaps[best] >= config.iou_threshold:
        return detections[best]
    side = float(max(box[2] - box[0], box[3] - box[1], 1.0))
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist = np.linalg.norm(centres - centre, axis=1) / side
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    ratio = np.maximum(sides / side, side / np.maximum(sides, 1e-6))
    dist = np.where(ratio < 2.0, dist, np.inf)
    best = int(np.argmin(dist))
    if dist[best] <= config.max_center_shift:
        return detections[best]
    return None


class FaceTracker:
    """Follows one face through a sequence of per-frame detections (module docstring)."""

    def __init__(self, config: Tracking | None = None, **params) -> None:
        """``config``: the tracking settings (:class:`~avaffect.features.faces.pipeline.Tracking`), or its fields
        as keywords."""
        if config is not None and params:
            raise ConfigError("give a Tracking or keyword parameters, not both")
        self.config = config or face_pipeline(tracking=params).tracking
        self.reset()

    def reset(self) -> None:
        self.box: np.ndarray | None = None  # smoothed box of the current track
        self.angle: float | None = None
        self.lost = 0
        self.tracks_started = 0

    @property
    def active(self) -> bool:
        return self.box is not None

    def _match(self, detections: list[Detection]) -> Detection | None:
        assert self.box is not None
        return match_detection(self.box, detections, self.config)

    def _start(self, det: Detection) -> TrackState:
        self.box = det.box.astype(np.float32).copy()
        self.angle = None
        if det.eyes is not None:
            self.observe_eyes(det.eyes)
        self.lost = 0
        self.tracks_started += 1
        return TrackState(self.box.copy(), True, self.angle or 0.0, det)

    def update(self, detections: list[Detection]) -> TrackState:
        """Feed the detections of the next frame; get the tracked face of that frame."""
        cfg = self.config
        if self.box is None:
            first = select_largest(detections)
            return self._start(first) if first is not None else TrackState(None, False, 0.0)
        det = self._match(detections) if detections else None
        if det is None:
            self.lost += 1
            if self.lost > cfg.reacquire_after:
                self.reset_track()
                first = select_largest(detections)
                return self._start(first) if first is not None else TrackState(None, False, 0.0)
            if self.lost <= cfg.hold:
                return TrackState(self.box.copy(), False, self.angle or 0.0)
            return TrackState(None, False, self.angle or 0.0)
        self.lost = 0
        a = cfg.smoothing
        self.box = (a * self.box + (1.0 - a) * det.box).astype(np.float32)
        if det.eyes is not None:
            self.observe_eyes(det.eyes)
        return TrackState(self.box.copy(), True, self.angle or 0.0, det)

    def observe_eyes(self, eyes: np.ndarray) -> float:
        """Take the eye centres ``[2, 2]`` of the detection the last :meth:`update` matched into the angle (what
        :meth:`update` does when that detection carries them): the angle after it. The box never depends on the
        eyes, so a caller may match boxes first and search the eyes of the matched face only, later."""
        measured = eye_angle(eyes)
        a = self.config.smoothing
        self.angle = measured if self.angle is None else a * self.angle + (1.0 - a) * measured
        return self.angle

    def carry(self) -> TrackState:
        """The state on a frame where detection is skipped (``detect_every``): the current box, as is."""
        if self.box is None or self.lost > self.config.hold:
            return TrackState(None, False, self.angle or 0.0)
        return TrackState(self.box.copy(), False, self.angle or 0.0)

    def reset_track(self) -> None:
        """Drop the current track (the next frame with faces starts a new one)."""
        self.box = None
        self.angle = None
        self.lost = 0
