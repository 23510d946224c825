"""The built-in synthetic dataset (SPEC §6, "Synthetic set").

:func:`write_synthetic_dataset` writes a small dataset in the Aff-Wild2 / ABAW VA layout whose face
and voice carry latent per-frame valence/arousal trajectories, each modality with its own emphasis:

* the **face** (an OpenCV cartoon on a ``crop_size`` crop, pasted into the raw video frame at a
  slowly moving position over a static background) shows valence in the mouth curvature (strong by
  default) and arousal in eye/brow opening and head jitter (weak by default);
* the **voice** (16 kHz mono, speech-like voiced syllables) shows arousal in pitch, loudness and
  syllable rate (strong by default) and valence in its spectral colour (tilt and a formant-like
  emphasis; weak by default).

The trajectory that drives one modality and dimension is ``s * latent + (1 - s) * nuisance`` with
``s`` the configured strength and ``nuisance`` an independent smooth trajectory, so a weak strength
really carries little information. On top of that, **weak complementarity** segments (1-4 s) are
placed independently per modality: ``missing`` (no face drawn and no jpg / silence), ``noisy``
(heavy pixel noise / heavy waveform noise) and ``conflicting`` (the modality follows an independent
trajectory). The annotations always follow the latent trajectory, with runs of ``-5`` (not
annotated) covering about ``gap_rate`` of the frames.

Layout written under ``root``::

    annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<name>.txt
    cropped_aligned/<name>/00001.jpg ...      one jpg per frame with a face (5-digit, 1-based)
    videos/<name>.mp4                         H.264 (or MPEG-4 part 2) video + mono AAC audio
    latent/<name>.npz                         ground truth (see :data:`LATENT_KEYS`)
    synth_config.json

Test recordings (``n_test``) get crops, video and latent but no annotation file, as the Aff-Wild2
test set. Everything is deterministic from ``seed``: recording ``i`` draws only from
``SeedSequence([seed, i])``, so recordings can be written independently and in any order. Each
recording is written under ``root/.synth_tmp`` and moved into place when complete (the latent npz
last: it marks the recording as finished), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.ndimage import gaussian_filter1d

from avaffect.data.affwild2 import ANNOTATION_DIR, CROPS_DIR  # the layout is the reader's
from avaffect.errors import DataError

log = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "Train_Set", "val": "Validation_Set"}
CONFIG_FILE = "synth_config.json"
TMP_DIR = ".synth_tmp"
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
        return self


def recording_name(cfg: SynthConfig, index: int) -> str:
    """Aff-Wild2-like name of recording ``index``, e.g. ``synth003-30-256x192``."""
    return f"synth{index:03d}-{int(round(cfg.fps))}-{cfg.frame_width}x{cfg.frame_height}"


def recording_plan(cfg: SynthConfig) -> list[tuple[int, str, str]]:
    """``(index, name, split)`` of every recording; splits are ``train``, ``val``, ``test``."""
    plan = []
    index = 0
    for split, count in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
        for _ in range(count):
            plan.append((index, recording_name(cfg, index), split))
            index += 1
    return plan


# --------------------------------------------------------------------------------------------
# trajectories and segments


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise of ``n`` steps, unit variance in expectation."""
    sigma = max(float(sigma), 0.5)
    pad = int(3 * sigma)
    white = rng.standard_normal(n + 2 * pad)
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


def _place_runs(rng: np.random.Generator, n: int, target: int, min_len: int, max_len: int) -> list:
    """Non-touching runs ``(start, stop)`` at random places covering about ``target`` of ``n`` steps."""
    taken = np.zeros(n, dtype=bool)
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


def _weak_codes(rng: np.random.Generator, n: int, fps: float, rate: float) -> np.ndarray:
    codes = np.zeros(n, dtype=np.int8)
    runs = _place_runs(rng, n, int(round(rate * n)), max(1, int(round(fps))), max(1, int(round(4 * fps))))
    for start, stop in runs:
        codes[start:stop] = rng.choice([WEAK_MISSING, WEAK_NOISY, WEAK_CONFLICTING])
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


