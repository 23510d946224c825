"""Where a recording's faces come from: the one rule every extractor, ``predict`` and the checkpoint's
preprocessing spec follow.

``source``:

- ``"crops"``: the dataset's own face crops (Aff-Wild2 ``cropped_aligned/<video>/00001.jpg``, a manifest's
  ``crops`` column); an error when the recording has none.
- ``"video"``: run the face detector (+ tracking and alignment) on the recording's video.
- ``"auto"`` (default): the crops when the recording has a crops folder, else the video.

The ``precomputed`` detector means ``"crops"`` whatever ``source`` says. Nothing else (a detector's name, a
dataset's name, a path next to the video) changes the choice. A recording whose timeline came from a feature store
(its media are not here, :attr:`~avaffect.data.recording.Recording.stored`) answers with the media it had when its
features were extracted.
"""

from __future__ import annotations

from typing import Literal

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError, DataError

__all__ = ["FACE_SOURCES", "FaceSource", "check_face_source", "resolve_face_source"]

FaceSource = Literal["auto", "crops", "video"]
FACE_SOURCES: tuple[str, ...] = ("auto", "crops", "video")


def check_face_source(source: str) -> str:
    if source not in FACE_SOURCES:
        raise ConfigError(f"face source must be one of {', '.join(FACE_SOURCES)}, got {source!r}")
    return source


def resolve_face_source(rec: Recording, source: str = "auto", detector: str = "haar") -> Literal["crops", "video"]:
    """``"crops"`` or ``"video"`` for ``rec`` (see the module docstring); a :class:`DataError` naming the
    recording when the chosen source is missing."""
    check_face_source(source)
    if detector == "precomputed" or source == "crops":
        if not rec.has_crops:
            raise DataError(None, f"recording {rec.name} has no face crops folder (face source: crops"
                            f"{', detector: precomputed' if detector == 'precomputed' else ''})",
                            "point the recording at its cropped_aligned/<video>/ folder, or use face source "
                            "'video' with a detector such as 'haar'")
        return "crops"
    if source == "video" or not rec.has_crops:
        if not rec.has_video:
            raise DataError(None, f"recording {rec.name} has neither a video nor a face crops folder",
                            "give the recording's video path (or its cropped_aligned folder)")
        return "video"
    return "crops"
