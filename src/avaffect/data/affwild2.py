"""Reader of the Aff-Wild2 / ABAW valence-arousal layout (SPEC §6); the synthetic set uses it too.

Layout::

    ROOT/annotations/VA_Estimation_Challenge/Train_Set/<video>.txt        header "valence,arousal", -5 = not annotated
    ROOT/annotations/VA_Estimation_Challenge/Validation_Set/<video>.txt
    ROOT/cropped_aligned/<video>/00001.jpg ...                          5-digit, 1-based; a missing jpg = no face
    ROOT/<one of VIDEO_DIRS>/<video>.{mp4,avi,...}                       raw video with its audio

The official split is the annotation folders; recordings with crops or a video but no annotation
are the test set. ``<name>_left`` / ``<name>_right`` (two people in one video) share the audio of
``<name>``'s video.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avaffect.data.recording import Recording
from avaffect.errors import DataError

log = logging.getLogger(__name__)

ANNOTATION_DIR = Path("annotations") / "VA_Estimation_Challenge"
SPLIT_DIRS = {"train": "Train_Set", "validation": "Validation_Set"}
CROPS_DIR = "cropped_aligned"
VIDEO_DIRS = ("videos", "raw_videos", "batch1", "batch2", "batch3", "new_vids", ".")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".flv", ".webm")
MISSING_VALUE = -5.0


def read_annotation(path: str | Path) -> np.ndarray:
    """Read one ``valence,arousal`` file into ``[T, 2]`` float32, -5 → NaN.

    Raises :class:`DataError` naming the file and line for a missing file, a wrong header, a
    malformed row or a value outside [-1, 1] that is not the -5 marker.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "annotation file not found",
                        "check the dataset root, or remove the recording from the split")
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    if not lines or [h.strip().lower() for h in lines[0].split(",")] != ["valence", "arousal"]:
        raise DataError(path, f"expected the header 'valence,arousal', found {lines[0][:40]!r}" if lines
                        else "the file is empty", "the file must be an Aff-Wild2 VA annotation file")
    rows = [ln for ln in lines[1:] if ln.strip()]
    values = np.empty((len(rows), 2), dtype=np.float32)
    for i, line in enumerate(rows):
        parts = line.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            values[i] = [float(parts[0]), float(parts[1])]
        except ValueError:
            raise DataError(path, f"line {i + 2}: cannot read two numbers from {line[:40]!r}",
                            "fix or re-download the annotation file") from None
    if not np.all(np.isfinite(values)):
        bad = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise DataError(path, f"line {bad + 2}: NaN or infinite value", "use -5 for unannotated frames")
    missing = values == MISSING_VALUE
    out_of_range = (np.abs(values) > 1.0) & ~missing
    if out_of_range.any():
        bad = int(np.argwhere(out_of_range)[0, 0])
        raise DataError(path, f"line {bad + 2}: value {values[bad].tolist()} outside [-1, 1]",
                        "valence and arousal must lie in [-1, 1] (-5 marks unannotated frames)")
    values[missing.any(axis=1)] = np.nan  # a frame is annotated for both targets or for none
    return values


def find_video(root: Path, name: str, video_dirs=VIDEO_DIRS) -> Path | None:
    """The raw video of ``name`` in any of ``video_dirs`` (first match), or None."""
    for d in video_dirs:
        for ext in VIDEO_EXTS:
            p = root / d / f"{name}{ext}"
            if p.is_file():
                return p
    return None


