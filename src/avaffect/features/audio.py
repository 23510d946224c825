"""Log-mel front-end in numpy (the VGGish recipe, parameterised).

Defaults follow VGGish: 16 kHz input, 25 ms periodic-Hann window, 10 ms hop, FFT size the next
power of two of the window (512), magnitude spectrogram, 64 mel bands between 125 and 7500 Hz
(HTK mel scale ``mel = 1127 ln(1 + f / 700)``, triangles in mel space, DC bin zeroed), then
``log(mel + 0.01)``. Only full windows are framed (no padding): frame ``i`` covers samples
``[i*hop, i*hop + window)`` and its time is its centre ``(i*hop + window/2) / sample_rate``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "mel_band_centers",
    "frame_signal",
    "frame_times",
    "periodic_hann",
    "stft_magnitude",
    "log_mel_spectrogram",
]


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 * ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * np.expm1(np.asarray(mel, dtype=np.float64) / 1127.0)


def mel_band_centers(n_mels: int = 64, fmin: float = 125.0, fmax: float = 7500.0) -> np.ndarray:
    """Centre frequency (Hz) of each mel band ``[n_mels]``."""
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    return mel_to_hz(edges[1:-1])


def mel_filterbank(
    n_mels: int = 64,
    n_fft_bins: int = 257,
    sample_rate: int = 16000,
    fmin: float = 125.0,
    fmax: float = 7500.0,
) -> np.ndarray:
    """Triangular mel weights ``[n_fft_bins, n_mels]`` (multiply a ``[F, n_fft_bins]`` spectrogram).

    ``n_fft_bins`` is ``fft_size // 2 + 1``. Band ``m`` rises linearly in mel from edge ``m`` to
    ``m + 1`` and falls to ``m + 2``, with ``n_mels + 2`` edges evenly spaced in mel between
    ``fmin`` and ``fmax``. The DC bin gets no weight.
    """
    nyquist = sample_rate / 2.0
    if not 0.0 <= fmin < fmax <= nyquist:
        raise ValueError(f"need 0 <= fmin < fmax <= {nyquist} (Nyquist), got fmin={fmin}, fmax={fmax}")
    bin_mel = hz_to_mel(np.linspace(0.0, nyquist, n_fft_bins))[:, None]  # [B, 1]
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def periodic_hann(length: int) -> np.ndarray:
    """Periodic Hann window (the one used for spectral analysis, as in VGGish)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def frame_signal(signal: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """``[F, frame_length]`` strided view of the full frames of a 1-D signal (no padding).

    Returns ``F = 1 + (N - frame_length) // hop_length`` frames, zero frames when the signal is
    shorter than one frame. The result is a read-only view: copy before writing to it.
    """
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {signal.shape}")
    if len(signal) < frame_length:
        return np.zeros((0, frame_length), dtype=signal.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(signal, frame_length)
    return windows[::hop_length]


def frame_times(num_frames: int, frame_length: int, hop_length: int, sample_rate: int) -> np.ndarray:
    """Centre time (seconds) of each frame made by :func:`frame_signal`."""
    return (np.arange(num_frames) * hop_length + frame_length / 2.0) / float(sample_rate)


def _lengths(sample_rate: int, window_s: float, hop_s: float, fft_size: int | None) -> tuple[int, int, int]:
    win = int(round(window_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    if win <= 0 or hop <= 0:
        raise ValueError(f"window ({window_s} s) and hop ({hop_s} s) must be at least one sample")
    n_fft = fft_size if fft_size is not None else int(2 ** np.ceil(np.log2(win)))
    if n_fft < win:
        raise ValueError(f"fft_size {n_fft} is shorter than the window ({win} samples)")
    return win, hop, n_fft


STFT_CHUNK = 4096  # frames per FFT batch in stft_magnitude (41 s of audio at a 10 ms hop)


def stft_magnitude(
    signal: np.ndarray,
    sample_rate: int = 16000,
    window_s: float = 0.025,
    hop_s: float = 0.010,
    fft_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectrogram ``[F, fft_size // 2 + 1]`` and frame centre times ``[F]``.

    Computed ``chunk`` frames at a time: the FFT's complex double-precision intermediate would otherwise be
    about 4x the float32 result (hundreds of MB for a 10-minute recording); each frame's values are the same."""
    win, hop, n_fft = _lengths(sample_rate, window_s, hop_s, fft_size)
    frames = frame_signal(np.asarray(signal, dtype=np.float32), win, hop)
    window = periodic_hann(win).astype(np.float32)
    spec = np.empty((len(frames), n_fft // 2 + 1), dtype=np.float32)
    for lo in range(0, len(frames), STFT_CHUNK):
        spec[lo:lo + STFT_CHUNK] = np.abs(np.fft.rfft(frames[lo:lo + STFT_CHUNK] * window, n=n_fft, axis=1))
    return spec, frame_times(len(frames), win, hop, sample_rate)


def log_mel_spectrogram(
    signal: np.ndarray,
    sample_rate: int = 16000,
    window_s: float = 0.025,
    hop_s: float = 0.010,
    n_mels: int = 64,
    fmin: float = 125.0,
    fmax: float = 7500.0,
    log_offset: float = 0.01,
    fft_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(log(mel + log_offset) [F, n_mels] float32, frame centre times [F] seconds)``."""
    spec, times = stft_magnitude(signal, sample_rate, window_s, hop_s, fft_size)
    bank = mel_filterbank(n_mels, spec.shape[1], sample_rate, fmin, fmax).astype(np.float32)
    mel = spec @ bank
    return np.log(mel + np.float32(log_offset)).astype(np.float32, copy=False), times
