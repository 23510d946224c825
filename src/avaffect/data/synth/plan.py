"""What one synthetic recording is, drawn at random and without media: config, names, latent
trajectories, weak-complementarity segments and annotation gaps."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from avaffect.data.layout import SPLITS

AAC_FRAME = 1024  # samples per AAC frame: the audio is written as a whole number of frames

# weak-complementarity codes stored per frame and modality in latent/<name>.npz
WEAK_NONE, WEAK_MISSING, WEAK_NOISY, WEAK_CONFLICTING = 0, 1, 2, 3
WEAK_CODES = {
    "none": WEAK_NONE, "missing": WEAK_MISSING, "noisy": WEAK_NOISY, "conflicting": WEAK_CONFLICTING,
}

LATENT_KEYS = (
    "times",  # [T] float64 frame times (s)
    "valence", "arousal",  # [T] float32 latent trajectories (what the labels follow)
    "face_valence", "face_arousal", "voice_valence", "voice_arousal",  # [T] float32 drives used
    "face_weak", "voice_weak",  # [T] int8 weak-segment codes (WEAK_CODES)
    "face_present",  # [T] bool: a face was drawn and its jpg written
    "annotated",  # [T] bool: the annotation row is not -5 (all False for test recordings)
    "fps", "sample_rate", "split",
)


class SynthConfig(BaseModel):
    """Parameters of the synthetic dataset (``avaffect synth`` flags)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    n_train: int = Field(16, ge=0)
    n_val: int = Field(6, ge=0)
    n_test: int = Field(0, ge=0)  # crops + video but no annotation file (Aff-Wild2 test convention)
    duration_s: float = Field(20.0, gt=0)  # per recording, varied by +-25% deterministically
    fps: float = Field(30.0, gt=0)
    crop_size: int = Field(112, ge=32)  # cropped_aligned jpg size (Aff-Wild2: 112x112)
    frame_width: int = Field(256, ge=32)
    frame_height: int = Field(192, ge=32)
    sample_rate: int = Field(16000, ge=8000)
    weak_rate: float = Field(0.2, ge=0, le=0.9)  # fraction of time in weak segments, per modality
    # per-modality weak segments (benchmarks/zoo.py --condition): None / the defaults keep the shared plan above
    face_weak_rate: float | None = Field(None, ge=0, le=0.9,
                                         description="fraction of frames in face weak segments; None: weak_rate")
    voice_weak_rate: float | None = Field(None, ge=0, le=0.9,
                                          description="fraction of frames in voice weak segments; None: weak_rate")
    face_weak_kinds: str = Field("missing,noisy,conflicting", description="kinds a face weak segment is drawn from")
    voice_weak_kinds: str = Field("missing,noisy,conflicting", description="kinds a voice weak segment is drawn from")
    face_weak_min_s: float = Field(1.0, gt=0, description="shortest face weak segment (s)")
    face_weak_max_s: float = Field(4.0, gt=0, description="longest face weak segment (s)")
    voice_weak_min_s: float = Field(1.0, gt=0, description="shortest voice weak segment (s)")
    voice_weak_max_s: float = Field(4.0, gt=0, description="longest voice weak segment (s)")
    weak_overlap: bool = Field(True, description="false: voice weak segments avoid the face's, so at every frame at "
                               "least one modality is reliable")
    gap_rate: float = Field(0.05, ge=0, le=0.9)  # fraction of frames annotated -5 (in runs)
    face_valence_strength: float = Field(1.0, ge=0, le=1)
    face_arousal_strength: float = Field(0.25, ge=0, le=1)
    voice_valence_strength: float = Field(0.25, ge=0, le=1)
    voice_arousal_strength: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _check_sizes(self) -> SynthConfig:
        if self.frame_width % 2 or self.frame_height % 2:
            raise ValueError("frame_width and frame_height must be even (yuv420p video)")
        if self.crop_size > min(self.frame_width, self.frame_height):
            raise ValueError("crop_size must fit in the raw frame (<= frame_width and frame_height)")
        for modality in ("face", "voice"):
            self.weak_kinds(modality)
            if getattr(self, f"{modality}_weak_min_s") > getattr(self, f"{modality}_weak_max_s"):
                raise ValueError(f"{modality}_weak_min_s must be <= {modality}_weak_max_s")
        if not self.weak_overlap and self.weak_rate_of("face") + self.weak_rate_of("voice") > 0.9:
            raise ValueError("with weak_overlap false the face and voice weak rates must add up to at most 0.9")
        return self

    def weak_rate_of(self, modality: str) -> float:
        """The fraction of frames in ``modality``'s (``face`` / ``voice``) weak segments."""
        rate = getattr(self, f"{modality}_weak_rate")
        return self.weak_rate if rate is None else rate

    def weak_kinds(self, modality: str) -> list[int]:
        """The weak codes a ``modality`` segment is drawn from (uniformly), from its comma-separated kinds."""
        names = [k.strip() for k in getattr(self, f"{modality}_weak_kinds").split(",") if k.strip()]
        bad = [k for k in names if k not in WEAK_CODES or k == "none"]
        if bad or not names:
            raise ValueError(f"{modality}_weak_kinds: {bad or 'nothing'} given; use a comma-separated subset of "
                             "missing, noisy, conflicting")
        return [WEAK_CODES[k] for k in names]


