"""Fusion models: blocks, presets and their registry. Importing this package registers every preset."""

from avaffect.models import presets  # noqa: F401  (the preset modules register themselves)
from avaffect.models.registry import create_model, get_entry, list_models, model_config, register_model

__all__ = ["create_model", "get_entry", "list_models", "model_config", "register_model"]
