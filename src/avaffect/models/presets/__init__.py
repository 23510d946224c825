"""Named presets; importing this package registers them all."""

from avaffect.models.presets import baselines  # noqa: F401