def recording_name(cfg: SynthConfig, index: int) -> str:
    """Aff-Wild2-like name of recording ``index``, e.g. ``synth003-30-256x192``."""
    return f"synth{index:03d}-{int(round(cfg.fps))}-{cfg.frame_width}x{cfg.frame_height}"


def recording_plan(cfg: SynthConfig) -> list[tuple[int, str, str]]:
    """``(index, name, split)`` of every recording, with the canonical split names (``train``,
    ``validation``, ``test``)."""
    plan = []
    index = 0
    for split, count in zip(SPLITS, (cfg.n_train, cfg.n_val, cfg.n_test), strict=True):
        for _ in range(count):
            plan.append((index, recording_name(cfg, index), split))
            index += 1
    return plan


# ------------------------------------------------------------------------------------------------ trajectories


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise of ``n`` steps, unit variance in expectation."""
    sigma = max(float(sigma), 0.5)
    pad = int(3 * sigma)
    white = rng.standard_normal(n + 2 * pad)
    from scipy.ndimage import gaussian_filter1d  # lazy: 0.2 s of imports that `avaffect --help` (which reads
    # SynthConfig for the synthetic-set flags) should not pay

    smooth = gaussian_filter1d(white, sigma, mode="wrap")[pad:pad + n]
    return smooth * np.sqrt(2.0 * np.sqrt(np.pi) * sigma)


def _trajectory(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """A smooth affect-like trajectory in (-1, 1): slow + faster component through tanh."""
    slow = _smooth_noise(rng, n, rng.uniform(1.5, 3.0) * fps)  # correlation time ~2-4 s
    fast = _smooth_noise(rng, n, rng.uniform(0.3, 0.7) * fps)
    mix = 0.9 * slow + 0.35 * fast
    mix = (mix - mix.mean()) / max(float(mix.std()), 1e-6)  # every recording gets its own variance
    amplitude = rng.uniform(0.6, 1.5)
    offset = rng.normal(0.0, 0.3)
    return np.tanh(offset + amplitude * mix)


def _place_runs(rng: np.random.Generator, n: int, target: int, min_len: int, max_len: int,
                avoid: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Non-touching runs ``(start, stop)`` at random places covering about ``target`` of ``n`` steps, clear of the
    steps marked in ``avoid``."""
    taken = np.zeros(n, dtype=bool) if avoid is None else avoid.astype(bool).copy()
    runs: list[tuple[int, int]] = []
    covered = 0
    for _ in range(400):
        if covered >= target:
            break
        length = min(int(rng.integers(min_len, max_len + 1)), target - covered, n)
        if length <= 0:
            break
        start = int(rng.integers(0, n - length + 1))
        if taken[max(0, start - 1):start + length + 1].any():
            continue
        taken[start:start + length] = True
        runs.append((start, start + length))
        covered += length
    return sorted(runs)


