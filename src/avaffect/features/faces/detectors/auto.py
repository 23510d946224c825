"""``auto``: the fastest accurate face detector this install has.

``auto`` tries :data:`AUTO_ORDER` in order and runs the first whose runtime and files are installed
(:meth:`~avaffect.features.faces.detectors.base.FaceDetector.available`): MediaPipe's BlazeFace where
``pip install 'avaffect[faces]'`` put LiteRT and ``avaffect weights import`` its two model files (``make install``
does both), Haar, which needs nothing but OpenCV, elsewhere. On the CREMA-D clips the two flag the same frames as
faces and a MediaPipe detection costs a fraction of Haar's, whose eye search it does not need (BlazeFace gives the
eyes): ``docs/benchmarks/face_auto.md``, with the synthetic and moving-face sets.

``auto``'s MediaPipe draws its box like Haar (:data:`AUTO_MEDIAPIPE`: a scale and shift fitted on real faces), so
the crops a model sees are close whichever ran (``face_auto.md``: the boxes' agreement and how far a model's values
move). A config and a checkpoint keep the name ``auto``; what ran is resolved when the detector is built
(:func:`resolve_detector`) and named in predict's JSON (``face_source``) and in a feature id
(:func:`detector_identity`: features cut by different detectors are different features).
"""

from __future__ import annotations

from typing import Any

from avaffect.errors import ConfigError
from avaffect.features.faces.detectors.base import FaceDetector, get_detector, register_detector
from avaffect.features.faces.detectors.haar import HaarDetector
from avaffect.features.faces.detectors.mediapipe import MediaPipeDetector

__all__ = ["AUTO", "AUTO_MEDIAPIPE", "AUTO_ORDER", "AutoDetector", "auto_identities", "detector_identity",
           "resolve_detector"]

#: the detector name that stands for "the fastest accurate detector this install has"
AUTO = "auto"
#: MediaPipe as ``auto`` runs it: the short-range model, the full-range one where a search of the whole frame finds no
#: face (faces down to ~1/10 of the frame's width are found, then followed at short range), and the box drawn like
#: Haar's, so that the crops (box + the pipeline's margin) are the same whichever of the two ran: 1.17x BlazeFace's box,
#: moved up by 0.14 of its side (Haar's box against BlazeFace's on the same frames, median over CREMA-D: 1.18 / -0.15,
#: a moving face: 1.14 / -0.12; docs/benchmarks/face_auto.md fits them again)
AUTO_MEDIAPIPE: dict[str, Any] = {"range": "short+full", "box_scale": 1.17, "box_shift": -0.14}
#: what ``auto`` tries, in order, with the parameters it runs it with (the last needs nothing but OpenCV)
AUTO_ORDER: tuple[tuple[type[FaceDetector], dict[str, Any]], ...] = ((MediaPipeDetector, AUTO_MEDIAPIPE),
                                                                     (HaarDetector, {}))


def _choice() -> tuple[type[FaceDetector], dict[str, Any]]:
    return next((c for c in AUTO_ORDER if c[0].available()), AUTO_ORDER[-1])


def resolve_detector(name: str) -> str:
    """The detector ``name`` stands for: itself, or for ``auto`` the first of :data:`AUTO_ORDER` this install has."""
    return _choice()[0].name if name == AUTO else name


def _identity(choice: tuple[type[FaceDetector], dict[str, Any]]) -> str:
    cls, settings = choice  # at its defaults it cuts what the named detector cuts; else auto's own variant
    return f"{AUTO}:{cls.name}" if settings else cls.name


def detector_identity(name: str) -> str:
    """What a feature id records of the detector ``name``: itself; for ``auto`` the detector it runs here, as
    ``auto:<name>`` where it runs it with other parameters than that detector's defaults (``auto:mediapipe``: its
    boxes are drawn like Haar's) and as the plain name where the crops are the same (``haar``: features extracted
    with ``haar`` serve ``auto`` there)."""
    return _identity(_choice()) if name == AUTO else name


def auto_identities() -> list[str]:
    """:func:`detector_identity` of ``auto`` on each install: one per detector of :data:`AUTO_ORDER`."""
    return [_identity(c) for c in AUTO_ORDER]


@register_detector
class AutoDetector(FaceDetector):
    """``get_detector("auto")`` builds the detector :func:`resolve_detector` picks, with the parameters
    :data:`AUTO_ORDER` gives it (the instance is that detector's: its ``name`` says which ran). Parameters belong to
    one detector: name it to set them."""

    name = AUTO
    landmarks = "those of the detector it resolves to"

    def __new__(cls, **params: Any) -> FaceDetector:  # type: ignore[misc]
        if params:
            raise ConfigError(f"face detector auto takes no parameters (got {', '.join(sorted(params))}): they "
                              "belong to one detector; name it instead (one of "
                              f"{', '.join(c.name for c, _ in AUTO_ORDER)})")
        cls_, settings = _choice()
        return get_detector(cls_.name, **settings)

    def detect(self, rgb):  # pragma: no cover - never an instance: __new__ returns the resolved detector's
        raise NotImplementedError