class _Plan:
    """Everything about one recording that is drawn at random (cheap; no media)."""

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
        self.face_weak = _weak_codes(rng, n, fps, cfg.weak_rate)
        self.voice_weak = _weak_codes(rng, n, fps, cfg.weak_rate)

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
        lines = ["valence,arousal"]
        v = np.round(self.valence.astype(np.float32), 4)
        a = np.round(self.arousal.astype(np.float32), 4)
        for i in range(self.n_frames):
            lines.append(f"{v[i]:.4f},{a[i]:.4f}" if self.annotated[i] else "-5,-5")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# face


_SKIN_TONES = np.array([  # BGR, light to dark
    (196, 214, 245), (170, 196, 234), (140, 175, 222), (112, 150, 198), (86, 120, 165), (60, 88, 124),
], dtype=np.float64)
_HAIR = np.array([(20, 20, 25), (30, 45, 80), (40, 80, 140), (150, 170, 190), (25, 30, 45)], dtype=np.float64)
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates in 1/16 px
_SCALE = 1 << _SHIFT


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _SCALE)), int(round(y * _SCALE))


def _color(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(c, 0, 255))


class _Face:
    """Identity of the face and its drawing on one crop."""

    def __init__(self, rng: np.random.Generator, cs: int) -> None:
        self.cs = cs
        tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 8, 3)
        self.skin = _color(tone)
        self.shade = _color(tone * 0.78)
        self.hair = _color(_HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 6, 3))
        self.lips = _color(tone * 0.45 + np.array([10, 10, 60]))
        self.iris = _color(rng.choice([(40, 50, 70), (90, 70, 40), (60, 90, 60), (30, 30, 30)]))
        # aligned crops: the face is normalised in place and scale, so shape varies only moderately
        self.fw = rng.uniform(0.30, 0.34) * cs  # half-width
        self.fh = self.fw * rng.uniform(1.2, 1.32)  # half-height
        self.eye_dx = self.fw * rng.uniform(0.36, 0.48)
        self.eye_dy = -self.fh * rng.uniform(0.12, 0.22)
        self.eye_w = self.fw * rng.uniform(0.16, 0.22)
        self.mouth_w = self.fw * rng.uniform(0.40, 0.50)  # half-width
        self.mouth_dy = self.fh * rng.uniform(0.46, 0.54)
        self.hair_top = rng.uniform(0.85, 1.05)

    def draw(self, img: np.ndarray, valence: float, arousal: float, jx: float, jy: float) -> None:
        cs, lt = self.cs, cv2.LINE_AA
        cx, cy = cs / 2 + jx, cs * 0.52 + jy
        u = (arousal + 1.0) / 2.0  # 0 calm .. 1 excited
        hair_axes = _pt(self.fw * 1.08, self.fh * self.hair_top)
        cv2.ellipse(img, _pt(cx, cy - 0.18 * self.fh), hair_axes, 0, 0, 360, self.hair, -1, lt, _SHIFT)
        cv2.ellipse(img, _pt(cx, cy), _pt(self.fw, self.fh), 0, 0, 360, self.skin, -1, lt, _SHIFT)
        # eyes: opening follows arousal; brows rise with arousal
        eye_h = self.eye_w * (0.15 + 0.55 * u)
        for side in (-1.0, 1.0):
            ex, ey = cx + side * self.eye_dx, cy + self.eye_dy
            cv2.ellipse(img, _pt(ex, ey), _pt(self.eye_w, eye_h), 0, 0, 360, (235, 235, 235), -1, lt, _SHIFT)
            r = min(eye_h, 0.5 * self.eye_w)
            cv2.circle(img, _pt(ex, ey), int(round(r * _SCALE)), self.iris, -1, lt, _SHIFT)
            brow_y = ey - eye_h - self.eye_w * (0.35 + 0.8 * u)
            cv2.line(img, _pt(ex - side * 0.2 * self.eye_w - self.eye_w, brow_y + 0.15 * self.eye_w),
                     _pt(ex + self.eye_w, brow_y - side * 0.1 * self.eye_w), self.hair, 2, lt, _SHIFT)
        # nose
        nose_tip = _pt(cx - 0.06 * self.fw, cy + 0.16 * self.fh)
        cv2.line(img, _pt(cx, cy + 0.02 * self.fh), nose_tip, self.shade, 2, lt, _SHIFT)
        # mouth: corners up for positive valence (smile), down for negative
        my = cy + self.mouth_dy
        xs = np.linspace(-1.0, 1.0, 11)
        bend = 0.45 * self.mouth_w * valence
        pts = np.stack([cx + xs * self.mouth_w, my - bend * (xs ** 2 - 0.5)], axis=1)
        cv2.polylines(img, [np.round(pts * _SCALE).astype(np.int32)], False, self.lips, 3, lt, _SHIFT)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A static scene: a vertical gradient between two colours and a few soft rectangles."""
    top, bottom = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    img = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1))
    img = img.astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
        cv2.rectangle(img, (x0, y0), (x1, y1), _color(rng.uniform(20, 235, 3)), -1)
    return cv2.GaussianBlur(img, (0, 0), 2.0)


# video encoders tried in order: (codec, options, bit rate or None)
VIDEO_CODECS: tuple[tuple[str, dict, int | None], ...] = (
    ("libx264", {"preset": "veryfast", "crf": "20"}, None),
    ("mpeg4", {}, 1_500_000),
)


def _open_video_stream(container, fps: float, width: int, height: int):
    rate = Fraction(fps).limit_denominator(1001)
    for codec, options, bit_rate in VIDEO_CODECS:
        try:
            stream = container.add_stream(codec, rate=rate)
        except Exception:  # codec not built into this PyAV's ffmpeg
            continue
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(options)
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.codec_context.time_base = 1 / rate
        return stream
    names = ", ".join(codec for codec, _, _ in VIDEO_CODECS)
    raise DataError(None, f"PyAV's ffmpeg has none of the video encoders {names}",
                    "install a full PyAV wheel")


def video_codec() -> str:
    """The video encoder the writer uses with this PyAV (``libx264``, else ``mpeg4``)."""
    for codec, _, _ in VIDEO_CODECS:
        if codec in av.codecs_available:
            return codec
    return "none"


# --------------------------------------------------------------------------------------------
# voice


def _voice(plan: _Plan) -> np.ndarray:
    """The mono waveform (float32, ``plan.n_samples``) of one recording."""
    cfg, rng = plan.cfg, plan.rng_voice
    sr, fps, n = cfg.sample_rate, cfg.fps, plan.n_samples
    base_f0 = plan.rng_id.uniform(95.0, 240.0)  # identity
    ts = np.arange(n) / sr
    frame_of = np.minimum((ts * fps).astype(np.int64), plan.n_frames - 1)
    arousal = np.interp(ts, plan.times, plan.voice_arousal)
    valence = np.interp(ts, plan.times, plan.voice_valence)

    env = np.zeros(n)
    intonation = np.ones(n)
    vowel = np.full(n, 600.0)  # F1-like formant per syllable (speech-like, affect-neutral)
    bursts = np.zeros(n)
    t = rng.uniform(0.0, 0.5)
    total = n / sr
    while t < total:
        n_syl = int(rng.integers(2, 8))
        for k in range(n_syl):
            a = plan.voice_arousal[min(int(t * fps), plan.n_frames - 1)]
            dur = rng.uniform(0.8, 1.2) * 0.24 * 2.0 ** (-0.7 * a)
            i0, i1 = int(t * sr), min(int((t + 0.8 * dur) * sr), n)
            if i1 - i0 > 8:
                x = np.linspace(0.0, 1.0, i1 - i0)
                env[i0:i1] = np.sin(np.pi * x) ** 0.6
                accent = 1.0 + rng.uniform(0.0, 0.1) * np.sin(np.pi * x)
                intonation[i0:i1] = accent * (1.0 + 0.08 * (1 - k / n_syl))  # declination over the phrase
                vowel[i0:i1] = rng.uniform(350.0, 900.0)
                b1 = min(i0 + int(0.025 * sr), n)
                bursts[i0:b1] = rng.uniform(0.0, 0.35)
            t += dur
            if t >= total:
                break
        a = plan.voice_arousal[min(int(t * fps), plan.n_frames - 1)]
        t += rng.uniform(0.2, 0.8) * 2.0 ** (-0.8 * a)

    weak = plan.voice_weak[frame_of]
    env[weak == WEAK_MISSING] = 0.0
    bursts[weak == WEAK_MISSING] = 0.0

    f0 = base_f0 * 2.0 ** (0.55 * arousal) * intonation
    gain = 0.1 * 10.0 ** (0.45 * arousal)  # about +-9 dB with arousal
    voiced = np.flatnonzero(env > 0)
    speech = np.zeros(n)
    if len(voiced):
        phase = 2 * np.pi * np.cumsum(f0) / sr
        f0v, vv, fv = f0[voiced], valence[voiced], vowel[voiced]
        z = np.exp(1j * phase[voiced])
        zk = z.copy()
        tilt = 1.0 - 0.5 * vv  # brighter spectrum with positive valence
        centre = 1400.0 * 2.0 ** (0.8 * vv)  # formant-like emphasis moves up with valence
        acc = np.zeros(len(voiced))
        power = np.zeros(len(voiced))
        fmax = 0.45 * sr
        for k in range(1, 41):
            fk = k * f0v
            w = k ** -tilt * (1.0 + 2.5 * np.exp(-0.5 * ((fk - centre) / 300.0) ** 2)
                              + 2.0 * np.exp(-0.5 * ((fk - fv) / 150.0) ** 2))
            w[fk > min(fmax, 5000.0)] = 0.0
            acc += w * zk.imag
            power += w * w
            zk *= z
        speech[voiced] = acc / np.sqrt(np.maximum(power, 1e-12) / 2.0)
    noise = rng.standard_normal(n)
    consonant = np.diff(noise, prepend=0.0) * bursts
    wave = gain * (env * speech + consonant)
    wave += 0.003 * rng.standard_normal(n)  # noise floor
    noisy = weak == WEAK_NOISY
    wave[noisy] += 0.15 * rng.standard_normal(int(noisy.sum()))
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# writing


def _write_media(plan: _Plan, tmp: Path) -> None:
    """Render crops (jpg) and the mp4 (video + AAC audio) of one recording into ``tmp``."""
    cfg, rng = plan.cfg, plan.rng_face
    cs, width, height, n = cfg.crop_size, cfg.frame_width, cfg.frame_height, plan.n_frames
    face = _Face(plan.rng_id, cs)
    background = _background(plan.rng_id, width, height)
    fps = cfg.fps

    # slow placement of the face in the raw frame, small head jitter growing with arousal
    px = np.round((np.tanh(0.8 * _smooth_noise(rng, n, 3.0 * fps)) + 1) / 2 * (width - cs)).astype(int)
    py = np.round((np.tanh(0.8 * _smooth_noise(rng, n, 3.0 * fps)) + 1) / 2 * (height - cs)).astype(int)
    jitter = 0.4 + 1.6 * (plan.face_arousal + 1.0) / 2.0  # px (at 112), std
    jx = _smooth_noise(rng, n, 0.12 * fps) * jitter * cs / 112.0
    jy = _smooth_noise(rng, n, 0.12 * fps) * jitter * cs / 112.0
    bank = rng.standard_normal((6, cs + 16, cs + 16, 3)).astype(np.float32)
    mild, heavy = (bank * 3.0).astype(np.int16), (bank * 70.0).astype(np.int16)
    pick = rng.integers(0, len(bank), n)
    offs = rng.integers(0, 16, (n, 2))

    crops_dir = tmp / "crops"
    crops_dir.mkdir(parents=True)
    jpg_params = [cv2.IMWRITE_JPEG_QUALITY, 92]
    audio = _voice(plan)

    with av.open(str(tmp / "video.mp4"), "w") as container:
        vstream = _open_video_stream(container, fps, width, height)
        astream = container.add_stream("aac", rate=cfg.sample_rate)
        astream.layout = "mono"
        astream.bit_rate = 64000
        for i in range(n):
            crop = background[py[i]:py[i] + cs, px[i]:px[i] + cs].copy()
            if plan.face_present[i]:
                face.draw(crop, float(plan.face_valence[i]), float(plan.face_arousal[i]), jx[i], jy[i])
            bank_ = heavy if plan.face_weak[i] == WEAK_NOISY else mild
            dy, dx = offs[i]
            noisy = crop.astype(np.int16) + bank_[pick[i], dy:dy + cs, dx:dx + cs]
            crop = np.clip(noisy, 0, 255).astype(np.uint8)
            if plan.face_present[i]:
                cv2.imwrite(str(crops_dir / f"{i + 1:05d}.jpg"), crop, jpg_params)
            frame = background.copy()
            frame[py[i]:py[i] + cs, px[i]:px[i] + cs] = crop
            vframe = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vframe.pts = i
            for packet in vstream.encode(vframe):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        for start in range(0, len(audio), AAC_FRAME):
            chunk = audio[start:start + AAC_FRAME]
            aframe = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            aframe.sample_rate = cfg.sample_rate
            aframe.pts = start
            for packet in astream.encode(aframe):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)


def _targets(root: Path, name: str, split: str) -> dict[str, Path | None]:
    ann = root / ANNOTATION_DIR / SPLIT_DIRS[split] / f"{name}.txt" if split in SPLIT_DIRS else None
    return {
        "crops": root / CROPS_DIR / name,
        "video": root / "videos" / f"{name}.mp4",
        "annotation": ann,
        "latent": root / "latent" / f"{name}.npz",
    }


def _is_done(targets: dict[str, Path | None]) -> bool:
    return all(p is None or p.exists() for p in targets.values())


def _write_recording(root: Path, cfg: SynthConfig, index: int, split: str) -> bool:
    """Write one recording unless finished; returns whether it was written."""
    plan = _Plan(cfg, index, split)
    targets = _targets(root, plan.name, split)
    if _is_done(targets):
        return False
    tmp = root / TMP_DIR / f"{plan.name}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _write_media(plan, tmp)
        if targets["annotation"] is not None:
            (tmp / "annotation.txt").write_text(plan.annotation_text())
        with open(tmp / "latent.npz", "wb") as fh:
            np.savez(fh, **plan.latent_arrays())
        # move into place; the latent npz goes last and marks the recording as finished
        latent = targets["latent"]
        if latent.exists():
            latent.unlink()
        if targets["crops"].exists():
            shutil.rmtree(targets["crops"])
        targets["crops"].parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "crops", targets["crops"])
        targets["video"].parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "video.mp4", targets["video"])
        if targets["annotation"] is not None:
            targets["annotation"].parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / "annotation.txt", targets["annotation"])
        latent.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "latent.npz", latent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _check_config(path: Path, cfg: SynthConfig, root: Path) -> None:
    """Raise DataError if ``path`` holds a config other than ``cfg``."""
    try:
        stored = SynthConfig.model_validate(json.loads(path.read_text()))
    except Exception as exc:  # unreadable or from another version
        raise DataError(path, f"cannot read the synthetic config stored there ({exc})",
                        "use another --out folder or delete it") from exc
    if stored != cfg:
        old, new = stored.model_dump(), cfg.model_dump()
        diff = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in new if old[k] != new[k])
        raise DataError(root, f"already holds a synthetic dataset written with another config ({diff})",
                        "use another --out folder or delete it")


def write_synthetic_dataset(root: str | Path, cfg: SynthConfig | None = None, progress: bool = True) -> Path:
    """Write (or finish writing) the synthetic Aff-Wild2-format dataset under ``root``; returns ``root``.

    Finished recordings are skipped, so re-running after an interruption resumes. ``root`` must be
    new, empty, or a synthetic dataset written with the same config (else :class:`DataError`).
    """
    from tqdm.auto import tqdm

    cfg = cfg or SynthConfig()
    root = Path(root)
    final_cfg = root / CONFIG_FILE
    pending_cfg = root / TMP_DIR / "config.json"
    if final_cfg.exists():
        _check_config(final_cfg, cfg, root)
    elif pending_cfg.exists():
        _check_config(pending_cfg, cfg, root)
    elif (root / "annotations").exists() or (root / CROPS_DIR).exists():
        raise DataError(root, "already holds a dataset that `avaffect synth` did not write",
                        "use another --out folder or delete it")
    pending_cfg.parent.mkdir(parents=True, exist_ok=True)
    if not pending_cfg.exists():
        pending_cfg.write_text(cfg.model_dump_json(indent=2) + "\n")

    written = 0
    plan = recording_plan(cfg)
    for index, name, split in tqdm(plan, desc="synth", unit="rec", disable=not progress):
        if _write_recording(root, cfg, index, split):
            written += 1
        else:
            log.info("%s: already written, skipped", name)
    log.info("synthetic dataset in %s: %d recordings written, %d already there", root, written,
             len(plan) - written)

    tmp_cfg = root / f".{CONFIG_FILE}.{os.getpid()}.tmp"
    tmp_cfg.write_text(cfg.model_dump_json(indent=2) + "\n")
    os.replace(tmp_cfg, final_cfg)
    shutil.rmtree(root / TMP_DIR, ignore_errors=True)
    return root
