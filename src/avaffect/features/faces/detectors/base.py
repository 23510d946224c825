"""The face-detector interface shared by every backend: :class:`Detection`, :class:`FaceDetector`,
the registry (:func:`register_detector`, :func:`get_detector`, :func:`list_detectors`) and the
image/parameter helpers the backends use."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.weights import avaffect_home
from avaffect.registry import Registry

__all__ = ["Detection", "FaceDetector", "landmarks_from", "register_detector", "get_detector", "list_detectors"]

# ------------------------------------------------------------------------------------------ detections


@dataclass(frozen=True, eq=False)
class Detection:
    """One detected face: ``box`` float32 ``[4]`` (x1, y1, x2, y2) in frame pixels, ``score``,
    ``landmarks5`` float32 ``[5, 2]`` (x, y) in the order of the :mod:`avaffect.features.faces.detectors`
    docstring, NaN rows where unknown, or ``None``."""

    box: np.ndarray
    score: float = 1.0
    landmarks5: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", np.asarray(self.box, dtype=np.float32).reshape(4))
        object.__setattr__(self, "score", float(self.score))
        if self.landmarks5 is not None:
            object.__setattr__(self, "landmarks5", np.asarray(self.landmarks5, dtype=np.float32).reshape(5, 2))

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], dtype=np.float32)

    @property
    def eyes(self) -> np.ndarray | None:
        """``[2, 2]`` eye centres (image-left first) when both are known, else ``None``."""
        if self.landmarks5 is None:
            return None
        eyes = self.landmarks5[:2]
        return eyes.copy() if np.all(np.isfinite(eyes)) else None

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        lm = "" if self.landmarks5 is None else f", landmarks={int(np.isfinite(self.landmarks5[:, 0]).sum())}"
        return f"Detection(box=[{box}], score={self.score:.3g}{lm})"


def landmarks_from(eyes: np.ndarray | None = None, nose: np.ndarray | None = None) -> np.ndarray:
    """A ``[5, 2]`` landmark array with the given eyes (sorted image-left first) and nose, NaN elsewhere."""
    out = np.full((5, 2), np.nan, dtype=np.float32)
    if eyes is not None:
        eyes = np.asarray(eyes, dtype=np.float32).reshape(2, 2)
        out[:2] = eyes[np.argsort(eyes[:, 0], kind="stable")]
    if nose is not None:
        out[2] = np.asarray(nose, dtype=np.float32).reshape(2)
    return out


def _check_image(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {rgb.dtype}")
    return rgb


def _detection_scale(shape: tuple[int, ...], min_face: float, window: int, max_side: int) -> float:
    """The factor (at most 1) that brings the smallest face searched for, ``min_face`` x the shorter
    side, down to the detector's ``window`` pixels, and the longer side to at most ``max_side``
    (0: no cap)."""
    h, w = shape[:2]
    s = min(1.0, window / max(1e-6, float(min_face) * min(h, w)))
    if max_side:
        s = min(s, max_side / max(h, w))
    return s


def _shrink(img: np.ndarray, s: float) -> np.ndarray:
    if s >= 1.0:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, int(round(w * s))), max(1, int(round(h * s)))), interpolation=cv2.INTER_AREA)


def _downscale(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``img`` shrunk (area interpolation) so that its longer side is at most ``max_side`` (0: never),
    and the factor applied."""
    h, w = img.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return img, 1.0
    s = max_side / max(h, w)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), s


# ------------------------------------------------------------------------------------------ interface


