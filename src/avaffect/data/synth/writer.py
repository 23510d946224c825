"""Writing the synthetic dataset: media encoding, one recording at a time, and the dataset's config.

Each recording is rendered under ``root/.synth_tmp`` and moved into place when complete, the latent
npz last (it marks the recording as finished), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from avaffect.data.layout import AFFWILD2_ANNOTATION_DIR, AFFWILD2_SPLIT_DIRS, AFFWILD2_VIDEO_DIRS, CROPS_DIR, crop_name
from avaffect.data.synth.face import _background, _Face
from avaffect.data.synth.plan import AAC_FRAME, WEAK_NOISY, SynthConfig, _Plan, _smooth_noise, recording_plan
from avaffect.data.synth.voice import _voice
from avaffect.errors import DataError
from avaffect.files import atomic_write_text
from avaffect.progress import progress_bar

log = logging.getLogger(__name__)

CONFIG_FILE = "synth_config.json"
TMP_DIR = ".synth_tmp"
VIDEO_DIR = AFFWILD2_VIDEO_DIRS[0]  # the first of the folders the Aff-Wild2 reader searches for videos
LATENT_DIR = "latent"

# video encoders tried in order: (codec, options, bit rate or None)
VIDEO_CODECS: tuple[tuple[str, dict[str, str], int | None], ...] = (
    ("libx264", {"preset": "veryfast", "crf": "20"}, None),
    ("mpeg4", {}, 1_500_000),
)

# ------------------------------------------------------------------------------------------------ media


def _open_video_stream(container: av.container.OutputContainer, fps: float, width: int,
                       height: int) -> av.video.stream.VideoStream:
    """A yuv420p video stream with the first encoder of :data:`VIDEO_CODECS` this PyAV has."""
    rate = Fraction(fps).limit_denominator(1001)
    for codec, options, bit_rate in VIDEO_CODECS:
        try:
            stream = container.add_stream(codec, rate=rate)
        except Exception:  # codec not built into this PyAV's ffmpeg
            continue
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(options)
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.codec_context.time_base = 1 / rate
        return stream
    names = ", ".join(codec for codec, _, _ in VIDEO_CODECS)
    raise DataError(None, f"PyAV's ffmpeg has none of the video encoders {names}",
                    "install a full PyAV wheel")


def video_codec() -> str:
    """The video encoder the writer uses with this PyAV (``libx264``, else ``mpeg4``)."""
    for codec, _, _ in VIDEO_CODECS:
        if codec in av.codecs_available:
            return codec
    return "none"


def _write_media(plan: _Plan, tmp: Path) -> None:
    """Render crops (jpg, in ``tmp/crops``) and ``tmp/video.mp4`` (video + AAC audio) of one recording."""
    cfg, rng = plan.cfg, plan.rng_face
    cs, width, height, n = cfg.crop_size, cfg.frame_width, cfg.frame_height, plan.n_frames
    face = _Face(plan.rng_id, cs)
    background = _background(plan.rng_id, width, height)
    fps = cfg.fps

    # slow placement of the face in the raw frame, small head jitter growing with arousal
    px = np.round((np.tanh(0.8 * _smooth_noise(rng, n, 3.0 * fps)) + 1) / 2 * (width - cs)).astype(int)
    py = np.round((np.tanh(0.8 * _smooth_noise(rng, n, 3.0 * fps)) + 1) / 2 * (height - cs)).astype(int)
    jitter = 0.4 + 1.6 * (plan.face_arousal + 1.0) / 2.0  # px (at 112), std
    jx = _smooth_noise(rng, n, 0.12 * fps) * jitter * cs / 112.0
    jy = _smooth_noise(rng, n, 0.12 * fps) * jitter * cs / 112.0
    bank = rng.standard_normal((6, cs + 16, cs + 16, 3)).astype(np.float32)
    mild, heavy = (bank * 3.0).astype(np.int16), (bank * 70.0).astype(np.int16)
    pick = rng.integers(0, len(bank), n)
    offs = rng.integers(0, 16, (n, 2))

    crops_dir = tmp / "crops"
    crops_dir.mkdir(parents=True)
    jpg_params = [cv2.IMWRITE_JPEG_QUALITY, 92]
    audio = _voice(plan)

    with av.open(str(tmp / "video.mp4"), "w") as container:
        vstream = _open_video_stream(container, fps, width, height)
        astream = container.add_stream("aac", rate=cfg.sample_rate)
        astream.layout = "mono"
        astream.bit_rate = 64000
        for i in range(n):
            crop = background[py[i]:py[i] + cs, px[i]:px[i] + cs].copy()
            if plan.face_present[i]:
                face.draw(crop, float(plan.face_valence[i]), float(plan.face_arousal[i]), jx[i], jy[i])
            bank_ = heavy if plan.face_weak[i] == WEAK_NOISY else mild
            dy, dx = offs[i]
            noisy = crop.astype(np.int16) + bank_[pick[i], dy:dy + cs, dx:dx + cs]
            crop = np.clip(noisy, 0, 255).astype(np.uint8)
            if plan.face_present[i]:
                cv2.imwrite(str(crops_dir / crop_name(i)), crop, jpg_params)
            frame = background.copy()
            frame[py[i]:py[i] + cs, px[i]:px[i] + cs] = crop
            vframe = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vframe.pts = i
            for packet in vstream.encode(vframe):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        for start in range(0, len(audio), AAC_FRAME):
            chunk = audio[start:start + AAC_FRAME]
            aframe = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            aframe.sample_rate = cfg.sample_rate
            aframe.pts = start
            for packet in astream.encode(aframe):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)


# ------------------------------------------------------------------------------------------------ recordings


def _targets(root: Path, name: str, split: str) -> dict[str, Path | None]:
    """Final paths of one recording's parts; ``annotation`` is None for splits without labels (test)."""
    split_dir = AFFWILD2_SPLIT_DIRS.get(split)
    return {
        "crops": root / CROPS_DIR / name,
        "video": root / VIDEO_DIR / f"{name}.mp4",
        "annotation": None if split_dir is None else root / AFFWILD2_ANNOTATION_DIR / split_dir / f"{name}.txt",
        "latent": root / LATENT_DIR / f"{name}.npz",
    }


