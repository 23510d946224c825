"""Public metrics API: ``avaffect.metrics.ccc(pred, target, mask=None)`` and friends.

The implementation lives in :mod:`avaffect.evaluation.metrics`; this module is the stable import path.
"""

from avaffect.evaluation.metrics import (  # noqa: F401
    METRICS,
    PROTOCOLS,
    ccc,
    mae,
    p_va,
    pcc,
    rmse,
    sagr,
    score_arrays,
    score_recordings,
)

__all__ = ["METRICS", "PROTOCOLS", "ccc", "mae", "p_va", "pcc", "rmse", "sagr", "score_arrays",
           "score_recordings"]
