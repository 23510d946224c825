"""Writing files so that a crash never leaves a half-written one under its final name.

Every file the toolkit writes goes through :func:`atomic_path` (or the helpers built on it): the content is
written to a unique temporary file in the destination's own folder, then renamed over the destination with
``os.replace`` (atomic on POSIX and Windows within one file system). On any failure — an exception, a full
disk — the temporary file is removed and the destination is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import numpy as np

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "output_path", "safe_name",
           "sha256_file", "sweep_orphans", "to_jsonable", "write_json"]

_SAFE = "-_.,+=@()[]~ "


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def safe_name(name: str) -> str:
    """A file name for a recording (or any user-given) name: percent-encoded, so ``/``, ``..``, an absolute
    path or a drive letter can never leave the folder it is written in; a leading ``.`` is encoded too (no
    hidden files, no ``.`` / ``..``). Distinct names give distinct file names; ``urllib.parse.unquote``
    gives the name back."""
    if not name:
        raise ValueError("empty name")
    stem = quote(name, safe=_SAFE)
    return "%2E" + stem[1:] if stem.startswith(".") else stem


def output_path(root: str | Path, name: str, suffix: str = "") -> Path:
    """``root / (safe_name(name) + suffix)``, checked to lie inside ``root`` — the one rule for every file named
    after a recording or an input (prediction CSVs, plots, predict outputs)."""
    root = Path(root)
    path = root / (safe_name(name) + suffix)
    if path.resolve().parent != root.resolve():
        raise ValueError(f"{name!r} does not make a file name inside {root}")  # cannot happen: safe_name encodes
    return path


def _owner() -> str:
    """``host~pid~`` of this process, in every temporary name (:func:`sweep_orphans` tells a dead writer's)."""
    return f"{socket.gethostname().replace('~', '-')}~{os.getpid()}~"


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``, otherwise it is removed.

    The temporary name is hidden, names its writer (``.<name>.<host>~<pid>~<random>``) and ends in ``.tmp`` (no
    reader's ``*.npy`` / ``*.json`` glob matches it); ``suffix`` is appended after that for writers that choose a
    format by extension (FFmpeg: ``".mp4"``). A process killed while writing leaves its temporary file behind:
    :func:`sweep_orphans` removes those of dead processes of this machine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_owner()}",
                                    suffix=".tmp" + (suffix or ""))
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: a shared store or run folder must stay readable
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_orphans(folder: str | Path) -> list[Path]:
    """Remove the temporary files in ``folder`` that :func:`atomic_path` left behind in a process of this machine
    that is gone (killed while writing: a worker's out-of-memory kill, a preempted job). Files of live processes,
    of other machines (a shared filesystem) and of any other name are left alone. Returns what was removed."""
    folder = Path(folder)
    mine = re.compile(r"^\..+\." + re.escape(_owner().split("~")[0]) + r"~(?P<pid>\d+)~[^~]*\.tmp(\.\w+)?$")
    removed = []
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
    except OSError:
        return removed
    for p in entries:
        m = mine.match(p.name)
        if m is None or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(binary file)`` on a temporary file and move it to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_bytes(data: bytes | str) -> str:
    """Hex sha256 of bytes (a ``str`` as UTF-8): the identity of a configuration, a listing, a wheel member."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (read in ``chunk``-byte blocks): the one checksum of stored features, timelines,
    weight files and checkpoints."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def to_jsonable(o: Any) -> Any:
    """``json.dumps`` default: NumPy scalars and arrays, paths."""
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_json(path: str | Path, obj: Any, indent: int = 2, sort_keys: bool = False) -> Path:
    """``obj`` as JSON (NumPy values and paths allowed), written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=to_jsonable) + "\n")