def _is_done(targets: dict[str, Path | None]) -> bool:
    return all(p is None or p.exists() for p in targets.values())


def _write_recording(root: Path, cfg: SynthConfig, index: int, split: str) -> bool:
    """Write one recording unless finished; returns whether it was written."""
    plan = _Plan(cfg, index, split)
    targets = _targets(root, plan.name, split)
    if _is_done(targets):
        return False
    tmp = root / TMP_DIR / f"{plan.name}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _write_media(plan, tmp)
        if targets["annotation"] is not None:
            (tmp / "annotation.txt").write_text(plan.annotation_text())
        with open(tmp / "latent.npz", "wb") as fh:
            np.savez(fh, **plan.latent_arrays())
        # move into place; the latent npz goes last and marks the recording as finished
        latent = targets["latent"]
        if latent.exists():
            latent.unlink()
        if targets["crops"].exists():
            shutil.rmtree(targets["crops"])
        targets["crops"].parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "crops", targets["crops"])
        targets["video"].parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "video.mp4", targets["video"])
        if targets["annotation"] is not None:
            targets["annotation"].parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / "annotation.txt", targets["annotation"])
        latent.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "latent.npz", latent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


# ------------------------------------------------------------------------------------------------ dataset


def _check_config(path: Path, cfg: SynthConfig, root: Path) -> None:
    """Raise DataError if ``path`` holds a config other than ``cfg``."""
    try:
        stored = SynthConfig.model_validate(json.loads(path.read_text()))
    except Exception as exc:  # unreadable or from another version
        raise DataError(path, f"cannot read the synthetic config stored there ({exc})",
                        "use another --out folder or delete it") from exc
    if stored != cfg:
        old, new = stored.model_dump(), cfg.model_dump()
        diff = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in new if old[k] != new[k])
        raise DataError(root, f"already holds a synthetic dataset written with another config ({diff})",
                        "use another --out folder or delete it")


def write_synthetic_dataset(root: str | Path, cfg: SynthConfig | None = None, progress: bool = True) -> Path:
    """Write (or finish writing) the synthetic Aff-Wild2-format dataset under ``root``; returns ``root``.

    Finished recordings are skipped, so re-running after an interruption resumes. ``root`` must be
    new, empty, or a synthetic dataset written with the same config (else :class:`DataError`).
    """
    cfg = cfg or SynthConfig()
    root = Path(root)
    final_cfg = root / CONFIG_FILE
    pending_cfg = root / TMP_DIR / "config.json"
    if final_cfg.exists():
        _check_config(final_cfg, cfg, root)
    elif pending_cfg.exists():
        _check_config(pending_cfg, cfg, root)
    elif (root / AFFWILD2_ANNOTATION_DIR.parts[0]).exists() or (root / CROPS_DIR).exists():
        raise DataError(root, "already holds a dataset that `avaffect synth` did not write",
                        "use another --out folder or delete it")
    cfg_text = cfg.model_dump_json(indent=2) + "\n"
    if not pending_cfg.exists():
        atomic_write_text(pending_cfg, cfg_text)

    written = 0
    plan = recording_plan(cfg)
    for index, name, split in progress_bar(plan, desc="synth", unit="rec", disable=not progress):
        if _write_recording(root, cfg, index, split):
            written += 1
        else:
            log.info("%s: already written, skipped", name)
    log.info("synthetic dataset in %s: %d recordings written, %d already there", root, written,
             len(plan) - written)

    atomic_write_text(final_cfg, cfg_text)
    shutil.rmtree(root / TMP_DIR, ignore_errors=True)
    return root
