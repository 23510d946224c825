"""Named presets; importing this package registers them all."""

from avaffect.models.presets import (
    baselines,  # noqa: F401
    dlstm,  # noqa: F401
    fusion_zoo,  # noqa: F401
)
