"""Logging set-up shared by the CLI and the benchmark scripts."""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party_logs"]


def quiet_third_party_logs() -> None:
    """Keep Lightning's start-up chatter (device summary, tips) out of the user's terminal."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
