"""Recordings, datasets and windows: everything before features."""
