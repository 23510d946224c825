"""The one way the benchmark scripts publish their page: ``docs/benchmarks/<name>.md`` (and its ``.json``), written
atomically, then printed. Imported as ``from pages import publish`` (the scripts run as ``python benchmarks/x.py``,
so this folder is on ``sys.path``); it imports nothing heavy, so start-up benchmarks stay clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avaffect.files import atomic_write_text


def publish(out: Path, text: str, data: Any = None, indent: int = 1) -> int:
    """Write ``text`` to ``out`` (and ``data`` as JSON beside it, ``.json``), print it; the script's exit code 0."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    if data is not None:
        atomic_write_text(out.with_suffix(".json"), json.dumps(data, indent=indent) + "\n")
    print(text)
    return 0
