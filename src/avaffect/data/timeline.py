"""Fitting a recording's timeline: label rows against the video's frames, time labels against the media's
duration, face crops against the steps. Every reader (Aff-Wild2, RECOLA, manifest, a video folder) uses
these, so one rule holds everywhere:

- **Frame labels** (one row per video frame, or rows at given frame numbers) must match the video's frame
  count within ``length_tolerance`` frames. Within it, extra rows are dropped and missing rows become NaN
  (both logged); beyond it a :class:`~avaffect.errors.DataError` names the label file and the video.
- **Time labels** may run at most :data:`MEDIA_SLACK_S` past the end of their media (encoder rounding).
- **Crops**: a crop numbered past the last step (+ tolerance) means the folder belongs to another video.
  With a crops folder the face mask is "a crop exists"; without one every step may hold a face (faces are
  found at extraction time, and an all-zero visual vector marks a step without one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaffect.data.layout import crop_indices, crop_name
from avaffect.errors import DataError
from avaffect.media import probe, video_frame_times

log = logging.getLogger(__name__)

__all__ = ["MEDIA_SLACK_S", "VideoTimeline", "check_label_times", "crops_face_mask", "fit_frame_labels",
           "nominal_fps", "read_video_timeline"]

MEDIA_SLACK_S = 1.0  # time labels may run this far past the end of the media


@dataclass(frozen=True)
class VideoTimeline:
    """What a reader needs from a video: its frame times (from the stream), frame rate, duration, streams."""

    path: Path
    times: np.ndarray
    fps: float
    duration: float
    has_video: bool
    has_audio: bool

    @property
    def num_frames(self) -> int:
        return len(self.times)


def read_video_timeline(path: str | Path, default_fps: float) -> VideoTimeline:
    """Probe ``path`` and read its frame timestamps (no decoding); the duration covers the last frame."""
    path = Path(path)
    info = probe(path)
    fps = info.fps or default_fps
    times = video_frame_times(path) if info.has_video else np.zeros(0)
    duration = max(info.duration, float(times[-1]) + 1.0 / fps) if len(times) else info.duration
    return VideoTimeline(path, times, fps, duration, info.has_video, info.has_audio)


def nominal_fps(times: np.ndarray, default: float) -> float:
    """The frame rate a time-stamped label timeline implies (median step), ``default`` for a single step."""
    diffs = np.diff(np.asarray(times, dtype=np.float64))
    return float(1.0 / np.median(diffs)) if len(diffs) else default


def fit_frame_labels(labels: np.ndarray, num_frames: int, length_tolerance: int, label_path: Path | None,
                     video: Path | None, frames: np.ndarray | None = None, noun: str = "annotation rows",
                     short_is_error: bool = True) -> np.ndarray:
    """``labels [N, 2]`` placed on ``num_frames`` video frames: ``[num_frames, 2]``, NaN where unannotated.

    ``frames`` are the 0-based frame numbers of the rows (None: row ``i`` is frame ``i``); the label count is
    then the last frame + 1. More labels than frames by more than ``length_tolerance`` is an error; fewer is
    an error too when ``short_is_error`` (a row-per-frame file must cover the video) and otherwise means the
    last frames are unannotated. Within the tolerance the difference is logged and trimmed / padded."""
    labels = np.asarray(labels, dtype=np.float32)
    idx = np.arange(len(labels)) if frames is None else np.asarray(frames, dtype=np.int64)
    count = int(idx[-1]) + 1 if len(idx) else 0
    diff = count - num_frames
    if diff > length_tolerance or (short_is_error and -diff > length_tolerance):
        raise DataError(label_path, f"{count} {noun} but the video {video} has {num_frames} frames",
                        "the labels must have one row per video frame; fix the file or pass a length tolerance "
                        "to pad/trim small differences")
    if diff > 0:
        log.warning("%s: %d %s vs %d video frames; dropping the extra ones", label_path, count, noun, num_frames)
    elif diff < 0 and short_is_error:
        log.warning("%s: %d %s vs %d video frames; the missing ones are unannotated", label_path, count, noun,
                    num_frames)
    out = np.full((num_frames, labels.shape[1] if labels.ndim == 2 else 2), np.nan, dtype=np.float32)
    keep = idx < num_frames
    out[idx[keep]] = labels[keep]
    return out


def check_label_times(times: np.ndarray, duration: float | None, label_path: Path | None, media: Path | None,
                      fix: str) -> None:
    """Time labels must not run past the media's end by more than :data:`MEDIA_SLACK_S`."""
    if duration and duration > 0 and len(times) and times[-1] > duration + MEDIA_SLACK_S:
        raise DataError(label_path, f"labels run to {times[-1]:.2f} s but {media} lasts {duration:.2f} s", fix)


def crops_face_mask(crops_dir: Path | None, num_steps: int, tolerance: int, fix: str,
                    where: str = "the recording") -> np.ndarray:
    """``[num_steps]`` bool face mask of a recording's crops folder (all True without a folder).

    A crop numbered past ``num_steps + tolerance`` raises :class:`DataError` with ``fix``."""
    if crops_dir is None or not Path(crops_dir).is_dir():
        return np.ones(num_steps, dtype=bool)
    faces = crop_indices(crops_dir)
    if len(faces) and faces[-1] >= num_steps + tolerance:
        raise DataError(crops_dir, f"crop {crop_name(int(faces[-1]))} lies beyond the {num_steps} steps of {where}",
                        fix)
    mask = np.zeros(num_steps, dtype=bool)
    mask[faces[faces < num_steps]] = True
    return mask
