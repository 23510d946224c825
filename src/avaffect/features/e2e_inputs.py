"""Packed per-recording inputs of end-to-end training: face crops and spectrogram frames, decoded once.

End-to-end training (:mod:`avaffect.training.e2e`) fine-tunes the backbones, so it cannot use cached features;
decoding JPEG crops and computing spectrograms at every epoch would dominate its time. This cache holds, per
recording and in the layout the backbones take:

* ``<root>/<crops key>/<name>.npy``: uint8 ``[T, S, S, 3]`` RGB face crops on the recording's timeline, black
  (all zero) where there is no face, and ``<name>.mask.npy``, the bool face mask ``[T]``;
* ``<root>/<audio key>/<name>.npy``: float32 ``[F, n_mels]``, the audio backbone's standardised log-mel frames,
  and ``<name>.first.npy``, int64 ``[T]``, the first frame of each step's segment
  (:class:`~avaffect.features.backbones.base.SegmentPlan`).

Both are what the frozen extractors compute internally (the same functions: ``face_crops``, ``segment_plan``),
so a fine-tuned backbone exported back into an extractor sees exactly what it was trained on. Every array is
written atomically and a ``<name>.json`` sidecar, written last, records the shapes, byte sizes and the source
media (:func:`~avaffect.features.store.source_signature`); an entry whose files or media changed is built
again. Arrays are memory-mapped when read, so memory does not grow with the number of recordings.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError, DataError
from avaffect.features.backbones.base import RUNTIME_PARAMS
from avaffect.features.extractors.base import Extractor, audio_source
from avaffect.features.faces.crops import face_crops
from avaffect.features.faces.detectors import detector_identity
from avaffect.features.faces.pipeline import face_pipeline
from avaffect.features.faces.source import resolve_face_source
from avaffect.features.store import same_sources, source_signature
from avaffect.files import atomic_write, safe_name, sha256_bytes, write_json
from avaffect.media import read_audio

__all__ = ["PackedInputs", "InputCache", "check_end_to_end_extractors"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# extractor parameters that do not change a backbone's inputs (only its weights or how it runs)
_NOT_INPUTS = (*RUNTIME_PARAMS, "weights", "allow_random", "pca_params", "quantize", "final_relu", "spatial",
               "missing_face", "normalize", "input_size", "resize")


def check_end_to_end_extractors(video: Extractor, audio: Extractor) -> None:
    """The backbones end-to-end training can fine-tune: a face ResNet on crops and a spectrogram network."""
    if not getattr(video, "fine_tunable", False):
        raise ConfigError(f"end-to-end training fine-tunes a face ResNet (resnet18_face, resnet50_face) or a clip "
                          f"network (r2plus1d18_clip); features.video is {video.name!r}")
    if not hasattr(audio, "segment_plan"):
        raise ConfigError(f"end-to-end training fine-tunes a spectrogram backbone (spec_resnet18, vggish); "
                          f"features.audio is {audio.name!r}")
    if video.params.get("spatial"):
        raise ConfigError(f"{video.name}: end-to-end training uses the pooled features (spatial: 0)")
    if audio.params.get("pca_params") is not None:
        raise ConfigError("vggish: end-to-end training fine-tunes the network itself; drop pca_params "
                          "(the AudioSet PCA postprocessing cannot be trained through)")


def _build_one(cache: InputCache, rec: Recording) -> str | None:
    """Pack one recording; the error message if it cannot be (module level: runs in worker processes)."""
    try:
        cache.build(rec)
    except AvaffectError as e:
        return str(e)
    return None


@dataclass
class PackedInputs:
    """One recording's end-to-end inputs (memory-mapped arrays, see the module docstring)."""

    name: str
    crops: np.ndarray  # uint8 [T, S, S, 3]
    face_mask: np.ndarray  # bool [T]
    frames: np.ndarray  # float32 [F, n_mels]
    first: np.ndarray  # int64 [T]
    segment_length: int
    pad: float
    time_major: bool

    def __len__(self) -> int:
        return len(self.face_mask)


def _key(prefix: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"params": params, "format": FORMAT_VERSION}, sort_keys=True, default=str)
    return f"{prefix}-{sha256_bytes(blob)[:8]}"


