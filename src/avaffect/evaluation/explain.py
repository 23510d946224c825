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

from collections.abc import Sequence

import numpy as np

from avaffect.evaluation.streaming import WindowRunner

__all__ = ["MODALITIES", "EXPLAIN_NOTE", "EXPLAIN_CHART", "occlusion_runner", "split_occlusion", "contribution_columns"]

MODALITIES = ("voice", "face")
EXPLAIN_NOTE = ("<target>_voice / <target>_face: how far the voice / the face moved the value, by occlusion (the "
                "value minus the value with that modality replaced by the input the model knows for it missing: the "
                "training mean of the audio features, the missing-face input); not shares, they need not add up. "
                "voicing: the voice's periodicity (0-1) from the audio features, where the audio extractor has it")

#: the sentence under a chart that draws the contributions (the page: dotted voice, dashed face)
EXPLAIN_CHART = ("Dotted: how far the voice moved each value; dashed: how far the face did. Each is the value minus "
                 "the value with that modality replaced by the input the model knows for it missing (occlusion): "
                 "not shares, they need not add up.")


def occlusion_runner(run: WindowRunner, audio_mean: np.ndarray) -> WindowRunner:
    """A runner giving ``[B, L, 3K]``: the predictions, then the voice's and the face's contributions (module
    docstring)."""
    mean = np.asarray(audio_mean, np.float32).reshape(1, 1, -1)

    def explained(audio: np.ndarray, video: np.ndarray, mask: np.ndarray, face: np.ndarray) -> np.ndarray:
        y = np.asarray(run(audio, video, mask, face), np.float32)
        no_voice = np.asarray(run(np.broadcast_to(mean, audio.shape).astype(np.float32), video, mask, face),
                              np.float32)
        no_face = np.asarray(run(audio, video, mask, np.zeros_like(face)), np.float32)
        return np.concatenate([y, y - no_voice, y - no_face], axis=-1)

    return explained


def split_occlusion(stitched: np.ndarray, k: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(values [T, K], {modality: contributions [T, K]})`` of an :func:`occlusion_runner`'s stitched output."""
    stitched = np.asarray(stitched)
    return stitched[:, :k], {m: stitched[:, k * (i + 1):k * (i + 2)] for i, m in enumerate(MODALITIES)}


def contribution_columns(contributions: dict[str, np.ndarray], targets: Sequence[str]) -> dict[str, np.ndarray]:
    """The CSV columns ``<target>_<modality>``."""
    return {f"{t}_{m}": np.asarray(c[:, k], np.float32) for m, c in contributions.items()
            for k, t in enumerate(targets)}
