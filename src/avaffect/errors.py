"""Exceptions with messages that name the file and say what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class AvaffectError(Exception):
    """Base class of all errors the toolkit raises on purpose (the CLI prints them without a traceback)."""


class DataError(AvaffectError):
    """A dataset file is missing, malformed, or inconsistent with another file."""

    def __init__(self, path: str | Path | None, problem: str, fix: str = "") -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path is not None else ""
        msg = f"{where}{problem}"
        if fix:
            msg += f" — {fix}"
        super().__init__(msg)


class MediaError(DataError):
    """A media file cannot be decoded or lacks a stream we need."""


class NoAudioStreamError(MediaError):
    """The file has no audio stream."""


class ConfigError(AvaffectError):
    """A configuration is invalid."""


def validation_message(error: Any) -> str:
    """A pydantic ``ValidationError`` as one line per problem: ``field: what is wrong (got value)``."""
    lines = []
    for err in error.errors():
        where = ".".join(map(str, err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        got = "" if err["type"] in ("value_error", "missing") or "input" not in err else f" (got {err['input']!r})"
        lines.append(f"{where}: {msg}{got}" if where else msg)
    return "; ".join(lines)
