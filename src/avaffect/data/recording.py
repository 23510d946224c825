"""The recording: one video + its audio + one tracked face, on a label timeline (SPEC §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avaffect.data.layout import crop_path

TARGETS: tuple[str, str] = ("valence", "arousal")


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

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64)
        self.labels = np.asarray(self.labels, dtype=np.float32).reshape(len(self.times), -1)
        self.face_mask = np.asarray(self.face_mask, dtype=bool).reshape(len(self.times))

    @property
    def num_frames(self) -> int:
        return int(len(self.times))

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
