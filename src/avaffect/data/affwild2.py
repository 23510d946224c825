"""Reader of the Aff-Wild2 / ABAW valence-arousal layout (docs/design.md §6); the synthetic set uses it too.

Layout::

    ROOT/annotations/VA_Estimation_Challenge/Train_Set/<video>.txt        header "valence,arousal", -5 = not annotated
    ROOT/annotations/VA_Estimation_Challenge/Validation_Set/<video>.txt
    ROOT/cropped_aligned/<video>/00001.jpg ...                          5-digit, 1-based; a missing jpg = no face
    ROOT/<one of AFFWILD2_VIDEO_DIRS>/<video>.{mp4,avi,...}              raw video with its audio

The official split is the annotation folders; recordings with crops or a video but no annotation
are the test set. ``<name>_left`` / ``<name>_right`` (two people in one video) share the audio of
``<name>``'s video.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avaffect.data.layout import (
    AFFWILD2_ANNOTATION_DIR,
    AFFWILD2_MISSING_VALUE,
    AFFWILD2_SPLIT_DIRS,
    AFFWILD2_VIDEO_DIRS,
    CROPS_DIR,
    VIDEO_EXTS,
    check_splits,
    crop_indices,
    split_rank,
)
from avaffect.data.recording import TARGETS, Recording
from avaffect.data.timeline import crops_face_mask, fit_frame_labels, read_video_timeline
from avaffect.data.timeline_index import TimelineIndex, stored_timeline_or_error
from avaffect.errors import DataError

log = logging.getLogger(__name__)



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
    if not lines or [h.strip().lower() for h in lines[0].split(",")] != list(TARGETS):
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
    missing = values == AFFWILD2_MISSING_VALUE
    out_of_range = (np.abs(values) > 1.0) & ~missing
    if out_of_range.any():
        bad = int(np.argwhere(out_of_range)[0, 0])
        raise DataError(path, f"line {bad + 2}: value {values[bad].tolist()} outside [-1, 1]",
                        "valence and arousal must lie in [-1, 1] (-5 marks unannotated frames)")
    values[missing.any(axis=1)] = np.nan  # a frame is annotated for both targets or for none
    return values


def find_video(root: Path, name: str, video_dirs=AFFWILD2_VIDEO_DIRS) -> Path | None:
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


def load_affwild2(root: str | Path, splits: tuple[str, ...] = ("train", "validation", "test"),
                  video_dirs: tuple[str, ...] = AFFWILD2_VIDEO_DIRS, default_fps: float = 30.0,
                  length_tolerance: int = 0, check_media: bool = True,
                  on_error: Callable[[DataError], None] | None = None,
                  timelines: TimelineIndex | None = None) -> list[Recording]:
    """All recordings of an Aff-Wild2-layout dataset, sorted by split then name.

    The timeline is the annotation's (one step per video frame). With ``check_media`` the raw video's
    packets are read: their timestamps are the timeline and their count must match the annotation's row
    count within ``length_tolerance`` frames (rows beyond the video are dropped, missing rows are NaN,
    both logged); a larger difference raises :class:`DataError` naming both files. A ``_left`` /
    ``_right`` recording without a video of its own is timed by its base video; without its crops folder its faces
    are detected on the base video, the person on its side of the frame (``Recording.face_choice``: a multi-person
    pass over the video, :func:`avaffect.features.faces.people.person_faces`), not the largest face.

    A recording with neither a video nor face crops here takes its timeline (frame times, face mask) from
    ``timelines``, the feature store's timeline index (:mod:`avaffect.data.timeline_index`): training and
    evaluation then run from the features and the annotation files alone; its labels are fitted to the stored
    frame count by the same rule. Test-split recordings are found there too.

    With ``on_error``, a problem of one recording (or an annotation listed in two splits) is passed to it
    and that recording is skipped, so that every problem is seen at once (``avaffect prepare``).
    """
    root = Path(root)
    ann_root = root / AFFWILD2_ANNOTATION_DIR
    if not ann_root.is_dir():
        raise DataError(ann_root, "annotation folder not found",
                        f"is {root} an Aff-Wild2 root? It must contain {AFFWILD2_ANNOTATION_DIR}/Train_Set and "
                        "Validation_Set (run `avaffect synth` to make a synthetic one)")
    check_splits(splits)
    annotated: dict[str, tuple[str, Path]] = {}
    for split, folder in AFFWILD2_SPLIT_DIRS.items():
        d = ann_root / folder
        if not d.is_dir():
            raise DataError(d, "split folder not found", f"expected {AFFWILD2_ANNOTATION_DIR}/{folder} under {root}")
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
                                        check_media, timelines))
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
        if timelines is not None:  # test recordings whose media are elsewhere; of a store shared by data sets,
            candidates |= set(timelines.names("test"))  # only those recorded as test recordings
        known = candidates | set(annotated)
        shared = {n for n in known if base_video_name(n) != n and base_video_name(n) in known}
        bases = {base_video_name(n) for n in shared}  # the video of a _left/_right pair is no recording
        for name in sorted(candidates - set(annotated) - bases):
            load(name, "test", None)
    recordings.sort(key=lambda r: (split_rank(r.split), r.name))
    return recordings


def _load_one(root: Path, name: str, split: str, ann: Path | None, video_dirs, default_fps: float,
              length_tolerance: int, check_media: bool, timelines: TimelineIndex | None = None) -> Recording:
    crops_dir = root / CROPS_DIR / name
    video = find_video(root, name, video_dirs)
    base = base_video_name(name)
    audio_src = video if base == name else find_video(root, base, video_dirs)
    face_choice = "largest"
    if base != name and video is None and not crops_dir.is_dir() and audio_src is not None:
        # a _left / _right recording without its crops: the person on that side of the base video
        video, face_choice = audio_src, name.rsplit("_", 1)[1]
    labels = read_annotation(ann) if ann is not None else None
    if not crops_dir.is_dir() and video is None:
        stored = stored_timeline_or_error(
            timelines, name, ann or crops_dir, "has neither face crops nor a video here",
            f"expected {CROPS_DIR}/{name}/ or a video named {name}.mp4 under one of {', '.join(video_dirs)}; or, "
            "to train from features alone, run `avaffect extract` where the media are (it records each "
            "recording's timeline in the feature store) and point features.store at that store")
        if labels is not None:
            labels = fit_frame_labels(labels, stored.num_steps, length_tolerance, ann, stored.path)
        else:
            labels = np.full((stored.num_steps, 2), np.nan, dtype=np.float32)
        return Recording(name=name, times=stored.times, labels=labels, face_mask=stored.face_mask, split=split,
                         annotation_path=ann, subject=base, fps=stored.fps, stored=stored.media)
    timing_video = video or audio_src  # _left/_right: the base video has the frames the crops come from
    timeline = read_video_timeline(timing_video, default_fps) if check_media and timing_video is not None else None
    if timeline is not None:
        num_steps, times, fps = timeline.num_frames, timeline.times, timeline.fps
        if labels is not None:
            labels = fit_frame_labels(labels, num_steps, length_tolerance, ann, timing_video)
    else:  # no video to read (crops only, or media not checked): the annotation's rows at the nominal rate
        faces = crop_indices(crops_dir)
        num_steps = len(labels) if labels is not None else int(faces[-1]) + 1 if len(faces) else 0
        fps = default_fps
        times = np.arange(num_steps) / fps
    face_mask = crops_face_mask(crops_dir if crops_dir.is_dir() else None, num_steps, length_tolerance,
                                "the crops folder belongs to another video or the annotation is truncated")
    if labels is None:
        labels = np.full((num_steps, 2), np.nan, dtype=np.float32)
    return Recording(name=name, times=times, labels=labels, face_mask=face_mask,
                     split=split, video_path=video, audio_path=audio_src,
                     crops_dir=crops_dir if crops_dir.is_dir() else None, annotation_path=ann,
                     subject=base, fps=fps, face_choice=face_choice)
