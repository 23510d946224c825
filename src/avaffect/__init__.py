"""avaffect: audio-visual dimensional emotion recognition (per-frame valence and arousal)."""

from avaffect._version import __version__

__all__ = ["__version__", "predict"]


def predict(checkpoint, video, device: str = "cpu", crops_dir=None):
    """Per-frame valence/arousal of ``video`` with a trained ``checkpoint``, as a pandas DataFrame
    (``frame,time,valence,arousal,face_detected``; the summary is in ``df.attrs["summary"]``). ``crops_dir``:
    the video's own face crops (``cropped_aligned/<video>/``) instead of detecting faces.
    See :mod:`avaffect.workflows.predict`."""
    from avaffect.workflows.predict import predict as _predict  # lazy: `import avaffect` stays light (no torch)

    return _predict(checkpoint, video, device, crops_dir)
