"""The face pipeline's settings, declared and checked here only: :class:`FacePipeline`.

Everything between a video frame and a face crop — the detector and its own parameters, how often it runs, shot
cuts, the single-face tracker (:class:`Tracking`), the multi-person tracker (:class:`PeopleTracking`), alignment,
margin and crop size — is one typed, validated value. The functions of :mod:`avaffect.features.faces` take it;
a face extractor's typed parameters carry the fields it lets a config change (:func:`face_field`: the same
declaration, with the extractor's own default), and :meth:`avaffect.features.extractors.Extractor.crop_request`
turns them into a pipeline; a checkpoint's preprocessing spec stores the pipeline its model was trained with.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from avaffect.errors import ConfigError, validation_message

__all__ = ["FacePipeline", "PeopleTracking", "Tracking", "face_field", "face_pipeline"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tracking(_Settings):
    """The single-face tracker (:class:`~avaffect.features.faces.tracking.FaceTracker`; counts in processed
    frames)."""

    iou_threshold: float = Field(0.3, gt=0, le=1, description="a detection continues the track at this IoU or more")
    max_center_shift: float = Field(0.5, ge=0, description="else the nearest one, if its centre moved less than "
                                    "this many box sides (and its size changed less than 2x)")
    hold: int = Field(3, ge=0, description="frames a lost face keeps its last box (a detector drop-out)")
    reacquire_after: int = Field(15, ge=0, description="lost frames before the track ends and the largest face "
                                 "starts a new one")
    smoothing: float = Field(0.5, ge=0, lt=1, description="exponential smoothing of the box and eye angle "
                             "(0: none)")


class PeopleTracking(_Settings):
    """The multi-person tracker (:class:`~avaffect.features.faces.people.PeopleTracker`)."""

    iou_threshold: float = Field(0.3, gt=0, le=1, description="a detection continues an on-screen track at this "
                                 "IoU or more")
    hold: int = Field(3, ge=0, description="frames a lost face keeps its last box")
    reid_threshold: float = Field(0.6, gt=-1, le=1, description="appearance similarity (cosine) at which a face "
                                  "is someone seen before")
    appearance_rate: float = Field(0.1, gt=0, le=1, description="how fast a person's appearance follows their "
                                   "latest faces")
    min_person_s: float = Field(0.5, ge=0, description="persons on screen for less than this are dropped")


class FacePipeline(_Settings):
    """Every setting of the face pipeline, checked when it is built (module docstring)."""

    detector: str = Field("haar", min_length=1, description="face detector (avaffect detectors: haar, dlib, "
                          "yunet, retinaface, mediapipe, precomputed; auto: mediapipe where avaffect[faces] and its "
                          "model file are installed, else haar)")
    detector_params: dict[str, Any] = Field(default_factory=dict, description="the detector's own parameters "
                                            "(e.g. weights, min_face)")
    crop_size: int = Field(112, ge=16, description="side of the square face crop (px)")
    detect_every: int = Field(1, ge=1, description="run the face detector on every k-th frame only, tracking in "
                              "between (1: the detector on every frame)")
    eyes_every: int = Field(1, ge=1, description="with a detector whose eyes are a second search (haar), search the "
                            "eyes of the face followed on every k-th of its detections only, its angle carried in "
                            "between; a new track searches at once (1: every detection; 2 halves the eye search, "
                            "Haar's costliest step: docs/benchmarks/face_speed.md)")
    margin: float = Field(0.15, ge=0, description="border around the face box on each side, as a fraction of its "
                          "side")
    align: bool = Field(True, description="level the eyes when the detector gives them")
    roi_search: bool = Field(True, description="while a track holds, search around it first (faster)")
    roi_pad: float = Field(0.5, gt=0, description="that search reaches this many box sides beyond the track's box "
                           "(1 until 2026-12; docs/benchmarks/face_speed.md)")
    cut_threshold: float = Field(0.5, ge=0, le=1, description="a shot cut: the frame's colour histogram changed "
                                 "by more than this (0: never)")
    max_gap_frames: float = Field(1.5, gt=0, description="a step farther than this many frame intervals from its "
                                  "nearest frame has no face")
    tracking: Tracking = Field(default_factory=Tracking, description="the single-face tracker")
    people: PeopleTracking = Field(default_factory=PeopleTracking, description="the multi-person tracker")


def face_pipeline(**settings: Any) -> FacePipeline:
    """A :class:`FacePipeline` from keyword settings; a bad one is a :class:`ConfigError` naming it."""
    try:
        return FacePipeline(**settings)
    except ValidationError as e:
        allowed = ", ".join(FacePipeline.model_fields)
        raise ConfigError(f"face pipeline: {validation_message(e)} (settings: {allowed})") from None


def face_field(name: str, default: Any = ...) -> FieldInfo:
    """The :class:`FacePipeline` declaration of ``name`` (its limits and description), with ``default`` instead of
    the pipeline's: what a face extractor's typed parameters use for the face settings it exposes."""
    declared = FacePipeline.model_fields[name]
    return FieldInfo.merge_field_infos(declared, default=declared.default if default is ... else default)