def base_video_name(name: str) -> str:
    """``x_left`` / ``x_right`` → ``x`` (they share the base video and its audio)."""
    for suffix in ("_left", "_right"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def crop_indices(crops_dir: Path) -> np.ndarray:
    """0-based frame indices of the ``00001.jpg``-style crops present in ``crops_dir``."""
    if not crops_dir.is_dir():
        return np.zeros(0, dtype=np.int64)
    idx = [int(f[:-4]) - 1 for f in os.listdir(crops_dir) if f.endswith(".jpg") and f[:-4].isdigit()]
    return np.asarray(sorted(idx), dtype=np.int64)


def load_affwild2(root: str | Path, splits: tuple[str, ...] = ("train", "validation", "test"),
                  video_dirs: tuple[str, ...] = VIDEO_DIRS, default_fps: float = 30.0,
                  length_tolerance: int = 0, check_media: bool = True,
                  on_error: Callable[[DataError], None] | None = None) -> list[Recording]:
    """All recordings of an Aff-Wild2-layout dataset, sorted by split then name.

    The timeline is the annotation's (one step per video frame). With ``check_media`` the raw video's
    packets are read: their timestamps are the timeline and their count must match the annotation's row
    count within ``length_tolerance`` frames (rows beyond the video are dropped, missing rows are NaN,
    both logged); a larger difference raises :class:`DataError` naming both files. A ``_left`` /
    ``_right`` recording without a video of its own is timed by its base video.

    With ``on_error``, a problem of one recording (or an annotation listed in two splits) is passed to it
    and that recording is skipped, so that every problem is seen at once (``avaffect prepare``).
    """
    root = Path(root)
    ann_root = root / ANNOTATION_DIR
    if not ann_root.is_dir():
        raise DataError(ann_root, "annotation folder not found",
                        f"is {root} an Aff-Wild2 root? It must contain {ANNOTATION_DIR}/Train_Set and "
                        "Validation_Set (run `avaffect synth` to make a synthetic one)")
    unknown = set(splits) - {"train", "validation", "test"}
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}")
    annotated: dict[str, tuple[str, Path]] = {}
    for split, folder in SPLIT_DIRS.items():
        d = ann_root / folder
        if not d.is_dir():
            raise DataError(d, "split folder not found", f"expected {ANNOTATION_DIR}/{folder} under {root}")
        for f in sorted(d.glob("*.txt")):
            if f.stem in annotated:
                err = DataError(f, f"recording also annotated in {annotated[f.stem][1]}",
                                "a recording belongs to one split only")
                if on_error is None:
                    raise err
                on_error(err)
                continue
            annotated[f.stem] = (split, f)

    recordings: list[Recording] = []

    def load(name: str, split: str, ann: Path | None) -> None:
        try:
            recordings.append(_load_one(root, name, split, ann, video_dirs, default_fps, length_tolerance,
                                        check_media))
        except DataError as err:
            if on_error is None:
                raise
            on_error(err)

    for name, (split, ann) in annotated.items():
        if split in splits:
            load(name, split, ann)
    if "test" in splits:
        crops_root = root / CROPS_DIR
        candidates = {p.name for p in crops_root.iterdir() if p.is_dir()} if crops_root.is_dir() else set()
        for d in video_dirs:
            vd = root / d
            if vd.is_dir() and d != ".":
                candidates |= {p.stem for p in vd.iterdir() if p.suffix.lower() in VIDEO_EXTS}
        known = candidates | set(annotated)
        shared = {n for n in known if base_video_name(n) != n and base_video_name(n) in known}
        bases = {base_video_name(n) for n in shared}  # the video of a _left/_right pair is no recording
        for name in sorted(candidates - set(annotated) - bases):
            load(name, "test", None)
    order = {"train": 0, "validation": 1, "test": 2}
    recordings.sort(key=lambda r: (order[r.split], r.name))
    return recordings


def _load_one(root: Path, name: str, split: str, ann: Path | None, video_dirs, default_fps: float,
              length_tolerance: int, check_media: bool) -> Recording:
    crops_dir = root / CROPS_DIR / name
    video = find_video(root, name, video_dirs)
    base = base_video_name(name)
    audio_src = video if base == name else find_video(root, base, video_dirs)
    if not crops_dir.is_dir() and video is None:
        raise DataError(ann or crops_dir, f"recording {name!r} has neither face crops nor a video",
                        f"expected {CROPS_DIR}/{name}/ or a video named {name}.mp4 under one of "
                        f"{', '.join(video_dirs)}")
    labels = read_annotation(ann) if ann is not None else None
    fps = default_fps
    num_video_frames = None
    video_times = None
    timing_video = video or audio_src  # _left/_right: the base video has the frames the crops come from
    if check_media and timing_video is not None:
        from avaffect.features.media import probe, video_frame_times  # media is the leaf that knows PyAV

        fps = probe(timing_video).fps or default_fps
        video_times = video_frame_times(timing_video)  # timestamps from the stream, exact frame count
        num_video_frames = len(video_times)
    faces = crop_indices(crops_dir)
    if labels is not None:
        num_steps = len(labels)
        if num_video_frames is not None and num_video_frames != num_steps:
            diff = num_steps - num_video_frames
            if abs(diff) > length_tolerance:
                raise DataError(ann, f"{num_steps} annotation rows but the video {timing_video} has "
                                f"{num_video_frames} frames",
                                "the annotation must have one row per video frame; fix the file or pass "
                                "a length tolerance to pad/trim small differences")
            log.warning("%s: %d annotation rows vs %d video frames; %s", ann, num_steps, num_video_frames,
                        "dropping extra rows" if diff > 0 else "missing rows become NaN")
            labels = labels[:num_video_frames] if diff > 0 else np.concatenate(
                [labels, np.full((-diff, 2), np.nan, np.float32)])
            num_steps = num_video_frames
    elif num_video_frames is not None:
        num_steps = num_video_frames
    else:
        num_steps = int(faces[-1]) + 1 if len(faces) else 0
    if len(faces) and faces[-1] >= num_steps + length_tolerance:
        raise DataError(crops_dir, f"crop {faces[-1] + 1:05d}.jpg lies beyond the {num_steps} frames of "
                        "the recording", "the crops folder belongs to another video or the annotation is "
                        "truncated")
    face_mask = np.zeros(num_steps, dtype=bool)
    face_mask[faces[faces < num_steps]] = True
    if labels is None:
        labels = np.full((num_steps, 2), np.nan, dtype=np.float32)
    if video_times is not None and len(video_times) == num_steps:
        times = video_times
    else:  # no video to read (crops only) or a shorter annotation: the nominal frame rate
        times = np.arange(num_steps) / fps
    return Recording(name=name, times=times, labels=labels, face_mask=face_mask,
                     split=split, video_path=video, audio_path=audio_src,
                     crops_dir=crops_dir if crops_dir.is_dir() else None, annotation_path=ann,
                     subject=base, fps=fps)
