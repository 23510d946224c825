"""avaffect: audio-visual dimensional emotion recognition (per-frame valence and arousal)."""

__version__ = "0.1.0"


def predict(checkpoint, video, device: str = "cpu"):
    """Per-frame valence/arousal of ``video`` with a trained ``checkpoint``, as a pandas DataFrame
    (``frame,time,valence,arousal,face_detected``; the summary is in ``df.attrs["summary"]``).
    See :mod:`avaffect.prediction`."""
    from avaffect.prediction import predict as _predict

    return _predict(checkpoint, video, device)
