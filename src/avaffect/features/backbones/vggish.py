"""VGGish: AudioSet log-mel patches → 128-d embeddings (Hershey et al., ICASSP 2017).

Front end (exactly VGGish's, in numpy, :func:`avaffect.features.audio.log_mel_spectrogram`): audio
at 16 kHz mono, 25 ms periodic-Hann windows every 10 ms, 512-point FFT magnitude, 64 HTK-mel bands
125–7500 Hz, ``log(mel + 0.01)``. An *example* is 96 consecutive frames = 0.96 s, a ``[96, 64]``
image (time x mel).

Network (:class:`VGGish`), parameter names as in the widely used PyTorch port ("torchvggish",
weights file ``vggish-10086976.pth``)::

    features.0  Conv 1→64   3x3  ReLU  MaxPool 2      [B, 64, 48, 32]
    features.3  Conv 64→128 3x3  ReLU  MaxPool 2      [B, 128, 24, 16]
    features.6  Conv 128→256     ReLU
    features.8  Conv 256→256     ReLU  MaxPool 2      [B, 256, 12, 8]
    features.11 Conv 256→512     ReLU
    features.13 Conv 512→512     ReLU  MaxPool 2      [B, 512, 6, 4]
    flatten in (H, W, C) order (TensorFlow's NHWC, which the ported FC weights expect) → 12288
    embeddings.0 Linear 12288→4096 ReLU, embeddings.2 Linear 4096→4096 ReLU,
    embeddings.4 Linear 4096→128 ReLU (the port keeps the ReLU after the last layer; ``final_relu``)

:data:`VGGISH_PARAMETER_NAMES` lists the 16 state-dict keys (weights and biases of the 6 convs and
3 linears); a file with these names and shapes loads, anything else is refused with a message.

PCA postprocessing: the AudioSet release embeddings are PCA-whitened, clipped to [-2, 2] and
quantised to 8 bits. Here it is **off by default** (raw 128-d network output). Give
``pca_params`` (a registered name such as ``"vggish_pca"`` — the port's
``vggish_pca_params-970ea276.pth`` — or a path to a file with ``pca_eigen_vectors [128, 128]`` and
``pca_means [128]``) to apply ``clip(E (x - mu), -2, 2)``, and ``quantize=True`` to also map
that to the release's 0..255 integer levels (stored as floats).

Time alignment (docs/design.md §2): with ``hop = 0`` (default) every timeline step gets its own example,
anchored by ``context`` — ``forward`` (the default, as in the ABAW6 code: the 0.96 s starting at
the step), ``causal`` (ending at the step) or ``centered``. With ``hop > 0`` examples are taken
every ``hop`` seconds from time 0 (cheaper: one forward pass per hop instead of per step); each
example's time is its start (forward), end (causal) or centre (centered) and each step takes the
one example whose time falls in its ``hop``-second window (same context: forward ``[t, t + hop)``,
i.e. the first example starting at or after the step), through
:func:`~avaffect.features.temporal_align.align_to_timeline`; steps past the last example take the nearest
one. Audio before 0 or past the end is silence.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.audio import log_mel_spectrogram
from avaffect.features.backbones.base import (
    SegmentPlan,
    TorchExtractor,
    TorchParams,
    gather_windows,
    window_starts,
)
from avaffect.features.extractors.base import Positive, register_extractor
from avaffect.features.temporal_align import CONTEXTS, align_to_timeline
from avaffect.features.weights import public_file, resolve_weights
from avaffect.media import read_audio
from avaffect.statedict import load_state_dict_file

__all__ = [
    "VGGish",
    "VGGishExtractor",
    "VGGISH_PARAMETER_NAMES",
    "vggish_log_mel",
    "vggish_examples",
    "pca_postprocess",
]

_PORT = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
# the port's files, declared here beside the network (their 8 hex digits are not confirmed sha256 prefixes)
VGGISH = public_file("vggish", _PORT + "vggish-10086976.pth",
                     "Apache-2.0 (Google's VGGish model from tensorflow/models, converted by the torchvggish port)",
                     ("vggish",), "VGGish audio embedding network (AudioSet), PyTorch port: features.* conv stack + "
                     "embeddings.0/2/4", check_prefix=False)
public_file("vggish_pca", _PORT + "vggish_pca_params-970ea276.pth",
            "Apache-2.0 (Google's VGGish PCA parameters, converted by the torchvggish port)", ("vggish",),
            "VGGish PCA/whitening parameters (pca_eigen_vectors [128, 128], pca_means [128]) for the AudioSet release "
            "postprocessing; optional (vggish's pca_params)", check_prefix=False)

SAMPLE_RATE = 16000
FRAME_WINDOW = 0.025
FRAME_HOP = 0.010
N_MELS = 64
FMIN, FMAX = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
EXAMPLE_SECONDS = EXAMPLE_FRAMES * FRAME_HOP  # 0.96

VGGISH_PARAMETER_NAMES: tuple[str, ...] = tuple(
    f"{layer}.{kind}"
    for layer in (
        "features.0",
        "features.3",
        "features.6",
        "features.8",
        "features.11",
        "features.13",
        "embeddings.0",
        "embeddings.2",
        "embeddings.4",
    )
    for kind in ("weight", "bias")
)


def VGGish(final_relu: bool = True):  # noqa: N802 - a factory that reads like the class it returns
    """A randomly initialised VGGish ``nn.Module`` (parameter names: :data:`VGGISH_PARAMETER_NAMES`)."""
    from avaffect.features.backbones.nets import VGGishNet  # lazy: nets imports torch

    return VGGishNet(final_relu)


def vggish_log_mel(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VGGish log-mel frames ``[F, 64]`` of 16 kHz mono audio and their centre times ``[F]``."""
    wav = np.asarray(wav, dtype=np.float32)
    win = int(round(FRAME_WINDOW * SAMPLE_RATE))
    if len(wav) < win:
        wav = np.pad(wav, (0, win - len(wav)))
    return log_mel_spectrogram(wav, SAMPLE_RATE, FRAME_WINDOW, FRAME_HOP, N_MELS, FMIN, FMAX, LOG_OFFSET)


