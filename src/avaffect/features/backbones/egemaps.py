"""openSMILE low-level descriptors (eGeMAPS / GeMAPS / ComParE) aligned to the timeline.

Optional extra: ``pip install 'avaffect[opensmile]'`` (the ``opensmile`` Python package, which
bundles the SMILExtract binary). The package is imported only when features are extracted.

Licence notice: openSMILE is distributed by audEERING under its own licence, free for private,
research and educational use only; commercial use needs a commercial licence from audEERING. That
is why this extractor is opt-in and not a dependency of avaffect. Check the licence before use.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError
from avaffect.features.extractors.base import Extractor, ExtractorParams, Positive, audio_source, register_extractor
from avaffect.features.temporal_align import CONTEXTS, align_to_timeline
from avaffect.media import read_audio

__all__ = ["EGeMAPS", "LLD_DIMS", "import_opensmile"]

# number of LLDs of each openSMILE feature set (feature_level=LowLevelDescriptors, opensmile 2.x)
LLD_DIMS = {"eGeMAPSv02": 25, "eGeMAPSv01b": 23, "GeMAPSv01b": 18, "ComParE_2016": 65}

INSTALL_HINT = (
    "the egemaps extractor needs the optional openSMILE package: pip install 'avaffect[opensmile]' "
    "(openSMILE's licence allows research/educational use only; commercial use needs a licence from audEERING)"
)


def import_opensmile():
    try:
        import opensmile
    except ImportError as exc:
        raise AvaffectError(INSTALL_HINT) from exc
    return opensmile


@register_extractor
class EGeMAPS(Extractor):
    """openSMILE LLDs (eGeMAPS v02 by default: 25 descriptors every 10 ms) per timeline step.

    Audio (``rec.audio_path``, else the video's track) is decoded to ``sample_rate`` mono and given
    to ``opensmile.Smile(feature_set, LowLevelDescriptors)``; each LLD frame's time is the centre of
    its analysis window (``(start + end) / 2``). Per step, the frames whose time lies in the
    ``window``-second window (``context``: causal / forward / centered) are averaged (with
    ``std=True`` their standard deviation is appended, doubling ``dim``); a step whose window holds
    no frame takes the nearest one. NaN/inf values from openSMILE become 0.

    ``feature_set``: ``eGeMAPSv02`` (25), ``eGeMAPSv01b`` (23), ``GeMAPSv01b`` (18) or
    ``ComParE_2016`` (65 LLDs). **Licence**: openSMILE is free for research and education only
    (see the module docstring); this extractor is opt-in for that reason.
    """

    name = "egemaps"
    modality = "audio"
    version = "1"

    class Params(ExtractorParams):
        feature_set: Literal[tuple(LLD_DIMS)] = Field("eGeMAPSv02", description="openSMILE feature set")
        sample_rate: Positive = Field(16000, description="audio decoded to this rate (Hz)")
        window: float = Field(0.04, ge=0, description="seconds of LLD frames averaged per timeline step")
        context: Literal[CONTEXTS] = Field("centered", description="the window ends at the step "
                                           "(causal), starts at it (forward) or is centred on it")
        std: bool = Field(False, description="also the LLDs' standard deviation over the window")

    _transient = ("_smile",)

    @property
    def n_lld(self) -> int:
        return LLD_DIMS[self.params["feature_set"]]

    @property
    def dim(self) -> int:
        return self.n_lld * (2 if self.params["std"] else 1)

    def smile(self):
        smile = self.__dict__.get("_smile")
        if smile is None:
            opensmile = import_opensmile()
            smile = opensmile.Smile(
                feature_set=getattr(opensmile.FeatureSet, self.params["feature_set"]),
                feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
            )
            self._smile = smile
        return smile

    def lld(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(LLDs [F, n_lld] float64, frame centre times [F] seconds)`` of mono audio at ``sample_rate``."""
        sr = int(self.params["sample_rate"])
        wav = np.asarray(wav, dtype=np.float32)
        min_len = int(0.1 * sr)  # openSMILE needs a few frames; pad very short audio with silence
        if len(wav) < min_len:
            wav = np.pad(wav, (0, min_len - len(wav)))
        df = self.smile().process_signal(wav, sr)
        values = np.nan_to_num(df.to_numpy(dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if values.shape[1] != self.n_lld:
            raise AvaffectError(
                f"egemaps: openSMILE gave {values.shape[1]} LLDs for {self.params['feature_set']}, expected "
                f"{self.n_lld} (an unsupported opensmile version?)"
            )
        idx = df.index
        start = np.asarray(idx.get_level_values("start").total_seconds(), dtype=np.float64)
        end = np.asarray(idx.get_level_values("end").total_seconds(), dtype=np.float64)
        return values, (start + end) / 2.0

    def features_from_waveform(self, wav: np.ndarray, timeline: np.ndarray) -> np.ndarray:
        """``[len(timeline), dim]`` float32 from mono audio at ``sample_rate`` starting at time 0."""
        p = self.params
        values, times = self.lld(wav)
        if len(values) == 0:
            raise AvaffectError("egemaps: openSMILE returned no frame (is the audio empty?)")
        if not p["std"]:
            return align_to_timeline(values, times, timeline, p["window"], p["context"]).astype(np.float32)
        stacked = np.concatenate([values, values**2], axis=1)
        both = align_to_timeline(stacked, times, timeline, p["window"], p["context"])
        n = self.n_lld
        mean = both[:, :n]
        std = np.sqrt(np.maximum(both[:, n:] - mean**2, 0.0))
        return np.concatenate([mean, std], axis=1).astype(np.float32)

    def extract(self, rec: Recording) -> np.ndarray:
        source = audio_source(rec)
        self.smile()  # fail early with the install hint, before decoding
        wav = read_audio(source, sample_rate=int(self.params["sample_rate"]))
        return self.features_from_waveform(wav, rec.times)