class InputCache:
    """The packed inputs of one (face ResNet, spectrogram backbone) pair under ``root``."""

    def __init__(self, root: str | Path, video: Extractor, audio: Extractor) -> None:
        check_end_to_end_extractors(video, audio)
        self.root = Path(root)
        self.video, self.audio = video, audio
        self.crop_size = int(video.params["crop_size"])
        self.detector = str(video.params.get("detector", "haar"))
        self.faces = face_pipeline(detector=self.detector, crop_size=self.crop_size)  # every frame detected
        self.crops_key = _key(f"crops{self.crop_size}", {"detector": detector_identity(self.detector),
                                                          "size": self.crop_size})
        self.audio_key = _key(audio.name, {k: v for k, v in audio.params.items() if k not in _NOT_INPUTS})

    # ------------------------------------------------------------------ layout
    def _paths(self, rec_name: str) -> dict[str, Path]:
        stem = safe_name(rec_name)
        c, a = self.root / self.crops_key, self.root / self.audio_key
        return {"crops": c / f"{stem}.npy", "mask": c / f"{stem}.mask.npy", "crops_json": c / f"{stem}.json",
                "frames": a / f"{stem}.npy", "first": a / f"{stem}.first.npy", "audio_json": a / f"{stem}.json"}

    # ------------------------------------------------------------------ state
    def _entry(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def _done(self, entry: dict | None, files: list[Path], rec: Recording) -> bool:
        if not entry or entry.get("format") != FORMAT_VERSION or entry.get("T") != rec.num_steps:
            return False
        for f in files:
            if not f.is_file() or f.stat().st_size != entry.get("bytes", {}).get(f.name):
                return False
        return same_sources(entry.get("source", {}), rec)

    def is_done(self, rec: Recording) -> bool:
        p = self._paths(rec.name)
        return (self._done(self._entry(p["crops_json"]), [p["crops"], p["mask"]], rec)
                and self._done(self._entry(p["audio_json"]), [p["frames"], p["first"]], rec))

    # ------------------------------------------------------------------ build
    def _write(self, arrays: dict[Path, np.ndarray], sidecar: Path, rec: Recording, extra: dict) -> None:
        for path, arr in arrays.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f, a=arr: np.save(f, a, allow_pickle=False))
        write_json(sidecar, {"recording": rec.name, "format": FORMAT_VERSION, "T": rec.num_steps,
                             "bytes": {p.name: p.stat().st_size for p in arrays}, "source": source_signature(rec),
                             **extra}, indent=1, sort_keys=True)

    def build(self, rec: Recording) -> None:
        """Decode ``rec``'s crops and compute its spectrogram frames; write them (atomic, sidecar last)."""
        p = self._paths(rec.name)
        if not self._done(self._entry(p["crops_json"]), [p["crops"], p["mask"]], rec):
            crops, mask = face_crops(rec, self.faces)
            crops = np.where(mask[:, None, None, None], crops, 0).astype(np.uint8)  # black frames: no face
            source = resolve_face_source(rec, self.video.params.get("source", "auto"), self.detector)
            self._write({p["crops"]: np.ascontiguousarray(crops), p["mask"]: mask.astype(bool)}, p["crops_json"],
                        rec, {"crop_size": self.crop_size, "face_source": source, "faces": int(mask.sum())})
        if not self._done(self._entry(p["audio_json"]), [p["frames"], p["first"]], rec):
            wav = read_audio(audio_source(rec), sample_rate=int(self.audio.params.get("sample_rate", 16000)))
            plan = self.audio.segment_plan(wav, rec.times)
            frames = np.ascontiguousarray(plan.frames, dtype=np.float32)
            if not np.isfinite(frames).all():
                raise DataError(audio_source(rec), "the spectrogram has non-finite values",
                                "check this recording's audio track")
            self._write({p["frames"]: frames, p["first"]: plan.first.astype(np.int64)}, p["audio_json"], rec,
                        {"segment_length": plan.length, "pad": plan.pad, "time_major": plan.time_major})

    def ensure(self, recordings: list[Recording], workers: int = 1) -> None:
        """Build every recording not yet packed (resumable: a killed run keeps what it finished), in ``workers``
        processes (``spawn``; decoding the JPEG crops of a large dataset is the slow part); one error listing
        every recording that failed."""
        todo = [r for r in recordings if not self.is_done(r)]
        failed = []
        if workers > 1 and len(todo) > 1:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
                futures = {pool.submit(_build_one, self, rec): rec for rec in todo}
                for future in as_completed(futures):
                    if (error := future.result()) is not None:
                        failed.append(f"  - {futures[future].name}: {error}")
        else:
            for i, rec in enumerate(todo):
                log.info("packing end-to-end inputs %d/%d: %s", i + 1, len(todo), rec.name)
                if (error := _build_one(self, rec)) is not None:
                    failed.append(f"  - {rec.name}: {error}")
        if failed:
            raise AvaffectError(f"packing the end-to-end inputs under {self.root} failed for {len(failed)} "
                                "recording(s):\n" + "\n".join(sorted(failed)))

    # ------------------------------------------------------------------ read
    def load(self, rec: Recording) -> PackedInputs:
        """``rec``'s packed inputs, memory-mapped; :meth:`ensure` must have run."""
        if not self.is_done(rec):
            raise DataError(self._paths(rec.name)["crops"], f"the end-to-end inputs of {rec.name} are missing or "
                            "stale", "run the training again: it packs them first")
        p = self._paths(rec.name)
        audio = self._entry(p["audio_json"]) or {}
        crops = np.load(p["crops"], mmap_mode="r", allow_pickle=False)
        mask = np.load(p["mask"], allow_pickle=False)
        frames = np.load(p["frames"], mmap_mode="r", allow_pickle=False)
        first = np.load(p["first"], allow_pickle=False)
        s = self.crop_size
        if crops.shape != (rec.num_steps, s, s, 3) or mask.shape != (rec.num_steps,) or first.shape != mask.shape:
            raise DataError(p["crops"], f"packed inputs of shape {crops.shape} / {first.shape} for "
                            f"{rec.num_steps} steps", f"delete {p['crops'].parent} and train again")
        return PackedInputs(rec.name, crops, mask & rec.face_mask, frames, first, int(audio["segment_length"]),
                            float(audio["pad"]), bool(audio["time_major"]))
