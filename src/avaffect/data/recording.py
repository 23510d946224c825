"""The recording: one video + its audio + one face (one person) of it, on a label timeline (docs/design.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avaffect.data.layout import crop_path

TARGETS: tuple[str, str] = ("valence", "arousal")

#: which face of its video a recording describes when its faces are detected on the video (not read from a crops
#: folder): the largest one, followed by the single-face tracker, or the person on the left / right of a
#: two-person video (Aff-Wild2's ``_left`` / ``_right`` recordings), found by the multi-person tracker
FACE_CHOICES: tuple[str, ...] = ("largest", "left", "right")


@dataclass(frozen=True, eq=False)
class PersonFaces:
    """One person's face boxes on a recording's timeline, from a pass over the whole video that tracked every face
    (:func:`avaffect.features.faces.people.track_people`): ``person`` (1, 2, ... by first appearance),
    ``boxes`` float32 ``[T, 4]`` (x1, y1, x2, y2 in frame pixels, NaN where the person is not on screen) and
    ``angles`` float32 ``[T]`` (the eye-line angle in degrees, for the alignment)."""

    person: int
    boxes: np.ndarray
    angles: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", np.asarray(self.boxes, np.float32).reshape(-1, 4))
        object.__setattr__(self, "angles", np.asarray(self.angles, np.float32).reshape(len(self.boxes)))


@dataclass(frozen=True)
class StoredMedia:
    """What a recording's media were when its features were extracted, for a recording whose timeline was read
    from a feature store's timeline index instead of its media (:mod:`avaffect.data.timeline_index`): the media
    are not here, so the features cannot be extracted again, only used.

    ``source``: the media signature the timeline (and so the features) came from (file name → size, time,
    sha256); ``video`` / ``crops``: whether the recording had a video / a face crops folder."""

    source: dict
    video: bool
    crops: bool


@dataclass
class Recording:
    """One recording and its timeline.

    The timeline has one step per label frame (Aff-Wild2: one per video frame). ``labels`` holds
    (valence, arousal) per step, NaN where not annotated; ``face_mask`` says whether a face crop
    exists for the step. Media paths are optional: a test-set recording has no labels, a
    video-only recording no audio.
    """

    name: str
    times: np.ndarray  # [T] float64 seconds
    labels: np.ndarray  # [T, 2] float32, NaN where not annotated
    face_mask: np.ndarray  # [T] bool
    split: str = "train"
    video_path: Path | None = None
    audio_path: Path | None = None  # where the audio comes from (Aff-Wild2 _left/_right share the base video's)
    crops_dir: Path | None = None
    annotation_path: Path | None = None
    subject: str | None = None
    fps: float = 30.0
    extra: dict = field(default_factory=dict)
    stored: StoredMedia | None = None  # the timeline came from a feature store, not from media (which are absent)
    face_choice: str = "largest"  # which face of the video, when faces are detected on it (FACE_CHOICES)
    person: PersonFaces | None = None  # this person's boxes, when the recording is one person of a video

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64)
        self.labels = np.asarray(self.labels, dtype=np.float32).reshape(len(self.times), -1)
        self.face_mask = np.asarray(self.face_mask, dtype=bool).reshape(len(self.times))
        if self.face_choice not in FACE_CHOICES:
            raise ValueError(f"face_choice must be one of {FACE_CHOICES}, got {self.face_choice!r}")
        if self.person is not None and len(self.person.boxes) != len(self.times):
            raise ValueError(f"recording {self.name}: {len(self.person.boxes)} person boxes for "
                             f"{len(self.times)} steps")

    @property
    def num_steps(self) -> int:
        """Timeline steps (the rows of ``times``, ``labels`` and every feature array): video frames for a video
        timeline, one per label row or per clip otherwise."""
        return int(len(self.times))

    @property
    def has_video(self) -> bool:
        """A video here, or (timeline from a feature store) one when the features were extracted."""
        return self.video_path is not None or bool(self.stored and self.stored.video)

    @property
    def has_crops(self) -> bool:
        """A face crops folder here, or (timeline from a feature store) one when the features were extracted."""
        return self.crops_dir is not None or bool(self.stored and self.stored.crops)

    @property
    def label_mask(self) -> np.ndarray:
        """[T] bool: every target annotated at that step."""
        return np.all(np.isfinite(self.labels), axis=1)

    @property
    def has_labels(self) -> bool:
        return bool(self.label_mask.any())

    def crop_path(self, index: int) -> Path:
        """Path of the face crop of step ``index`` (0-based) in the Aff-Wild2 ``00001.jpg`` naming."""
        if self.crops_dir is None:
            raise ValueError(f"recording {self.name} has no crops folder")
        return crop_path(self.crops_dir, index)
