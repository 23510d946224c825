"""avaffect: audio-visual dimensional emotion recognition (per-frame valence and arousal)."""

__version__ = "0.1.0"
