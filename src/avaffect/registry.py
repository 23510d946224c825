"""One registry shape for everything looked up by name: models, extractors, face detectors, weight files,
official variants (in the spirit of timm's ``register_model`` / ``list_models`` / ``create_model``).

Each subsystem owns one :class:`Registry` and exposes ``register_<kind>`` (a decorator), ``get_<kind>`` and
``list_<kind>s`` built on it. A registry never imports what registers into it: the package that holds the
entries imports its modules (so ``import avaffect.models`` registers every preset), and the registry stays
a leaf with no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from avaffect.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")
_MISSING: Any = object()


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` is used in messages: "model", "feature extractor", ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, *, replace_same: Callable[[T, T], bool] | None = None) -> T:
        """Register ``entry`` under ``name``. A second, different entry under the same name is an error;
        ``replace_same(old, new)`` may say that ``new`` is the same thing re-registered (a module reload)."""
        if not name:
            raise ValueError(f"a {self.kind} needs a name")
        old = self._entries.get(name)
        if old is not None and old is not entry and not (replace_same and replace_same(old, entry)):
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def wrap(entry: T) -> T:
            return self.add(name, entry)

        return wrap

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The entry ``name``; ``default`` when given and ``name`` is unknown, else a :class:`ConfigError`
        listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            if default is not _MISSING:
                return default
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names()) or '(none)'}"
                              ) from None

    def names(self, where: Callable[[T], bool] | None = None) -> list[str]:
        """Sorted names (of the entries for which ``where(entry)`` holds)."""
        return sorted(n for n, e in self._entries.items() if where is None or where(e))

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def values(self) -> list[T]:
        return [e for _, e in self.items()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, entry: T) -> None:
        """Replace (or add) ``name`` deliberately — a user's override of a shipped entry, or a test's."""
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