def _weak_codes(rng: np.random.Generator, n: int, fps: float, rate: float, kinds: list[int],
                run_s: tuple[float, float], avoid: np.ndarray | None = None) -> np.ndarray:
    """Per-frame weak-segment codes: runs of ``run_s`` (min, max) seconds covering about ``rate`` of the frames,
    clear of ``avoid``, each of a kind drawn uniformly from ``kinds`` (the defaults live in :class:`SynthConfig`)."""
    codes = np.zeros(n, dtype=np.int8)
    runs = _place_runs(rng, n, int(round(rate * n)), max(1, int(round(run_s[0] * fps))),
                       max(1, int(round(run_s[1] * fps))), avoid)
    for start, stop in runs:
        codes[start:stop] = rng.choice(kinds)
    return codes


def _ramp(mask: np.ndarray, ramp: float) -> np.ndarray:
    """1 inside the runs of ``mask`` with linear ramps of ``ramp`` steps inside their ends, 0 outside.

    Used to cross-fade a drive into its conflicting trajectory so the switch is not a jump.
    """
    weight = np.zeros(len(mask))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    ramp = max(ramp, 1.0)
    for start, stop in zip(edges[0::2], edges[1::2], strict=True):
        idx = np.arange(start, stop)
        weight[start:stop] = np.minimum(1.0, np.minimum(idx - start + 1, stop - idx) / ramp)
    return weight


def _drive(latent: np.ndarray, nuisance: np.ndarray, strength: float) -> np.ndarray:
    """``strength * latent + (1 - strength) * nuisance``, clipped to [-1, 1]."""
    return np.clip(strength * latent + (1.0 - strength) * nuisance, -1.0, 1.0)


def _frame_count(cfg: SynthConfig, duration: float) -> tuple[int, int]:
    """Frames and audio samples: the audio is whole AAC frames and within half a video frame of the video.

    AAC decoders return whole frames (the padding of the last one is not trimmed from mp4), so the
    audio is made a whole number of frames and the frame count nudged until both durations agree.
    """
    t0 = max(1, int(round(duration * cfg.fps)))
    best = None
    for k in range(0, 200):
        for t in {t0 + k, t0 - k}:
            if t < 1:
                continue
            samples = max(1, int(round(t * cfg.sample_rate / cfg.fps / AAC_FRAME))) * AAC_FRAME
            err = abs(samples / cfg.sample_rate - t / cfg.fps) * cfg.fps  # in video frames
            if best is None or err < best[0]:
                best = (err, t, samples)
            if err <= 0.5:
                return t, samples
    return best[1], best[2]


# ------------------------------------------------------------------------------------------------ plan


