"""Shared machinery of the neural (torch) extractors: devices, weights, batching, windows, face crops.

Parameters every :class:`TorchExtractor` has:

* ``weights``: ``None`` (the extractor's registered default, e.g. ``"resnet18_imagenet"``), a
  registered weight name (:mod:`avaffect.features.weights`) or the path of a local state dict.
* ``allow_random``: ``True`` builds a randomly initialised network when ``weights`` is ``None``
  (tests, speed measurements; the features are then meaningless). Default ``False``: weights are
  required and a missing file raises an error saying what to download and where to put it.
* ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
* ``batch_size``: inputs per forward pass.
* ``onnx``: the path of this extractor's network exported to ONNX with its input normalisation
  (:meth:`TorchExtractor.export_network`, what ``avaffect export --out DIR`` writes): the network then runs with
  ONNX Runtime on the CPU, torch is not imported, and ``weights`` is not read (the file carries them).

``device``, ``batch_size`` and ``onnx`` do not change the features (``onnx`` within the export's checked
tolerance), so they are left out of the feature-store id; ``weights`` enters it by file name only (moving the
cache keeps the id, another file changes it). The network is built lazily on the first ``extract`` and dropped
when the extractor is pickled.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.extractors.base import Extractor, ExtractorParams, Positive, audio_source
from avaffect.features.temporal_align import CONTEXTS
from avaffect.features.weights import WEIGHTS_PARAM, resolve_weights
from avaffect.files import atomic_path
from avaffect.onnxrt import open_session
from avaffect.statedict import load_state_dict_file
from avaffect.threads import auto_threads

__all__ = [
    "TorchExtractor",
    "TorchParams",
    "resolve_device",
    "batches",
    "window_starts",
    "gather_windows",
    "SegmentPlan",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RUNTIME_PARAMS = ("device", "batch_size", "onnx")
#: largest |ONNX - torch| accepted for an exported extractor network, relative to its features' scale: max |diff|
#: <= NETWORK_TOLERANCE * (1 + max |torch features|) on the check inputs (a ResNet's pooled features reach tens,
#: and float32 arithmetic in another order moves them by about 1e-6 of that)
NETWORK_TOLERANCE = 1e-4


class TorchParams(ExtractorParams):
    """The parameters every :class:`TorchExtractor` has (see the module docstring)."""

    weights: str | None = Field(None, description="None: the extractor's registered default; a registered weight "
                                "name (avaffect weights list) or the path of a local state dict")
    allow_random: bool = Field(False, description="build a randomly initialised network when no weights are given "
                               "(tests, speed measurements: the features are then meaningless)")
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    batch_size: Positive = Field(32, description="inputs per forward pass (does not change the features)")
    onnx: str | None = Field(None, description="the network (with its input normalisation) exported to ONNX: run "
                             "with ONNX Runtime instead of torch, weights not read (avaffect export --out)")


def resolve_device(device: str = "auto"):
    """``torch.device`` for ``"auto"`` (CUDA when available) or an explicit name."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def window_starts(times: np.ndarray, length: float, context: str) -> np.ndarray:
    """Start time of a ``length``-second window per time: ending at it (``causal``), starting at it
    (``forward``) or centred on it (``centered``)."""
    t = np.asarray(times, dtype=np.float64)
    if context == "causal":
        return t - length
    if context == "forward":
        return t.copy()
    if context == "centered":
        return t - length / 2.0
    raise ConfigError(f"unknown context {context!r}; use one of {', '.join(CONTEXTS)}")


def gather_windows(frames: np.ndarray, first: np.ndarray, length: int, pad_value: float) -> np.ndarray:
    """``[N, length, d]`` windows of ``frames [F, d]`` starting at frame ``first[i]`` (any integer,
    negative or past the end: the missing frames are ``pad_value``)."""
    first = np.asarray(first, dtype=np.int64)
    f, d = frames.shape
    lo = int(min(0, first.min(initial=0)))
    hi = int(max(f, first.max(initial=0) + length))
    padded = np.full((hi - lo, d), pad_value, dtype=frames.dtype)
    padded[-lo : -lo + f] = frames
    idx = (first - lo)[:, None] + np.arange(length)[None, :]
    return padded[idx]


@dataclass(frozen=True)
class SegmentPlan:
    """What a spectrogram backbone sees at each timeline step, without building the segments: the recording's
    standardised log-mel frames ``[F, n_mels]`` and, per step, the first frame of its ``length``-frame
    segment (any integer: frames before 0 or past the end are ``pad``). ``time_major``: the network takes
    ``[N, 1, length, n_mels]`` (VGGish), else ``[N, 1, n_mels, length]`` (the RJA spectrogram ResNet).

    One plan serves both the frozen extractor (:meth:`segments` in chunks) and end-to-end training, which
    packs ``frames`` and ``first`` once per recording and gathers each window's segments from them."""

    frames: np.ndarray
    first: np.ndarray
    length: int
    pad: float
    time_major: bool

    def segments(self, steps: slice | np.ndarray = slice(None)) -> np.ndarray:
        """float32 network input ``[N, 1, ...]`` of the selected steps."""
        return network_segments(self.frames, self.first[steps], self.length, self.pad, self.time_major)


