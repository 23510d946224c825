"""Feature extractors: a registry of named, configurable, versioned per-recording feature functions.

An extractor turns one :class:`~avaffect.data.recording.Recording` into ``[T, dim]`` float32
features aligned to ``rec.times`` (SPEC §2). Its identity in the feature store is
``<name>-<hash>``, the hash covering its parameters (defaults filled in) and its version, so a
different configuration or a changed algorithm never reuses stale features.

Two offline defaults need no downloaded weights:

* ``face_hog`` (video): HOG of the grayscale face crop plus a coarse intensity grid; steps without
  a face crop are zeros.
* ``logmel_stats`` (audio): per step, mean and std of the VGGish-style log-mel frames over a window
  around the step, plus log-energy and an autocorrelation periodicity / pitch proxy.

The neural extractors (``vggish``, ``spec_resnet18``, ``resnet18_face``, ``resnet50_face``,
``r2plus1d18_clip``) and openSMILE's ``egemaps`` live in :mod:`avaffect.features.backbones`, imported
(and so registered) by the first :func:`get_extractor` / :func:`list_extractors` call that needs them.

Write a new one by subclassing :class:`Extractor`, setting ``name``, ``modality``, ``version`` and
``defaults`` and implementing ``dim`` and ``extract``, then decorating it with
:func:`register_extractor`. Instances are pickled to worker processes: keep heavy or unpicklable
state (models, OpenCV objects) in attributes listed in ``_transient`` and build it lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError, DataError
from avaffect.features.align import CONTEXTS, align_to_timeline
from avaffect.features.audio import frame_signal, log_mel_spectrogram
from avaffect.features.media import read_audio

__all__ = [
    "Extractor",
    "FaceHOG",
    "LogMelStats",
    "register_extractor",
    "get_extractor",
    "list_extractors",
    "align_to_timeline",
]

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type[Extractor]] = {}


def _jsonable(value: Any) -> Any:
    """Normalise a parameter value so that equal configurations hash equally."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 2**53 else value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Extractor(ABC):
    """Base class of feature extractors.

    ``Extractor(**params)`` or ``Extractor(config)`` with ``config`` a dict or a pydantic model:
    the parameters override ``defaults``; unknown names raise :class:`ConfigError`.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""  # "audio" or "video"
    version: ClassVar[str] = "1"
    defaults: ClassVar[dict[str, Any]] = {}
    _transient: ClassVar[tuple[str, ...]] = ()  # attributes dropped when pickled (rebuilt lazily)

    def __init__(self, config: Any = None, **params: Any) -> None:
        given: dict[str, Any] = {}
        if config is not None:
            if hasattr(config, "model_dump"):
                config = config.model_dump()
            if not isinstance(config, Mapping):
                raise ConfigError(
                    f"extractor {self.name}: config must be a mapping, got {type(config).__name__}"
                )
            given.update(config)
        given.update(params)
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"extractor {self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        self.params: dict[str, Any] = _jsonable({**self.defaults, **given})
        self.validate()

    def validate(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Check ``self.params``; raise :class:`ConfigError` on a bad value (default: accept all)."""

    @property
    def config_hash(self) -> str:
        blob = json.dumps({"params": self.params, "version": self.version}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    @property
    def id(self) -> str:
        """Feature-store folder name: ``<name>-<hash of params and version>``."""
        return f"{self.name}-{self.config_hash}"

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature size d."""

    @abstractmethod
    def extract(self, rec: Recording) -> np.ndarray:
        """``[len(rec.times), dim]`` float32 features aligned to ``rec.times``."""

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "modality": self.modality,
            "version": self.version,
            "config_hash": self.config_hash,
            "params": self.params,
            "dim": self.dim,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in self._transient:
            state.pop(key, None)
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, params={self.params})"


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make ``cls`` available as ``get_extractor(cls.name)``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.modality not in ("audio", "video"):
        raise ValueError(f"{cls.__qualname__}.modality must be 'audio' or 'video', got {cls.modality!r}")
    old = _REGISTRY.get(cls.name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"extractor name {cls.name!r} is taken by {old.__module__}.{old.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


# Modules whose import registers more extractors (the neural backbones, openSMILE). They are
# imported on first need by get_extractor / list_extractors, not at import time (they are heavier).
_LAZY_EXTRACTOR_MODULES = ("avaffect.features.backbones",)


def _load_lazy_extractors() -> None:
    import importlib

    for module in _LAZY_EXTRACTOR_MODULES:
        importlib.import_module(module)


def get_extractor(name: str, config: Any = None, **params: Any) -> Extractor:
    """Build the registered extractor ``name`` with the given parameters."""
    if name not in _REGISTRY:
        _load_lazy_extractors()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown feature extractor {name!r}; available: {', '.join(list_extractors())}"
        ) from None
    return cls(config, **params)


def audio_source(rec: Recording) -> Path:
    """The file a recording's audio is decoded from: its audio file, else its video."""
    source = rec.audio_path or rec.video_path
    if source is None:
        raise DataError(
            None,
            f"recording {rec.name} has neither an audio nor a video file",
            "set the recording's audio or video path (dataset manifest) or use a video-only model",
        )
    return Path(source)


def list_extractors(modality: str | None = None) -> list[str]:
    """Sorted names of the registered extractors (optionally of one modality)."""
    _load_lazy_extractors()
    return sorted(n for n, c in _REGISTRY.items() if modality is None or c.modality == modality)


# --------------------------------------------------------------------------------------------- video


@register_extractor
class FaceHOG(Extractor):
    """HOG + coarse intensity grid of each face crop.

    Each crop (``rec.crop_path(i)`` where ``rec.face_mask[i]``) is read as grayscale, resized to
    ``size x size`` (area interpolation), and described by an OpenCV HOG (``cell`` px cells,
    ``block`` px blocks moved by ``block_stride``, ``nbins`` orientations, L2-Hys block norm)
    followed by the crop downsampled to ``grid x grid`` in [0, 1]. Steps without a face, and
    steps whose crop file is missing or unreadable, are zeros. Missing files are logged; if every
    crop the mask promises is missing the recording fails (the crops folder is probably wrong).

    A recording without a crops folder (a raw video), or any recording with ``source="video"``, gets
    its crops from the face pipeline (:func:`avaffect.features.faces.load_face_crops` with ``detector``,
    ``crop_size``): detection, tracking, eye-levelling alignment; steps where no face is found are zeros.
    ``source="auto"`` (default) prefers the dataset's crops (Aff-Wild2 ``cropped_aligned``) when present.
    """

    name = "face_hog"
    modality = "video"
    version = "1"
    defaults = {"size": 64, "cell": 8, "block": 16, "block_stride": 16, "nbins": 9, "grid": 8,
                "detector": "haar", "crop_size": 112, "source": "auto"}
    _transient = ("_hog",)

    def validate(self) -> None:
        p = self.params
        for key in ("size", "cell", "block", "block_stride", "nbins", "grid", "crop_size"):
            if not isinstance(p[key], int) or p[key] <= 0:
                raise ConfigError(f"face_hog: {key} must be a positive integer, got {p[key]!r}")
        if p["block"] % p["cell"] or p["block"] > p["size"] or (p["size"] - p["block"]) % p["block_stride"]:
            raise ConfigError(
                "face_hog: need block a multiple of cell, block <= size and (size - block) a multiple of "
                f"block_stride; got size={p['size']}, cell={p['cell']}, block={p['block']}, "
                f"block_stride={p['block_stride']}"
            )
        if p["grid"] > p["size"]:
            raise ConfigError(f"face_hog: grid ({p['grid']}) must not exceed size ({p['size']})")
        if p["source"] not in ("auto", "crops", "video"):
            raise ConfigError(f"face_hog: source must be auto, crops or video, got {p['source']!r}")

    @property
    def hog_dim(self) -> int:
        p = self.params
        blocks = (p["size"] - p["block"]) // p["block_stride"] + 1
        return blocks * blocks * (p["block"] // p["cell"]) ** 2 * p["nbins"]

    @property
    def dim(self) -> int:
        return self.hog_dim + self.params["grid"] ** 2

    def _descriptor(self) -> cv2.HOGDescriptor:
        hog = self.__dict__.get("_hog")
        if hog is None:
            p = self.params
            hog = cv2.HOGDescriptor(
                (p["size"], p["size"]),
                (p["block"], p["block"]),
                (p["block_stride"], p["block_stride"]),
                (p["cell"], p["cell"]),
                p["nbins"],
            )
            self._hog = hog
        return hog

    def describe_crop(self, gray: np.ndarray) -> np.ndarray:
        """Feature vector ``[dim]`` of one grayscale uint8 crop of any size."""
        size, grid = self.params["size"], self.params["grid"]
        if gray.shape[:2] != (size, size):
            gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
        out = np.empty(self.dim, dtype=np.float32)
        out[: self.hog_dim] = self._descriptor().compute(gray).reshape(-1)
        out[self.hog_dim :] = cv2.resize(gray, (grid, grid), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0
        return out

    def _extract_detected(self, rec: Recording) -> np.ndarray:
        from avaffect.features.faces import load_face_crops

        from_video = {"use_crops": False} if self.params["source"] == "video" else {}
        crops, face_mask, _ = load_face_crops(rec, size=self.params["crop_size"], detector=self.params["detector"],
                                              **from_video)
        out = np.zeros((rec.num_frames, self.dim), dtype=np.float32)
        # from the raw video the detector decides; the dataset's crop mask only applies to its own crops
        keep = face_mask if self.params["source"] == "video" else face_mask & rec.face_mask
        for i in np.flatnonzero(keep):
            out[i] = self.describe_crop(cv2.cvtColor(crops[i], cv2.COLOR_RGB2GRAY))
        return out

    def extract(self, rec: Recording) -> np.ndarray:
        out = np.zeros((rec.num_frames, self.dim), dtype=np.float32)
        steps = np.flatnonzero(rec.face_mask)
        if len(steps) == 0:
            return out
        if self.params["source"] == "video" or (rec.crops_dir is None and self.params["source"] == "auto"):
            return self._extract_detected(rec)
        if rec.crops_dir is None:
            raise DataError(None, f"recording {rec.name} has no face crops folder (face_hog source=crops)",
                            "point the recording at its cropped_aligned/<video>/ folder or use source=video")
        missing = 0
        for i in steps:
            path = rec.crop_path(int(i))
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                missing += 1
                continue
            out[i] = self.describe_crop(gray)
        if missing == len(steps):
            raise DataError(
                rec.crops_dir,
                f"none of the {len(steps)} face crops of recording {rec.name} could be read "
                f"(e.g. {rec.crop_path(int(steps[0])).name})",
                "check the crops folder (Aff-Wild2 naming: 00001.jpg, 1-based) or re-run face cropping",
            )
        if missing:
            log.warning(
                "%s: %d of %d face crops missing or unreadable; zeros used", rec.name, missing, len(steps)
            )
        return out


# --------------------------------------------------------------------------------------------- audio


def _periodicity(
    frames: np.ndarray, sample_rate: int, fmin: float, fmax: float, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: peak of the normalised autocorrelation in the pitch-lag range, and log2 of its f0.

    Vectorised over frames with FFTs (in chunks of ``chunk`` frames to bound memory). The lag is
    the peak of the energy-normalised (biased) autocorrelation, which favours the shortest period;
    the strength is the unbiased value there (divided by the overlap ``n - k`` instead of ``n``),
    clipped to [0, 1] (a voicing strength).
    """
    if len(frames) > chunk:
        parts = [
            _periodicity(frames[i : i + chunk], sample_rate, fmin, fmax, chunk)
            for i in range(0, len(frames), chunk)
        ]
        return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])
    n = frames.shape[1]
    x = frames.astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    nfft = int(2 ** np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(x, n=nfft, axis=1)
    ac = np.fft.irfft(spec.real**2 + spec.imag**2, n=nfft, axis=1)[:, :n]
    lag_lo = max(1, int(np.floor(sample_rate / fmax)))
    lag_hi = min(n - 1, int(np.ceil(sample_rate / fmin)))
    lags = np.arange(lag_lo, lag_hi + 1)
    r0 = ac[:, :1]
    biased = np.where(r0 > 1e-10, ac[:, lags] / np.maximum(r0, 1e-10), 0.0)
    best = np.argmax(biased, axis=1)  # the biased form favours the shortest period: no octave drops
    rows = np.arange(len(biased))
    strength = np.clip(biased[rows, best] * n / (n - lags[best]), 0.0, 1.0)
    f0 = sample_rate / lags[best]
    return strength, np.log2(f0)


@register_extractor
class LogMelStats(Extractor):
    """Window statistics of log-mel frames, log-energy and a periodicity (voicing / pitch) proxy.

    Audio comes from ``rec.audio_path`` (else ``rec.video_path``), decoded to ``sample_rate`` mono.
    Per 10 ms frame (25 ms window): the VGGish-style log-mel ``[n_mels]``, log-energy
    ``log(mean(x^2) + 1e-10)``, periodicity (autocorrelation peak in the ``f0_min``..``f0_max`` lag
    range) and ``log2 f0`` at that peak. Per timeline step, over the frames whose centre falls in
    the ``window``-second window (``context`` causal / forward / centered, see align.py):

    ``[mean logmel (n_mels), std logmel (n_mels), mean logE, std logE, mean periodicity, mean log2 f0]``

    so ``dim = 2 * n_mels + 4``. Steps past the end of the audio take the nearest frame.
    """

    name = "logmel_stats"
    modality = "audio"
    version = "1"
    defaults = {
        "sample_rate": 16000,
        "window": 0.5,
        "context": "centered",
        "n_mels": 64,
        "fmin": 125.0,
        "fmax": 7500.0,
        "frame_window": 0.025,
        "frame_hop": 0.010,
        "log_offset": 0.01,
        "f0_min": 80.0,
        "f0_max": 400.0,
    }

    def validate(self) -> None:
        p = self.params
        if p["context"] not in CONTEXTS:
            raise ConfigError(
                f"logmel_stats: context must be one of {', '.join(CONTEXTS)}, got {p['context']!r}"
            )
        if not (isinstance(p["n_mels"], int) and p["n_mels"] > 0):
            raise ConfigError(f"logmel_stats: n_mels must be a positive integer, got {p['n_mels']!r}")
        if p["window"] < 0 or p["frame_window"] <= 0 or p["frame_hop"] <= 0:
            raise ConfigError("logmel_stats: window must be >= 0, frame_window and frame_hop > 0 (seconds)")
        if not 0 <= p["fmin"] < p["fmax"] <= p["sample_rate"] / 2:
            raise ConfigError("logmel_stats: need 0 <= fmin < fmax <= sample_rate / 2")
        if not 0 < p["f0_min"] < p["f0_max"]:
            raise ConfigError("logmel_stats: need 0 < f0_min < f0_max")

    @property
    def dim(self) -> int:
        return 2 * self.params["n_mels"] + 4

    def frame_features(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features [F, n_mels + 3], frame centre times [F])``: logmel, logE, periodicity, log2 f0."""
        p = self.params
        sr = int(p["sample_rate"])
        win = int(round(p["frame_window"] * sr))
        hop = int(round(p["frame_hop"] * sr))
        if len(wav) < win:  # shorter than one analysis frame: pad so there is one frame
            wav = np.pad(wav, (0, win - len(wav)))
        logmel, times = log_mel_spectrogram(
            wav, sr, p["frame_window"], p["frame_hop"], p["n_mels"], p["fmin"], p["fmax"], p["log_offset"]
        )
        frames = frame_signal(wav, win, hop)
        energy = np.log(np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / win + 1e-10)
        strength, log_f0 = _periodicity(frames, sr, p["f0_min"], p["f0_max"])
        feats = np.concatenate(
            [logmel.astype(np.float64), energy[:, None], strength[:, None], log_f0[:, None]], axis=1
        )
        return feats, times

    def features_from_waveform(self, wav: np.ndarray, timeline: np.ndarray) -> np.ndarray:
        """``[len(timeline), dim]`` float32 from a mono waveform at ``sample_rate`` starting at time 0."""
        p = self.params
        n = p["n_mels"]
        feats, times = self.frame_features(np.asarray(wav, dtype=np.float32))
        sq = feats[:, : n + 1] ** 2
        both = align_to_timeline(
            np.concatenate([feats, sq], axis=1), times, timeline, p["window"], p["context"]
        )
        mean = both[:, : n + 3]
        mean_sq = both[:, n + 3 :]
        std = np.sqrt(np.maximum(mean_sq - mean[:, : n + 1] ** 2, 0.0))
        out = np.concatenate(
            [mean[:, :n], std[:, :n], mean[:, n : n + 1], std[:, n : n + 1], mean[:, n + 1 : n + 3]], axis=1
        )
        return out.astype(np.float32)

    def extract(self, rec: Recording) -> np.ndarray:
        wav = read_audio(audio_source(rec), sample_rate=int(self.params["sample_rate"]))
        return self.features_from_waveform(wav, rec.times)