class FaceDetector(ABC):
    """Base class: ``Detector(**params)``, parameters overriding ``defaults`` (unknown names raise
    :class:`~avaffect.errors.ConfigError`); ``detect(rgb)`` returns the faces of one frame."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    landmarks: ClassVar[str] = "none"  # what landmarks5 holds: "none", "eyes", "eyes+nose", "5"
    _transient: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"face detector {self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.validate()

    def validate(self) -> None:  # noqa: B027 - optional hook
        """Check ``self.params`` (raise :class:`ConfigError`) and required files."""

    @classmethod
    def available(cls) -> bool:
        """Whether this install can build the detector at its defaults (its runtime and files are here), without
        building it: what the ``auto`` detector asks of its candidates (:mod:`avaffect.features.faces.detectors.
        auto`)."""
        return True

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB ``uint8 [H, W, 3]`` frame (any order)."""

    def detect_near(self, rgb: np.ndarray, box: np.ndarray, search: float = 1.0) -> list[Detection]:
        """Faces near ``box`` (x1, y1, x2, y2): those found in the region that extends the box by
        ``search`` x its longer side on every side, in frame coordinates. Trackers use it to
        search only around the face they follow; the default runs :meth:`detect` on that region."""
        rgb = _check_image(rgb)
        (rx1, ry1, rx2, ry2) = _search_region(rgb.shape, box, search)
        if rx2 - rx1 < 8 or ry2 - ry1 < 8:
            return []
        found = self.detect_region(np.ascontiguousarray(rgb[ry1:ry2, rx1:rx2]))
        return [_shift(d, rx1, ry1) for d in found]

    def detect_region(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in the region :meth:`detect_near` cut around a tracked face, in its pixels (default:
        :meth:`detect`; a detector may search it otherwise, the face being large there)."""
        return self.detect(rgb)

    def detect_boxes(self, rgb: np.ndarray, near: np.ndarray | None = None, search: float = 1.0) -> list[Detection]:
        """:meth:`detect` (or, with ``near``, :meth:`detect_near`) without the landmarks that
        :meth:`add_landmarks` adds in a second step: the two steps give what :meth:`detect` gives, and can run
        on different threads (the face pipeline detects ahead on a worker, :func:`~avaffect.features.faces.
        crops.iter_face_steps`). Detectors whose landmarks come with their boxes give them here already."""
        return self.detect(rgb) if near is None else self.detect_near(rgb, near, search)

    def add_landmarks(self, rgb: np.ndarray, detections: list[Detection]) -> list[Detection]:
        """``detections`` of :meth:`detect_boxes` on ``rgb`` with their landmarks (default: as they are)."""
        return detections

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "landmarks": self.landmarks,
            "params": {k: _plain(v) for k, v in self.params.items()},
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in self._transient:
            state.pop(key, None)
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


def _search_region(shape: tuple[int, ...], box: np.ndarray, search: float) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    pad = max(x2 - x1, y2 - y1, 1.0) * float(search)
    H, W = shape[:2]
    return (
        max(0, int(math.floor(x1 - pad))),
        max(0, int(math.floor(y1 - pad))),
        min(W, int(math.ceil(x2 + pad))),
        min(H, int(math.ceil(y2 + pad))),
    )


def _shift(det: Detection, dx: float, dy: float) -> Detection:
    off = np.array([dx, dy], dtype=np.float32)
    lm = None if det.landmarks5 is None else det.landmarks5 + off
    return Detection(det.box + np.tile(off, 2), det.score, lm)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


# ------------------------------------------------------------------------------------------ registry

_REGISTRY: Registry[type[FaceDetector]] = Registry("face detector")


def _same_class(old: type[FaceDetector], new: type[FaceDetector]) -> bool:
    """The same class, re-created by a module reload."""
    return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)


def register_detector(cls: type[FaceDetector]) -> type[FaceDetector]:
    """Class decorator: make ``cls`` available as ``get_detector(cls.name)``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY:
        old = _REGISTRY.get(cls.name)
        if not _same_class(old, cls):
            raise ValueError(f"face detector name {cls.name!r} is taken by {old.__module__}.{old.__qualname__}")
    return _REGISTRY.add(cls.name, cls, replace_same=_same_class)


def get_detector(name: str | FaceDetector, **params: Any) -> FaceDetector:
    """Build the registered detector ``name`` (an instance is returned as is, without params)."""
    if isinstance(name, FaceDetector):
        if params:
            raise ConfigError(f"detector parameters {sorted(params)} given with a ready detector instance")
        return name
    return _REGISTRY.get(name)(**params)


def list_detectors() -> list[str]:
    """Sorted names of the registered face detectors."""
    return _REGISTRY.names()


# ------------------------------------------------------------------------------------------ helpers


def _positive(det: FaceDetector, *keys: str, allow_zero: bool = False) -> None:
    for key in keys:
        v = det.params[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(f"face detector {det.name}: {key} must be a positive number, got {v!r}")


def _weights_path(given: str | Path | None, filename: str, what: str, source: str) -> Path:
    """The weight file of a detector: ``given`` or ``$AVAFFECT_HOME/weights/<filename>``; raise an
    :class:`AvaffectError` saying what to download and where to put it when it is not there."""
    home = avaffect_home()  # one rule for the cache folder
    cached = home / "weights" / filename
    path = Path(given).expanduser() if given else cached
    if path.is_file():
        return path
    raise AvaffectError(
        f"{what} weights not found: {path} does not exist. They are never downloaded automatically. "
        f"Download {source}, and either save it as {cached} (the cache folder $AVAFFECT_HOME/weights/"
        f"{filename}; AVAFFECT_HOME is {home}, default ~/.cache/avaffect) or pass its path "
        f"with weights=PATH."
    )
