"""The synthetic voice of a recording: speech-like voiced syllables at the configured sample rate.

Arousal shows in pitch, loudness and syllable rate; valence in the spectral colour (tilt and a
formant-like emphasis). ``missing`` weak segments are silent, ``noisy`` ones get heavy waveform noise.
"""

from __future__ import annotations

import numpy as np

from avaffect.data.synth.plan import WEAK_MISSING, WEAK_NOISY, _Plan


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
        speech[voiced] = _harmonics(f0, valence[voiced], vowel[voiced], voiced, sr)
    noise = rng.standard_normal(n)
    consonant = np.diff(noise, prepend=0.0) * bursts
    wave = gain * (env * speech + consonant)
    wave += 0.003 * rng.standard_normal(n)  # noise floor
    noisy = weak == WEAK_NOISY
    wave[noisy] += 0.15 * rng.standard_normal(int(noisy.sum()))
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _harmonics(f0: np.ndarray, valence: np.ndarray, vowel: np.ndarray, voiced: np.ndarray, sr: int) -> np.ndarray:
    """Unit-power sum of up to 40 harmonics of ``f0`` at the ``voiced`` samples (``valence``, ``vowel``:
    their values there), weighted by a valence-dependent tilt, a formant-like emphasis and the vowel."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    f0v = f0[voiced]
    z = np.exp(1j * phase[voiced])
    zk = z.copy()
    tilt = 1.0 - 0.5 * valence  # brighter spectrum with positive valence
    centre = 1400.0 * 2.0 ** (0.8 * valence)  # formant-like emphasis moves up with valence
    acc = np.zeros(len(voiced))
    power = np.zeros(len(voiced))
    fmax = 0.45 * sr
    for k in range(1, 41):
        fk = k * f0v
        w = k ** -tilt * (1.0 + 2.5 * np.exp(-0.5 * ((fk - centre) / 300.0) ** 2)
                          + 2.0 * np.exp(-0.5 * ((fk - vowel) / 150.0) ** 2))
        w[fk > min(fmax, 5000.0)] = 0.0
        acc += w * zk.imag
        power += w * w
        zk *= z
    return acc / np.sqrt(np.maximum(power, 1e-12) / 2.0)