def network_segments(frames: np.ndarray, first: np.ndarray, length: int, pad: float,
                     time_major: bool) -> np.ndarray:
    """The segments ``[N, 1, length, M]`` (``time_major``) or ``[N, 1, M, length]`` starting at ``first``."""
    seg = gather_windows(np.asarray(frames, dtype=np.float32), first, length, pad)  # [N, length, M]
    if not time_major:
        seg = seg.transpose(0, 2, 1)
    return np.ascontiguousarray(seg)[:, None]


class TorchExtractor(Extractor):
    """Base of extractors that run a torch network (see the module docstring for the common parameters).

    Subclasses set ``default_weights`` (a registered name), implement :meth:`build_network`
    (random init, public parameter names), may override :meth:`adapt_state_dict` (e.g. drop a
    classifier, adapt a first conv) and call :meth:`network` to get the ready model in eval mode on
    :attr:`device`.
    """

    default_weights: ClassVar[str | None] = None
    # end-to-end training can fine-tune this network on crops or clips (it has layer groups in models/e2e.py)
    fine_tunable: ClassVar[bool] = False
    _transient = ("_net", "_device", "_session", "_capture")
    Params = TorchParams

    # ------------------------------------------------------------------ parameters and identity
    def hash_params(self) -> dict[str, Any]:
        params = {k: v for k, v in super().hash_params().items() if k not in RUNTIME_PARAMS}
        for key in ("weights", "pca_params"):
            if isinstance(params.get(key), str):
                params[key] = Path(params[key]).name
        return params

    # ------------------------------------------------------------------ network
    @property
    def device(self):
        dev = self.__dict__.get("_device")
        if dev is None:
            dev = resolve_device(self.params["device"])
            self._device = dev
        return dev

    def build_network(self):
        """The randomly initialised network with the public parameter names."""
        raise NotImplementedError

    def adapt_state_dict(self, state: dict[str, Any], net) -> dict[str, Any]:
        """Map a loaded state dict onto ``net`` (default: as is)."""
        return state

    @property
    def weights_name(self) -> str | None:
        """The registered weight file this configuration loads by default (None: it has none)."""
        return self.default_weights

    def weights_path(self) -> Path | None:
        """The weight file to load, or ``None`` for random weights (``allow_random`` and no ``weights``); with
        ``onnx``, that file (it carries the weights), which must exist."""
        if self.params.get("onnx"):
            path = Path(self.params["onnx"])
            if not path.is_file():
                raise AvaffectError(f"{path}: the ONNX export of the {self.name} network is not there; export the "
                                    "model again (avaffect export CKPT --out DIR) or give the extractor's weights "
                                    "instead")
            return path
        w = self.params["weights"]
        if w is None:
            if self.params["allow_random"]:
                return None
            if self.weights_name is None:
                raise AvaffectError(f"{self.name}: no default weights; give a weight file ({WEIGHTS_PARAM})")
            w = self.weights_name
        return resolve_weights(w)

    def load_weights(self, net, path: Path) -> None:
        import torch

        state = self.adapt_state_dict(load_state_dict_file(path), net)
        own = net.state_dict()
        for key in set(own) - set(state):
            if key.endswith("num_batches_tracked"):  # older checkpoints (e.g. torchvision's V1 files) lack it
                state[key] = torch.zeros((), dtype=torch.long)
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise AvaffectError(
                f"{path}: parameter names do not match the {self.name} network: "
                f"{len(missing)} missing (e.g. {', '.join(missing[:4]) or '-'}), "
                f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4]) or '-'}). "
                f"Expected names like {', '.join(list(own)[:3])} ({self.describe_weights_format()})."
            )
        bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
        if bad:
            k = bad[0]
            raise AvaffectError(
                f"{path}: {len(bad)} parameter(s) have the wrong shape for {self.name}, e.g. {k}: file "
                f"{tuple(state[k].shape)} vs network {tuple(own[k].shape)} (a different architecture or size?)"
            )
        # assign=True: the network may have been built on the meta device (no wasted random init)
        net.load_state_dict({k: torch.as_tensor(state[k]).to(own[k].dtype) for k in own}, strict=True, assign=True)
        if any(t.is_meta for t in (*net.parameters(), *net.buffers())):
            raise AvaffectError(f"{self.name}: some tensors were not initialised by {path}")

    def describe_weights_format(self) -> str:
        return "a state dict in the public naming"

    def fresh_network(self):
        """A new copy of the network with this configuration's weights (CPU, train mode, trainable): the file's,
        or with ``allow_random`` and no file, random weights from seed 0 — the same every time, and the same as
        the frozen extractor's, so end-to-end training starts from exactly the features cached ones had."""
        import torch

        path = self.weights_path()
        if path is None:
            log.warning("%s: random weights (allow_random=True): the features are meaningless", self.name)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # random weights are at least reproducible
                return self.build_network()
        with torch.device("meta"):  # shapes only: the weights come from the file
            net = self.build_network()
        self.load_weights(net, path)
        return net

    def network(self):
        net = self.__dict__.get("_net")
        if net is None:
            device = self.device  # an unavailable device fails before any work
            net = self.fresh_network().eval().to(device)
            for param in net.parameters():
                param.requires_grad_(False)
            self._net = net
        return net

    def input_step(self) -> Callable[[Any], Any] | None:
        """The step that runs on the device before the network (a torch function of a batch tensor: the pixel
        normalisation of the face and clip networks), or ``None``; built only where torch runs, and exported with
        the network (:meth:`export_network`)."""
        return None

    def run_batches(self, inputs: np.ndarray) -> np.ndarray:
        """Forward ``inputs [N, ...]`` in batches of ``batch_size``, :meth:`input_step` first. Returns float32
        ``[N, out]``. With ``onnx`` the exported network (its input step included) runs instead, without torch."""
        capture = self.__dict__.get("_capture")
        if capture is not None and not capture:  # export_network asks for one real input of the network
            capture.append(np.ascontiguousarray(inputs[:2]))
        if self.params.get("onnx"):
            return self._batched(inputs, self._onnx_forward())
        import torch  # lazy: extractors with an ONNX export run without it

        net = self.network()
        step = self.input_step()

        def forward(batch: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(batch).to(self.device)
            return net(step(x) if step is not None else x).float().cpu().numpy()

        with torch.inference_mode():
            return self._batched(inputs, forward)

    def _batched(self, inputs: np.ndarray, forward: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``forward`` on ``inputs`` in batches of ``batch_size``: float32 ``[N, out]``."""
        outs = []
        for sl in batches(len(inputs), int(self.params["batch_size"])):
            y = forward(np.ascontiguousarray(inputs[sl]))
            outs.append(y.reshape(len(y), -1).astype(np.float32, copy=False))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    def _onnx_forward(self) -> Callable[[np.ndarray], np.ndarray]:
        """One batch through the exported network (ONNX Runtime, the session opened once)."""
        session = self.__dict__.get("_session")
        if session is None:
            # half the usable cores (avaffect.threads: 1 on 2 cores), the rest for decoding and the face pipeline
            session = self._session = open_session(self.weights_path(), auto_threads(), what=f"{self.name} network")
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})[0]

    # ------------------------------------------------------------------ export
    def network_example(self) -> np.ndarray:
        """One real input batch of the network (2 items): the extractor run on a random face crop pair (video) or
        on a second of noise (audio), its first :meth:`run_batches` input kept."""
        self._capture: list[np.ndarray] = []
        rng = np.random.default_rng(0)
        try:
            if self.modality == "video":
                pipeline = self.face_pipeline()
                size = pipeline.crop_size if pipeline is not None else 112
                self.features_from_crops(rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8), np.ones(2, bool))
            else:
                rate = int(self.params.get("sample_rate", 16000))
                self.features_from_waveform(rng.normal(0, 0.1, rate).astype(np.float32), np.array([0.2, 0.4]))
            if not self._capture:
                raise AvaffectError(f"{self.name}: its network never ran on the example input")
            return self._capture[0]
        finally:
            del self._capture

    def export_network(self, path: str | Path) -> float:
        """Write the network, after its :meth:`input_step`, to ``path`` as ONNX (batch size free), checked with ONNX
        Runtime against torch on :meth:`network_example`: refused above :data:`NETWORK_TOLERANCE` (relative).
        Returns the largest |ONNX - torch|."""
        import torch  # lazy: only an export runs the exporter

        example = self.network_example()
        net, step = self.network().cpu(), self.input_step()

        class Prepared(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x):
                y = self.net(step(x) if step is not None else x)
                return y.reshape(y.shape[0], -1).float()

        module = Prepared().eval()
        with torch.inference_mode():
            want = module(torch.from_numpy(example)).numpy()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes
            try:
                torch.onnx.export(module, (torch.from_numpy(example),), str(tmp), input_names=["inputs"],
                                  output_names=["features"], dynamic_axes={"inputs": {0: "batch"},
                                                                           "features": {0: "batch"}},
                                  opset_version=17, dynamo=False)
            except Exception as e:  # the exporter raises many types for an unsupported operation
                raise AvaffectError(f"{self.name}: its network cannot be exported to ONNX ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0][:200]})") from None
            session = open_session(tmp, what=f"{self.name} network")
            got = session.run(None, {session.get_inputs()[0].name: example})[0].reshape(len(example), -1)
        diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
        if not diff <= NETWORK_TOLERANCE * (1.0 + float(np.max(np.abs(want)))):
            path.unlink(missing_ok=True)
            raise AvaffectError(f"{self.name}: the ONNX export of its network differs from torch by {diff:.3g}: "
                                "not exported")
        return diff

    # ------------------------------------------------------------------ audio helper
    def audio_source(self, rec: Recording) -> Path:
        return audio_source(rec)

