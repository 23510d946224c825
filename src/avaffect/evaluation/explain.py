"""What drove each value: every modality's contribution by occlusion (``predict --explain``).

The model is run three times on every window (by one runner, so the windows and their stitching are the
prediction's own): as it is, with the **voice** replaced by the input the model already knows for a missing voice
(the audio features' training mean, what a video without an audio track gets), and with the **face** replaced by
its missing-face input (the face mask off: the normalised visual features zeroed, the training rule for a frame
without a face). A modality's contribution at a frame is the value minus the value without it:

    contribution_voice(t) = y(t) - y(t | voice = training mean)
    contribution_face(t)  = y(t) - y(t | no face anywhere)

Read it as "how far this modality moved the value from what the model says without it". It is not a share: the
two need not add up to the value (the fusion is not additive, and each occlusion keeps the other modality). Where
the voice is already missing (no audio track) its contribution is 0; where no face was found on any frame of a
window, the face's is 0 there. Occlusion is the whole recording's: a frame's value also depends on its window's
other frames, so a frame without a face may still show a face contribution from the frames around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from avaffect.evaluation.streaming import WindowRunner

__all__ = ["MODALITIES", "EXPLAIN_NOTE", "explain_note", "EXPLAIN_CHART", "GATE_PREFIX", "occlusion_runner",
           "split_occlusion", "contribution_column", "contribution_columns", "gate_column", "last_gate_columns"]

MODALITIES = ("voice", "face")
EXPLAIN_NOTE = ("<target>_voice / <target>_face: how far the voice / the face moved the value, by occlusion (the "
                "value minus the value with that modality replaced by the input the model knows for it missing: the "
                "training mean of the audio features, the missing-face input); not shares, they need not add up. "
                "voicing: the voice's periodicity (0-1) from the audio features, where the audio extractor has it. "
                "gate_<modality>_<j> (a gated model run with torch): the weight of candidate j of that gate at the "
                "frame, averaged over the windows covering it; DCA's 2-way gate: 0 the unattended input, 1 the "
                "attended features; GRJCA's (M+1)-way gate: j = iterate j (0 the unattended input); HGRJCA: "
                "<modality>_iter<t>_0 / _1 the previous / the attended iterate at iteration t, <modality>_stage_<j> "
                "iteration j+1's output in the stage gate")


def explain_note(modality_dropout: dict | None) -> str:
    """:data:`EXPLAIN_NOTE` and what the occlusion means for this model: trained with ``training.modality_dropout``
    (a checkpoint's ``extra``), it learned that the occluded inputs carry no information, so a contribution reads
    "what this modality added"; without it, "how far the value is from what an average voice / no face gives",
    which silence or noise can move as much as speech (docs/benchmarks/explain.md)."""
    p = modality_dropout or {}
    voice, face = float(p.get("voice", 0.0)), float(p.get("face", 0.0))
    if voice > 0 and face > 0:
        how = (f"this model was trained with modality dropout (voice {voice:g}, face {face:g}): it learned that the "
               "occluded inputs carry no information, so each contribution reads as what that modality added")
    elif voice > 0 or face > 0:
        taught, other = ("voice", "face") if voice > 0 else ("face", "voice")
        how = (f"this model was trained with modality dropout of the {taught} only ({max(voice, face):g}): the "
               f"{taught}'s contribution reads as what it added; the {other}'s as the distance from the model's "
               f"value without it, an input it never learned to mean 'no {other}'")
    else:
        how = ("this model was trained without modality dropout: a contribution is the distance from the value "
               "the model gives an average voice / no face, inputs it never learned to mean 'no information', so "
               "silence or noise can move it as much as speech (train with training.modality_dropout for the "
               "reading 'what this modality added')")
    return f"{EXPLAIN_NOTE}. Occlusion: {how}."


#: the sentence under a chart that draws the contributions (the page: dotted voice, dashed face)
EXPLAIN_CHART = ("Dotted: how far the voice moved each value; dashed: how far the face did. Each is the value minus "
                 "the value with that modality replaced by the input the model knows for it missing (occlusion): "
                 "not shares, they need not add up.")


def occlusion_runner(run: WindowRunner, audio_mean: np.ndarray, k: int | None = None,
                     plain: WindowRunner | None = None) -> WindowRunner:
    """A runner giving ``[B, L, 3K + G]``: the predictions, then the voice's and the face's contributions (module
    docstring), then any ``G`` more columns ``run`` gives after its ``K`` predictions on the unoccluded windows (a
    gated model's gate weights, :func:`avaffect.evaluation.inference.gated_runner`); ``plain``: the runner of the
    occluded windows (default ``run``; it must give the ``K`` predictions only when ``run`` gives more)."""
    mean = np.asarray(audio_mean, np.float32).reshape(1, 1, -1)
    plain = plain or run

    def explained(audio: np.ndarray, video: np.ndarray, mask: np.ndarray, face: np.ndarray) -> np.ndarray:
        full = np.asarray(run(audio, video, mask, face), np.float32)
        n = full.shape[-1] if k is None else k
        y, extra = full[..., :n], full[..., n:]
        no_voice = np.asarray(plain(np.broadcast_to(mean, audio.shape).astype(np.float32), video, mask, face),
                              np.float32)[..., :n]
        no_face = np.asarray(plain(audio, video, mask, np.zeros_like(face)), np.float32)[..., :n]
        return np.concatenate([y, y - no_voice, y - no_face, extra], axis=-1)

    return explained


def split_occlusion(stitched: np.ndarray, k: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """``(values [T, K], {modality: contributions [T, K]}, more columns [T, G])`` of an :func:`occlusion_runner`'s
    stitched output."""
    stitched = np.asarray(stitched)
    parts = {m: stitched[:, k * (i + 1):k * (i + 2)] for i, m in enumerate(MODALITIES)}
    return stitched[:, :k], parts, stitched[:, k * (len(MODALITIES) + 1):]


def contribution_column(target: str, modality: str) -> str:
    """The CSV column of a modality's contribution to a target: ``<target>_<modality>``."""
    return f"{target}_{modality}"


def contribution_columns(contributions: dict[str, np.ndarray], targets: Sequence[str]) -> dict[str, np.ndarray]:
    """The CSV columns :func:`contribution_column` of each modality and target."""
    return {contribution_column(t, m): np.asarray(c[:, k], np.float32) for m, c in contributions.items()
            for k, t in enumerate(targets)}


GATE_PREFIX = "gate_"


def gate_column(gate: str, candidate: int) -> str:
    """The CSV column of one candidate of a gate: ``gate_<gate>_<j>`` (``/`` in a gate's name becomes ``_``)."""
    return f"{GATE_PREFIX}{gate.replace('/', '_')}_{candidate}"


def last_gate_columns(columns: Iterable[str]) -> dict[str, str]:
    """``{gate: column}`` of each gate's last candidate (the attended features, the last iterate) among
    ``columns`` in their order (each gate's candidates are written in increasing order)."""
    last: dict[str, str] = {}
    for c in columns:
        if c.startswith(GATE_PREFIX):
            last[c.rsplit("_", 1)[0][len(GATE_PREFIX):]] = c
    return last
