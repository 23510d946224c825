"""``logmel_stats`` (audio): window statistics of log-mel frames, log-energy and a periodicity proxy;
needs no downloaded weights."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from avaffect.data.recording import Recording
from avaffect.features.audio import frame_signal, log_mel_spectrogram
from avaffect.features.extractors.base import Extractor, ExtractorParams, Positive, audio_source, register_extractor
from avaffect.features.temporal_align import CONTEXTS, align_to_timeline, window_bounds
from avaffect.media import iter_audio, read_audio


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
    the ``window``-second window (``context`` causal / forward / centered, see temporal_align.py):

    ``[mean logmel (n_mels), std logmel (n_mels), mean logE, std logE, mean periodicity, mean log2 f0]``

    so ``dim = 2 * n_mels + 4``. Steps past the end of the audio take the nearest frame.
    """

    name = "logmel_stats"
    modality = "audio"
    version = "1"
    class Params(ExtractorParams):
        sample_rate: Positive = Field(16000, description="audio decoded to this rate, mono (Hz)")
        window: float = Field(0.5, ge=0, description="seconds of frames summarised per timeline step")
        context: Literal[CONTEXTS] = Field("centered", description="where the window sits: causal (ending at the "
                                           "step), forward (starting at it) or centered")
        n_mels: Positive = Field(64, description="mel bands")
        fmin: float = Field(125.0, ge=0, description="lowest mel frequency (Hz)")
        fmax: float = Field(7500.0, description="highest mel frequency (Hz), at most sample_rate / 2")
        frame_window: float = Field(0.025, gt=0, description="analysis frame (s)")
        frame_hop: float = Field(0.010, gt=0, description="analysis hop (s)")
        log_offset: float = Field(0.01, description="log(mel + log_offset)")
        f0_min: float = Field(80.0, gt=0, description="lowest pitch of the periodicity search (Hz)")
        f0_max: float = Field(400.0, description="highest pitch of the periodicity search (Hz)")

        @model_validator(mode="after")
        def _ranges(self) -> LogMelStats.Params:
            if not self.fmin < self.fmax <= self.sample_rate / 2:
                raise ValueError("need 0 <= fmin < fmax <= sample_rate / 2")
            if not self.f0_min < self.f0_max:
                raise ValueError("need 0 < f0_min < f0_max")
            return self

    @property
    def dim(self) -> int:
        return 2 * self.params["n_mels"] + 4

    def voicing_column(self) -> int:
        """The column of the mean periodicity (a voicing strength in [0, 1]) in the features."""
        return 2 * self.params["n_mels"] + 2

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
        feats, times = self.frame_features(np.asarray(wav, dtype=np.float32))
        return self._summarise(feats, times, np.asarray(timeline, dtype=np.float64))

    def _summarise(self, feats: np.ndarray, times: np.ndarray, timeline: np.ndarray) -> np.ndarray:
        """The per-step statistics (class docstring) of frame features ``feats`` at ``times``."""
        p = self.params
        n = p["n_mels"]
        mean = align_to_timeline(feats, times, timeline, p["window"], p["context"])
        mean_sq = align_to_timeline(feats[:, : n + 1] ** 2, times, timeline, p["window"], p["context"])
        std = np.sqrt(np.maximum(mean_sq - mean[:, : n + 1] ** 2, 0.0))
        out = np.concatenate(
            [mean[:, :n], std[:, :n], mean[:, n : n + 1], std[:, n : n + 1], mean[:, n + 1 : n + 3]], axis=1
        )
        return out.astype(np.float32)

    def extract(self, rec: Recording) -> np.ndarray:
        blocks = [f for _, _, f in self.iter_steps(rec)]
        return np.concatenate(blocks) if blocks else np.zeros((0, self.dim), np.float32)

    def iter_steps(self, rec: Recording) -> Iterator[tuple[int, int, np.ndarray]]:
        """The features in blocks of steps from the audio decoded piece by piece (:func:`avaffect.media.
        iter_audio`): about :attr:`BLOCK_S` seconds of audio, its analysis frames and the frames a step still
        needs are held, so memory does not grow with the recording's length. Each step averages the same frames
        as on the whole waveform (the sums run over fewer rows: equal to float rounding). A timeline out of time
        order is summarised on the whole waveform at once."""
        timeline = np.asarray(rec.times, dtype=np.float64)
        sr = int(self.params["sample_rate"])
        if len(timeline) and np.any(np.diff(timeline) < 0):
            wav = read_audio(audio_source(rec), sample_rate=sr)
            return iter([(0, len(timeline), self.features_from_waveform(wav, timeline))])
        return self._blocks(iter_audio(audio_source(rec), sample_rate=sr), timeline)

    BLOCK_S = 30.0  # seconds of audio per block of iter_steps

    def _blocks(self, pieces: Iterator[np.ndarray], timeline: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        steps = self.step_stream()
        steps.add_steps(timeline)
        block = max(steps.win, int(self.BLOCK_S * int(self.params["sample_rate"])))
        ended = False
        while steps.done < len(timeline) and not ended:
            got = 0
            while got < block:
                piece = next(pieces, None)
                if piece is None:
                    ended = True
                    steps.end()
                    break
                steps.add_audio(piece)
                got += len(piece)
            out = steps.take()
            if out is not None:
                yield out

    def step_stream(self) -> LogMelSteps:
        """An incremental summariser: audio and step times given as they arrive (a live source), the features of
        the steps that are final handed out (:class:`LogMelSteps`)."""
        return LogMelSteps(self)


class LogMelSteps:
    """:class:`LogMelStats`' features with the audio and the timeline arriving piece by piece, memory independent of
    the length: :meth:`add_audio` (mono float32 at ``sample_rate``, sample 0 at time 0), :meth:`add_steps` (times,
    increasing), :meth:`end` (no more audio: the steps past its end take the nearest frame), and :meth:`take`, the
    features of the steps that became final since the last call. A step is final once an analysis frame beyond its
    window is known (then so is the nearest frame after it), or after :meth:`end`. Each step averages the same frames
    as on the whole waveform (the sums run over fewer rows: equal to float rounding); ``iter_steps`` is this, fed
    in blocks of :attr:`LogMelStats.BLOCK_S` seconds, and ``avaffect live`` feeds it as the source delivers."""

    def __init__(self, extractor: LogMelStats) -> None:
        self.ex = extractor
        p = extractor.params
        self.sr = int(p["sample_rate"])
        self.win, self.hop = int(round(p["frame_window"] * self.sr)), int(round(p["frame_hop"] * self.sr))
        # the steps not handed out yet: step `done + i` is timeline[i]
        self.timeline, self.lo_t, self.hi_t = np.zeros(0), np.zeros(0), np.zeros(0)
        self.pieces: list[np.ndarray] = []  # audio received, not yet framed
        self.wav = np.zeros(0, np.float32)  # samples not yet in a frame; wav[0] is sample `base` (a multiple of hop)
        self.base = 0
        self.feats, self.times = np.zeros((0, p["n_mels"] + 3)), np.zeros(0)  # the frames a step may still need
        self.done = 0  # steps handed out
        self.samples = 0  # audio samples received
        self.ended = self.framed = False

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio received."""
        return self.samples / self.sr

    @property
    def steps(self) -> int:
        """Steps given so far."""
        return self.done + len(self.timeline)

    def add_steps(self, times: np.ndarray) -> None:
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        lo, hi = window_bounds(times, self.ex.params["window"], self.ex.params["context"])
        self.timeline = np.concatenate([self.timeline, times])
        self.lo_t, self.hi_t = np.concatenate([self.lo_t, lo]), np.concatenate([self.hi_t, hi])

    def add_audio(self, piece: np.ndarray) -> None:
        if self.ended:
            raise ValueError("audio added after end()")
        piece = np.asarray(piece, dtype=np.float32).reshape(-1)
        self.pieces.append(piece)
        self.samples += len(piece)

    def end(self) -> None:
        """No more audio will come."""
        self.ended = True

    def take(self) -> tuple[int, int, np.ndarray] | None:
        """``(lo, hi, features [hi - lo, dim])`` of the steps that became final, or ``None``."""
        if self.pieces:
            self.wav = np.concatenate([self.wav, *self.pieces])
            self.pieces = []
        if self.ended and not self.framed and len(self.wav) < self.win:  # under one analysis frame: padded, whole
            if not len(self.timeline):
                return None
            return self._hand_out(len(self.timeline), self.ex.features_from_waveform(self.wav, self.timeline))
        if len(self.wav) >= self.win:
            f, t = self.ex.frame_features(self.wav)
            self.feats = np.concatenate([self.feats, f])
            self.times = np.concatenate([self.times, t + self.base / self.sr])
            used = len(f) * self.hop
            self.wav, self.base, self.framed = self.wav[used:], self.base + used, True
        if self.ended:
            upto = len(self.timeline)
        elif len(self.times):  # the steps whose window ends before the last known frame
            upto = int(np.searchsorted(self.hi_t, self.times[-1], side="left"))
        else:
            upto = 0
        if upto <= 0:
            return None
        return self._hand_out(upto, self.ex._summarise(self.feats, self.times, self.timeline[:upto]))

    def _hand_out(self, upto: int, features: np.ndarray) -> tuple[int, int, np.ndarray]:
        lo = self.done
        self.done += upto
        self.timeline, self.lo_t, self.hi_t = self.timeline[upto:], self.lo_t[upto:], self.hi_t[upto:]
        if len(self.timeline) and len(self.times):  # keep the frames from the one before the next step's window
            keep = max(0, int(np.searchsorted(self.times, self.lo_t[0], side="left")) - 1)
            self.feats, self.times = self.feats[keep:], self.times[keep:]
        return lo, self.done, features
