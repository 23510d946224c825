"""Fusion models: blocks, presets and their registry."""

from avaffect.models.registry import create_model, get_entry, list_models, model_config, register_model

__all__ = ["create_model", "get_entry", "list_models", "model_config", "register_model"]
