"""avaffect: audio-visual dimensional emotion recognition (per-frame valence and arousal)."""

from avaffect._version import __version__

__all__ = ["__version__", "load_predictor", "predict"]


def predict(checkpoint, video, device: str = "cpu", crops_dir=None):
    """Per-frame valence/arousal of ``video`` with a trained ``checkpoint``, as a pandas DataFrame
    (``frame,time,valence,arousal,face_detected``; the summary is in ``df.attrs["summary"]``). ``crops_dir``:
    the video's own face crops (``cropped_aligned/<video>/``) instead of detecting faces.
    See :mod:`avaffect.workflows.predict`."""
    from avaffect.workflows.predict import predict as _predict  # lazy: `import avaffect` stays light (no torch)

    return _predict(checkpoint, video, device, crops_dir)


def load_predictor(checkpoint=None, *, face_model=None, device: str = "cpu", stream: bool = True,
                   detect_every=None):
    """A model loaded once, for many videos: ``predictor = load_predictor("run/model.safetensors")`` (or
    ``face_model="enet_b0_8_va_mtl"``), then ``run = predictor(video)`` gives ``run.frame`` (per frame) and
    ``run.summary``. See :mod:`avaffect.workflows.predict`."""
    from avaffect.workflows.predict import PredictorOptions  # lazy: `import avaffect` stays light (no torch)
    from avaffect.workflows.predict import load_predictor as _load  # lazy: `import avaffect` stays light (no torch)

    return _load(checkpoint, face_model=face_model,
                 options=PredictorOptions(device=device, stream=stream, detect_every=detect_every))
