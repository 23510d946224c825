"""The feature pipeline of a run: its two extractors over one feature store — extract what is missing
(resumable, in worker processes), then load a recording's features aligned with its labels.

The missing-face rule (:func:`~avaffect.features.extractors.base.face_mask_from_features`, re-exported here) holds
for training, evaluation and prediction alike: a visual extractor writes an all-zero vector where it found no face,
so a step counts as a face only where the recording allows one (``rec.face_mask``) *and* its visual vector is not
all zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaffect.data.recording import TARGETS, Recording
from avaffect.errors import AvaffectError, DataError
from avaffect.features.extract import extract_features
from avaffect.features.extractors.base import Extractor, ExtractorSpec, build_extractor, face_mask_from_features
from avaffect.features.store import FeatureStore

__all__ = ["FeaturePipeline", "RecordingFeatures", "face_mask_from_features"]


@dataclass
class RecordingFeatures:
    """One recording's aligned features and labels (``[T, d_a]``, ``[T, d_v]``, ``[T, K]``, ``[T]``)."""

    name: str
    audio: np.ndarray
    video: np.ndarray
    labels: np.ndarray
    face_mask: np.ndarray
    times: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        for field in ("audio", "video", "face_mask", "times"):
            if len(getattr(self, field)) != n:
                raise ValueError(f"{self.name}: {field} has {len(getattr(self, field))} steps, labels {n}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FeaturePipeline:
    """An audio and a visual extractor writing to (and reading from) one feature store."""

    audio: Extractor
    video: Extractor
    store: FeatureStore
    workers: int = 1

    @classmethod
    def from_specs(cls, audio: ExtractorSpec, video: ExtractorSpec, store: str | Path,
                   workers: int = 1) -> FeaturePipeline:
        return cls(build_extractor(audio), build_extractor(video), FeatureStore(store), workers)

    @property
    def extractors(self) -> tuple[Extractor, Extractor]:
        return self.audio, self.video

    def missing_weights(self) -> list[str]:
        """One line per extractor whose weight file is not here (what to download and where it goes)."""
        out = []
        for ex in self.extractors:
            if hasattr(ex, "weights_path"):  # a learned backbone
                try:
                    ex.weights_path()
                except AvaffectError as e:
                    out.append(f"{ex.name}: {e}")
        return out

    def check_weights(self) -> None:
        """Before any work: every weight file the extractors need is here, else one error listing them all."""
        missing = self.missing_weights()
        if missing:
            raise AvaffectError("the backbone weights this configuration needs are not here (nothing was done):\n"
                                + "\n".join(f"  - {m}" for m in missing)
                                + "\nOr train the row's weight-free variant (the offline face_hog / logmel_stats "
                                "features instead of the backbones): `avaffect train ... --weight-free`.")

    def ensure(self, recordings: Sequence[Recording], progress: bool = True) -> None:
        """Extract what is missing (resumable); raise if a needed recording failed."""
        summary = extract_features(list(recordings), [self.audio, self.video], self.store, workers=self.workers,
                                   progress=progress)
        if not summary.ok:
            raise AvaffectError(f"feature extraction failed:\n{summary.format()}")

    def load(self, rec: Recording, targets: Sequence[str] = TARGETS) -> RecordingFeatures:
        """``rec``'s features (copied out of the store), its labels for ``targets`` and its face mask."""
        audio = np.array(self.store.load(self.audio.id, rec.name), dtype=np.float32)
        video = np.array(self.store.load(self.video.id, rec.name), dtype=np.float32)
        for ex, arr in ((self.audio, audio), (self.video, video)):
            if len(arr) != rec.num_frames:
                raise DataError(self.store.path(ex.id, rec.name),
                                f"{len(arr)} feature steps but the recording has {rec.num_frames}",
                                "delete the stale feature file and extract again")
        labels = rec.labels[:, [TARGETS.index(t) for t in targets]]
        return RecordingFeatures(rec.name, audio, video, labels, face_mask_from_features(rec.face_mask, video),
                                 rec.times)

    def load_all(self, recordings: Sequence[Recording], targets: Sequence[str] = TARGETS,
                 progress: bool = True) -> list[RecordingFeatures]:
        """:meth:`ensure` then :meth:`load` each recording."""
        self.ensure(recordings, progress)
        return [self.load(r, targets) for r in recordings]
