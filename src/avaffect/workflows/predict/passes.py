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


def whole_video_features(rec: Recording, extractor: Extractor, fallback: tuple | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The whole-video path: ``(features [T, d], face mask [T], boxes [T, 4] or None)``. On a video the faces are
    detected once, with the extractor's own face-pipeline settings (else ``fallback``: ``(size, detector,
    params)``), for the overlay's boxes; the extractor then reuses those crops (cached in the recording)."""
    boxes = None
    if rec.crops_dir is None:
        request = extractor.crop_request(rec) or fallback
        if request is not None:
            size, detector, params = request
            _, _, boxes = load_face_crops(rec, size=size, detector=detector, **params)
    feats = extractor.extract(rec)
    return feats, face_mask_from_features(rec.face_mask, feats), boxes
