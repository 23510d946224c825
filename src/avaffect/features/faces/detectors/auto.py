"""``auto``: the fastest accurate face detector this install has.

``auto`` tries :data:`AUTO_ORDER` in order and runs the first whose runtime and files are installed
(:meth:`~avaffect.features.faces.detectors.base.FaceDetector.available`): MediaPipe's short-range BlazeFace where
``pip install 'avaffect[faces]'`` put LiteRT and ``avaffect weights import`` its model file (``make install`` does
both), Haar, which needs nothing but OpenCV, elsewhere. On the CREMA-D clips the two flag the same frames as faces and
a MediaPipe detection costs a fraction of Haar's, whose eye search it does not need (BlazeFace gives the eyes):
``docs/benchmarks/face_auto.md``, with the boxes' agreement and the synthetic and moving-face sets.

A config and a checkpoint keep the name ``auto``; what ran is resolved when the detector is built
(:func:`resolve_detector`) and named where it matters: predict's JSON (``face_source``), a feature id (features cut
by different detectors are different features), and a checkpoint whose training crops the detector cut (it records
the detector that cut them, so that prediction elsewhere cuts the same crops or says what to install). A model that
never saw the detector's crops (the demo's, trained on the synthetic set's crops folder) keeps ``auto``: each
machine predicts with the best detector it has.
"""

from __future__ import annotations

from typing import Any

from avaffect.errors import ConfigError
from avaffect.features.faces.detectors.base import FaceDetector, get_detector, register_detector
from avaffect.features.faces.detectors.haar import HaarDetector
from avaffect.features.faces.detectors.mediapipe import MediaPipeDetector

__all__ = ["AUTO", "AUTO_ORDER", "AutoDetector", "resolve_detector"]

#: the detector name that stands for "the fastest accurate detector this install has"
AUTO = "auto"
#: what ``auto`` tries, in order (the last needs nothing but OpenCV)
AUTO_ORDER: tuple[type[FaceDetector], ...] = (MediaPipeDetector, HaarDetector)


def resolve_detector(name: str) -> str:
    """The detector ``name`` stands for: itself, or for ``auto`` the first of :data:`AUTO_ORDER` this install has."""
    if name != AUTO:
        return name
    return next((c.name for c in AUTO_ORDER if c.available()), AUTO_ORDER[-1].name)


@register_detector
class AutoDetector(FaceDetector):
    """``get_detector("auto")`` builds the detector :func:`resolve_detector` picks, at its defaults (the instance is
    that detector's: its ``name`` says which ran). Parameters belong to one detector: name it to set them."""

    name = AUTO
    landmarks = "those of the detector it resolves to"

    def __new__(cls, **params: Any) -> FaceDetector:  # type: ignore[misc]
        if params:
            raise ConfigError(f"face detector auto takes no parameters (got {', '.join(sorted(params))}): they "
                              "belong to one detector; name it instead (one of "
                              f"{', '.join(c.name for c in AUTO_ORDER)})")
        return get_detector(resolve_detector(AUTO))

    def detect(self, rgb):  # pragma: no cover - never an instance: __new__ returns the resolved detector's
        raise NotImplementedError
