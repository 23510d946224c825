"""The feature pipeline of a run: its two extractors over one feature store — extract what is missing
(resumable, in worker processes), then load a recording's features aligned with its labels.

The missing-face rule (:func:`~avaffect.features.extractors.base.face_mask_from_features`) holds
for training, evaluation and prediction alike: a visual extractor writes an all-zero vector where it found no face,
so a step counts as a face only where the recording allows one (``rec.face_mask``) *and* its visual vector is not
all zero.

Memory: :meth:`FeaturePipeline.load` does not copy a recording's features out of the store; its
:class:`RecordingFeatures` holds :class:`~avaffect.features.store.StoredFeatures` (rows read on demand) and the
small per-step arrays (labels, times, face mask). Loading reads the features once in chunks — every value checked
finite, the face mask computed — and, given :class:`TrainingStatistics`, accumulates the normalisation statistics in
the same pass; memory stays one chunk whatever the number or length of the recordings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaffect.data.recording import TARGETS, Recording
from avaffect.errors import AvaffectError, DataError
from avaffect.features.extractors.base import Extractor, ExtractorSpec, build_extractor, face_mask_from_features
from avaffect.features.statistics import RunningMoments
from avaffect.features.store import FeatureStore, StoredFeatures, require_finite
from avaffect.features.store_extraction import extract_features

__all__ = ["FeaturePipeline", "RecordingFeatures", "TrainingStatistics"]

SCAN_ROWS = 2048  # rows per chunk when a recording's features are read through (2048 x 2048 float32: 16 MiB)


@dataclass
class RecordingFeatures:
    """One recording's aligned features and labels (``[T, d_a]``, ``[T, d_v]``, ``[T, K]``, ``[T]``). The features
    are arrays or :class:`StoredFeatures` (read on demand; ``f.audio[a:b]`` reads those rows)."""

    name: str
    audio: np.ndarray | StoredFeatures
    video: np.ndarray | StoredFeatures
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

    def load(self, rec: Recording, targets: Sequence[str] = TARGETS,
             statistics: TrainingStatistics | None = None) -> RecordingFeatures:
        """``rec``'s features (read on demand, not copied), its labels for ``targets`` and its face mask. Reads the
        features through once: every value must be finite (else a :class:`DataError` naming the file); with
        ``statistics``, the recording's rows are added to them (pass 1)."""
        audio = self.store.open(self.audio.id, rec.name)
        video = self.store.open(self.video.id, rec.name)
        for ex, arr in ((self.audio, audio), (self.video, video)):
            if len(arr) != rec.num_steps:
                raise DataError(arr.path, f"{len(arr)} feature steps but the recording has {rec.num_steps}",
                                "delete the stale feature file and extract again")
            if arr.shape[1] != ex.dim:
                raise DataError(arr.path, f"{arr.shape[1]} feature dimensions, extractor {ex.id} gives {ex.dim}",
                                "delete the stale feature file and extract again")
        face = np.asarray(rec.face_mask, dtype=bool).copy()
        for start in range(0, rec.num_steps, SCAN_ROWS):
            a, v = audio.rows(start, start + SCAN_ROWS), video.rows(start, start + SCAN_ROWS)
            for arr, rows in ((audio, a), (video, v)):
                require_finite(arr.path, rows)
            face[start:start + len(v)] = face_mask_from_features(face[start:start + len(v)], v)
            if statistics is not None:
                statistics.audio.add(a)
                statistics.video.add(v[face[start:start + len(v)]])
        labels = rec.labels[:, [TARGETS.index(t) for t in targets]]
        return RecordingFeatures(rec.name, audio, video, labels, face, rec.times)

    def load_all(self, recordings: Sequence[Recording], targets: Sequence[str] = TARGETS,
                 progress: bool = True, statistics: TrainingStatistics | None = None) -> list[RecordingFeatures]:
        """:meth:`ensure` then :meth:`load` each recording (``statistics``: see :meth:`load`)."""
        self.ensure(recordings, progress)
        return [self.load(r, targets, statistics) for r in recordings]


@dataclass
class TrainingStatistics:
    """The normalisation statistics of the training split (audio: every step; video: face steps), accumulated
    chunk by chunk: :meth:`FeaturePipeline.load` adds each training recording (pass 1), :meth:`finish` reads them
    again for the deviations (pass 2). Equal to the mean/std of the concatenated features
    (:mod:`avaffect.features.statistics`)."""

    audio: RunningMoments
    video: RunningMoments

    @classmethod
    def of(cls, pipeline: FeaturePipeline) -> TrainingStatistics:
        return cls(RunningMoments(pipeline.audio.dim), RunningMoments(pipeline.video.dim))

    def finish(self, recordings: Sequence[RecordingFeatures]) -> TrainingStatistics:
        """Pass 2 over the recordings pass 1 saw (in the same order)."""
        for f in recordings:
            for start in range(0, len(f), SCAN_ROWS):
                self.audio.add_deviation(f.audio[start:start + SCAN_ROWS])
                self.video.add_deviation(f.video[start:start + SCAN_ROWS][f.face_mask[start:start + SCAN_ROWS]])
        return self
