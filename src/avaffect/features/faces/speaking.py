"""Who is speaking: a per-frame score per person from audio-visual synchrony.

A speaker's mouth moves with their voice: the energy of the soundtrack rises and falls with the mouth's motion.
Per person and timeline step:

* **mouth motion** (:func:`mouth_patch`, gathered by :func:`avaffect.features.faces.people.track_people`): the mean
  absolute difference between consecutive frames of the mouth region (the lower third of the face box, its middle
  half, as a 32 x 16 grey patch normalised by its own mean), NaN where the person is not on screen;
* **voice energy** (:func:`audio_energy`): the log mean square of the soundtrack in 40 ms around the step;
* **speaking score**: the Pearson correlation of the two over a centred window of ``window_s`` seconds (the steps
  where the person is on screen), clipped to [0, 1]; NaN where fewer than half the window's steps show the person.

The score is an approximation (no lip-reading network ships offline): it needs the mouth visible and moving; a
speaker who turns away scores low, and a listener who chews or nods in time with the voice can score high. Its
accuracy on test videos where the speaker is known is measured in ``docs/benchmarks/people.md``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avaffect.media import read_audio

__all__ = ["mouth_patch", "mouth_motion", "audio_energy", "speaking_scores"]

SAMPLE_RATE = 16000


def mouth_patch(rgb: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The mouth region of a face box as a 32 x 16 grey patch divided by its mean (``None``: the box is off the
    frame)."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    top, bottom = int(max(0, y1 + 0.62 * bh)), int(min(h, y1 + 0.95 * bh))
    left, right = int(max(0, x1 + 0.25 * bw)), int(min(w, x2 - 0.25 * bw))
    if bottom - top < 2 or right - left < 2:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    patch = cv2.resize(grey, (32, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    return patch / max(float(patch.mean()), 1.0)


def mouth_motion(previous: np.ndarray | None, current: np.ndarray | None) -> float:
    """How much the mouth moved between two consecutive patches (NaN when either is missing)."""
    if previous is None or current is None:
        return float("nan")
    return float(np.abs(current - previous).mean())


def audio_energy(path: str | Path, times: np.ndarray, window_s: float = 0.04) -> np.ndarray:
    """``[T]`` log mean square of the soundtrack of ``path`` in ``window_s`` around each step time."""
    wav = np.asarray(read_audio(path, SAMPLE_RATE), np.float64)
    cumsum = np.concatenate([[0.0], np.cumsum(wav ** 2)])
    half = int(window_s * SAMPLE_RATE / 2)
    centre = np.round(np.asarray(times) * SAMPLE_RATE).astype(np.int64)
    lo = np.clip(centre - half, 0, len(wav))
    hi = np.clip(centre + half, 0, len(wav))
    n = np.maximum(hi - lo, 1)
    return np.log((cumsum[hi] - cumsum[lo]) / n + 1e-8)


def speaking_scores(motion: np.ndarray, energy: np.ndarray, fps: float, window_s: float = 2.0) -> np.ndarray:
    """``[P, T]`` speaking scores in [0, 1] from mouth motion ``[P, T]`` (NaN off screen) and voice energy ``[T]``
    (see the module docstring)."""
    motion = np.atleast_2d(np.asarray(motion, np.float64))
    energy = np.asarray(energy, np.float64)
    P, T = motion.shape
    half = max(1, int(round(window_s * fps / 2)))
    out = np.full((P, T), np.nan)
    for p in range(P):
        on = np.isfinite(motion[p])
        m = np.where(on, motion[p], 0.0)
        e = np.where(on, energy, 0.0)
        # running sums over the window of the on-screen steps: n, Σm, Σe, Σm², Σe², Σme
        sums = [np.concatenate([[0.0], np.cumsum(x)]) for x in (on.astype(float), m, e, m * m, e * e, m * e)]
        lo = np.clip(np.arange(T) - half, 0, T)
        hi = np.clip(np.arange(T) + half + 1, 0, T)
        n, sm, se, smm, see, sme = ((s[hi] - s[lo]) for s in sums)
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sme - sm * se / n
            var = (smm - sm * sm / n) * (see - se * se / n)
            r = cov / np.sqrt(var)
        ok = on & (n >= (hi - lo) / 2) & (var > 1e-12)
        out[p] = np.where(ok, np.clip(r, 0.0, 1.0), np.nan)
    return out