def vggish_examples(logmel: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``[N, 96, 64]`` examples starting at ``starts`` seconds (frame ``i`` starts at ``i * 10 ms``);
    frames outside the audio are silence (``log(0.01)``)."""
    first = np.round(np.asarray(starts, dtype=np.float64) / FRAME_HOP).astype(np.int64)
    return gather_windows(logmel, first, EXAMPLE_FRAMES, float(np.log(LOG_OFFSET)))


def pca_postprocess(emb: np.ndarray, eigen: np.ndarray, means: np.ndarray, quantize: bool = False) -> np.ndarray:
    """AudioSet postprocessing: ``clip((emb - means) @ eigen.T, -2, 2)``, optionally quantised to 0..255."""
    out = (np.asarray(emb, np.float64) - np.asarray(means, np.float64).reshape(1, -1)) @ np.asarray(
        eigen, np.float64
    ).T
    out = np.clip(out, -2.0, 2.0)
    if quantize:
        out = np.round((out + 2.0) * (255.0 / 4.0))
    return out.astype(np.float32)


@register_extractor
class VGGishExtractor(TorchExtractor):
    """VGGish embeddings (128-d) per timeline step; see the module docstring.

    Parameters: ``context`` (forward / causal / centered), ``hop`` (0 = one example per step; else
    seconds between examples), ``pca_params`` (``None`` = no postprocessing), ``quantize``,
    ``final_relu``, plus the common ``weights`` (default the registered ``"vggish"`` file),
    ``allow_random``, ``device``, ``batch_size``.
    """

    name = "vggish"
    modality = "audio"
    version = "1"
    default_weights = VGGISH.name

    class Params(TorchParams):
        batch_size: Positive = Field(64, description="inputs per forward pass (does not change the features)")
        context: Literal[CONTEXTS] = Field("forward", description="the window ends at the step "
                                           "(causal), starts at it (forward) or is centred on it")
        hop: float = Field(0.0, ge=0, description="seconds between examples (0: one example per step)")
        pca_params: str | None = Field(None, description="AudioSet PCA/quantisation parameters (a registered name or "
                                       "a file); None: the raw 128-d embedding")
        quantize: bool = Field(False, description="8-bit quantisation of AudioSet's postprocessing (needs pca_params)")
        final_relu: bool = Field(True, description="the ReLU after the last layer, as in the released model")

        @model_validator(mode="after")
        def _quantize_needs_pca(self) -> VGGishExtractor.Params:
            if self.quantize and self.pca_params is None:
                raise ValueError("quantize=True needs pca_params (the AudioSet postprocessing)")
            return self

    _transient = ("_net", "_device", "_pca")

    @property
    def dim(self) -> int:
        return 128

    def build_network(self):
        return VGGish(bool(self.params["final_relu"]))

    def describe_weights_format(self) -> str:
        return "the torchvggish naming: " + ", ".join(VGGISH_PARAMETER_NAMES[::2])

    def pca(self) -> tuple[np.ndarray, np.ndarray] | None:
        src = self.params["pca_params"]
        if src is None:
            return None
        cached = self.__dict__.get("_pca")
        if cached is None:
            path = resolve_weights(src)
            state: dict[str, Any] = load_state_dict_file(path)
            try:
                eigen = np.asarray(state["pca_eigen_vectors"], dtype=np.float64)
                means = np.asarray(state["pca_means"], dtype=np.float64).reshape(-1)
            except KeyError:
                raise AvaffectError(
                    f"{path}: not VGGish PCA parameters (need keys pca_eigen_vectors and pca_means, "
                    f"found {', '.join(sorted(state)[:6])})"
                ) from None
            if eigen.shape != (128, 128) or means.shape != (128,):
                raise AvaffectError(
                    f"{path}: PCA parameters of the wrong shape: pca_eigen_vectors {eigen.shape} (need 128 x 128), "
                    f"pca_means {means.shape} (need 128)"
                )
            cached = (eigen, means)
            self._pca = cached
        return cached

    def embed_examples(self, examples: np.ndarray) -> np.ndarray:
        """``[N, 96, 64]`` log-mel examples → ``[N, 128]`` float32 (postprocessed when configured)."""
        emb = self.run_batches(examples.astype(np.float32, copy=False)[:, None])
        pca = self.pca()
        if pca is not None:
            emb = pca_postprocess(emb, *pca, quantize=bool(self.params["quantize"]))
        return emb

    def _embed_at(self, logmel: np.ndarray, starts: np.ndarray) -> np.ndarray:
        chunk = int(self.params["batch_size"]) * 8  # bounded memory on long recordings
        out = np.empty((len(starts), self.dim), dtype=np.float32)
        for lo in range(0, len(starts), chunk):
            out[lo : lo + chunk] = self.embed_examples(vggish_examples(logmel, starts[lo : lo + chunk]))
        return out

    def segment_plan(self, wav: np.ndarray, timeline: np.ndarray) -> SegmentPlan:
        """One 96-frame example per timeline step (``hop`` 0), as a :class:`SegmentPlan` — what end-to-end
        training packs. The AudioSet PCA postprocessing is not part of it (it follows the network)."""
        if float(self.params["hop"]) != 0:
            raise ConfigError("vggish: end-to-end training needs hop: 0 (one example per timeline step)")
        logmel, _ = vggish_log_mel(wav)
        starts = window_starts(np.asarray(timeline, dtype=np.float64), EXAMPLE_SECONDS, self.params["context"])
        first = np.round(starts / FRAME_HOP).astype(np.int64)
        return SegmentPlan(logmel.astype(np.float32), first, EXAMPLE_FRAMES, float(np.log(LOG_OFFSET)),
                           time_major=True)

    def features_from_waveform(self, wav: np.ndarray, timeline: np.ndarray) -> np.ndarray:
        """``[len(timeline), 128]`` from 16 kHz mono audio starting at time 0."""
        timeline = np.asarray(timeline, dtype=np.float64)
        if len(timeline) == 0:
            return np.zeros((0, self.dim), np.float32)
        logmel, _ = vggish_log_mel(wav)
        context = self.params["context"]
        hop = float(self.params["hop"])
        if hop == 0:
            return self._embed_at(logmel, window_starts(timeline, EXAMPLE_SECONDS, context))
        duration = len(wav) / SAMPLE_RATE
        n = max(1, int(np.floor((duration - EXAMPLE_SECONDS) / hop + 1e-9)) + 1)
        starts = np.arange(n) * hop
        emb = self._embed_at(logmel, starts)
        offset = {"forward": 0.0, "causal": EXAMPLE_SECONDS, "centered": EXAMPLE_SECONDS / 2}[context]
        # window just under hop: exactly one grid example per step ([t, t + hop) for forward)
        window = hop * (1.0 - 1e-6)
        return align_to_timeline(emb, starts + offset, timeline, window, context).astype(np.float32)

    def extract(self, rec: Recording) -> np.ndarray:
        wav = read_audio(self.audio_source(rec), sample_rate=SAMPLE_RATE)
        return self.features_from_waveform(wav, rec.times)