class _Plan:
    """Everything about one recording that is drawn at random (cheap; no media).

    Each part draws from its own child of ``SeedSequence([seed, index, 0x5A11])``; the ``rng_face``,
    ``rng_voice`` and ``rng_id`` generators are left for the renderers.
    """

    def __init__(self, cfg: SynthConfig, index: int, split: str) -> None:
        self.cfg, self.index, self.split = cfg, index, split
        self.name = recording_name(cfg, index)
        root_seq = np.random.SeedSequence([int(cfg.seed) & 0xFFFFFFFF, index, 0x5A11])
        (s_len, s_lat, s_nui, s_weak, s_gap, s_id, s_face, s_voice) = root_seq.spawn(8)
        self.rng_face = np.random.default_rng(s_face)
        self.rng_voice = np.random.default_rng(s_voice)
        self.rng_id = np.random.default_rng(s_id)

        duration = cfg.duration_s * (1.0 + np.random.default_rng(s_len).uniform(-0.25, 0.25))
        self.n_frames, self.n_samples = _frame_count(cfg, duration)
        n, fps = self.n_frames, cfg.fps
        self.times = np.arange(n, dtype=np.float64) / fps

        rng = np.random.default_rng(s_lat)
        self.valence = _trajectory(rng, n, fps)
        self.arousal = _trajectory(rng, n, fps)

        rng = np.random.default_rng(s_nui)
        nuisance = {key: _trajectory(rng, n, fps) for key in ("fv", "fa", "vv", "va")}
        conflict = {key: _trajectory(rng, n, fps) for key in ("fv", "fa", "vv", "va")}

        rng = np.random.default_rng(s_weak)
        self.face_weak = _weak_codes(rng, n, fps, cfg.weak_rate_of("face"), cfg.weak_kinds("face"),
                                     (cfg.face_weak_min_s, cfg.face_weak_max_s))
        # with weak_overlap false the voice runs keep one frame clear of the face's (the runs never touch)
        avoid = None if cfg.weak_overlap else self.face_weak != WEAK_NONE
        self.voice_weak = _weak_codes(rng, n, fps, cfg.weak_rate_of("voice"), cfg.weak_kinds("voice"),
                                      (cfg.voice_weak_min_s, cfg.voice_weak_max_s), avoid)

        drives = {
            "fv": _drive(self.valence, nuisance["fv"], cfg.face_valence_strength),
            "fa": _drive(self.arousal, nuisance["fa"], cfg.face_arousal_strength),
            "vv": _drive(self.valence, nuisance["vv"], cfg.voice_valence_strength),
            "va": _drive(self.arousal, nuisance["va"], cfg.voice_arousal_strength),
        }
        for key, codes in (("fv", self.face_weak), ("fa", self.face_weak),
                           ("vv", self.voice_weak), ("va", self.voice_weak)):
            weight = _ramp(codes == WEAK_CONFLICTING, 0.15 * fps)
            drives[key] = (1.0 - weight) * drives[key] + weight * conflict[key]
        self.face_valence, self.face_arousal = drives["fv"], drives["fa"]
        self.voice_valence, self.voice_arousal = drives["vv"], drives["va"]
        self.face_present = self.face_weak != WEAK_MISSING

        rng = np.random.default_rng(s_gap)
        self.annotated = np.ones(n, dtype=bool)
        gap_runs = _place_runs(rng, n, int(round(cfg.gap_rate * n)), max(1, int(round(0.2 * fps))),
                               max(1, int(round(2.0 * fps))))
        for start, stop in gap_runs:
            self.annotated[start:stop] = False
        if split == "test":
            self.annotated[:] = False

    def latent_arrays(self) -> dict[str, np.ndarray]:
        """The ground truth stored in ``latent/<name>.npz`` (keys :data:`LATENT_KEYS`)."""
        f32 = np.float32
        return {
            "times": self.times,
            "valence": self.valence.astype(f32),
            "arousal": self.arousal.astype(f32),
            "face_valence": self.face_valence.astype(f32),
            "face_arousal": self.face_arousal.astype(f32),
            "voice_valence": self.voice_valence.astype(f32),
            "voice_arousal": self.voice_arousal.astype(f32),
            "face_weak": self.face_weak,
            "voice_weak": self.voice_weak,
            "face_present": self.face_present,
            "annotated": self.annotated,
            "fps": np.array(self.cfg.fps, dtype=np.float64),
            "sample_rate": np.array(self.cfg.sample_rate, dtype=np.int64),
            "split": np.array(self.split),
        }

    def annotation_text(self) -> str:
        """The Aff-Wild2 VA annotation file: a ``valence,arousal`` header, one row per frame, ``-5,-5`` in gaps."""
        lines = ["valence,arousal"]
        v = np.round(self.valence.astype(np.float32), 4)
        a = np.round(self.arousal.astype(np.float32), 4)
        for i in range(self.n_frames):
            lines.append(f"{v[i]:.4f},{a[i]:.4f}" if self.annotated[i] else "-5,-5")
        return "\n".join(lines) + "\n"
