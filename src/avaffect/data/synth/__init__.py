"""The built-in synthetic dataset (docs/design.md §6, "Synthetic set").

:func:`write_synthetic_dataset` writes a small dataset in the Aff-Wild2 / ABAW VA layout (the facts in
:mod:`avaffect.data.layout`) whose face and voice carry latent per-frame valence/arousal trajectories,
each modality with its own emphasis:

* the **face** (:mod:`.face`: an OpenCV cartoon on a ``crop_size`` crop, pasted into the raw video frame
  at a slowly moving position over a static background) shows valence in the mouth curvature (strong by
  default) and arousal in eye/brow opening and head jitter (weak by default);
* the **voice** (:mod:`.voice`: mono, speech-like voiced syllables) shows arousal in pitch, loudness and
  syllable rate (strong by default) and valence in its spectral colour (tilt and a formant-like
  emphasis; weak by default).

The trajectory that drives one modality and dimension (:mod:`.plan`) is ``s * latent + (1 - s) * nuisance``
with ``s`` the configured strength and ``nuisance`` an independent smooth trajectory, so a weak strength
really carries little information. On top of that, **weak complementarity** segments (1-4 s) are
placed independently per modality: ``missing`` (no face drawn and no jpg / silence), ``noisy``
(heavy pixel noise / heavy waveform noise) and ``conflicting`` (the modality follows an independent
trajectory). The annotations always follow the latent trajectory, with runs of ``-5`` (not
annotated) covering about ``gap_rate`` of the frames.

Layout written under ``root`` (:mod:`.writer`)::

    annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<name>.txt
    cropped_aligned/<name>/00001.jpg ...      one jpg per frame with a face (5-digit, 1-based)
    videos/<name>.mp4                         H.264 (or MPEG-4 part 2) video + mono AAC audio
    latent/<name>.npz                         ground truth (see :data:`LATENT_KEYS`)
    synth_config.json

Test recordings (``n_test``) get crops, video and latent but no annotation file, as the Aff-Wild2
test set. Everything is deterministic from ``seed``: recording ``i`` draws only from
``SeedSequence([seed, i, ...])``, so recordings can be written independently and in any order. Each
recording is written under ``root/.synth_tmp`` and moved into place when complete (the latent npz
last: it marks the recording as finished), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from avaffect.data.synth.plan import (
    AAC_FRAME,
    LATENT_KEYS,
    WEAK_CODES,
    WEAK_CONFLICTING,
    WEAK_MISSING,
    WEAK_NOISY,
    WEAK_NONE,
    SynthConfig,
    recording_name,
    recording_plan,
)

# The writer (PyAV, OpenCV) loads on first use of one of its names (PEP 562), so that reading SynthConfig — as
# every `avaffect --help` does for the synthetic-set flags — does not import the media libraries.
_WRITER_NAMES = ("CONFIG_FILE", "TMP_DIR", "VIDEO_CODECS", "video_codec", "write_synthetic_dataset")


def __getattr__(name: str):
    if name in _WRITER_NAMES:
        from avaffect.data.synth import writer  # lazy: PyAV and OpenCV, on first use only

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AAC_FRAME",
    "CONFIG_FILE",
    "LATENT_KEYS",
    "TMP_DIR",
    "VIDEO_CODECS",
    "WEAK_CODES",
    "WEAK_CONFLICTING",
    "WEAK_MISSING",
    "WEAK_NOISY",
    "WEAK_NONE",
    "SynthConfig",
    "recording_name",
    "recording_plan",
    "video_codec",
    "write_synthetic_dataset",
]
