"""Pieces both predictors' paths share: the overlay drawn during a streaming pass and the whole-video path's
features with the faces' boxes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaffect.data.recording import Recording
from avaffect.evaluation.overlay import StreamingOverlay
from avaffect.features.extractors import Extractor
from avaffect.features.extractors.base import face_mask_from_features
from avaffect.features.faces import load_face_crops
from avaffect.features.faces.pipeline import FacePipeline


@dataclass
class DrawnOverlay:
    """The overlay a streaming pass wrote (set when the pass ends without an error)."""

    path: Path | None = None
    frames_buffered: int | None = None


@contextmanager
def overlay_pass(rec: Recording, overlay_to: Path | None, drawn: DrawnOverlay) -> Iterator[StreamingOverlay | None]:
    """The overlay drawn during a streaming pass (``None`` when not asked for): removed if the pass fails, else
    closed into ``drawn`` (with its peak of buffered frames)."""
    if overlay_to is None:
        yield None
        return
    overlay = StreamingOverlay(rec.video_path, overlay_to, rec.num_steps)
    try:
        yield overlay
    except BaseException:
        overlay.abort()
        raise
    drawn.path = overlay.close()
    drawn.frames_buffered = overlay.peak_buffered


def whole_video_features(rec: Recording, extractor: Extractor, fallback: FacePipeline | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The whole-video path: ``(features [T, d], face mask [T], boxes [T, 4] or None)``. On a video the faces are
    found once, by the extractor's own face pipeline (else ``fallback``, for the overlay's boxes), and an extractor
    that describes face crops describes that very track's crops (no second detection pass); a recording read from
    its crops folder has no boxes."""
    boxes = None
    pipeline = extractor.crop_request(rec)
    if rec.crops_dir is None and (pipeline or fallback) is not None:
        track = load_face_crops(rec, pipeline or fallback)
        boxes = track.boxes
        if pipeline is not None:
            mask = track.crop_present & np.asarray(rec.face_mask, bool)
            feats = np.asarray(extractor.features_in_context(track.crops, mask, 0, rec.num_steps), np.float32)
            return feats, face_mask_from_features(rec.face_mask, feats), boxes
    feats = extractor.extract(rec)
    return feats, face_mask_from_features(rec.face_mask, feats), boxes
