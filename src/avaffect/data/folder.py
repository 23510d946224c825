"""A folder of videos as unlabelled recordings (for ``avaffect extract VIDEO_FOLDER`` and ``predict``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avaffect.data.layout import AUDIO_EXTS, VIDEO_EXTS
from avaffect.data.recording import Recording
from avaffect.data.timeline import crops_face_mask, read_video_timeline
from avaffect.errors import MediaError

DEFAULT_FPS = 25.0
AUDIO_ONLY_FIX = ("a recording needs a video track here (its timeline and its face come from it); for audio-only "
                  "data use a manifest with time,valence,arousal label files (avaffect prepare manifest ...)")


def recording_from_video(path: str | Path, name: str | None = None, split: str = "test",
                         crops_dir: str | Path | None = None) -> Recording:
    """One video as a recording: the timeline is its frames (timestamps from the stream), no labels.

    With ``crops_dir`` (a folder of ``00001.jpg``-style crops, one per frame) the face mask is "a crop
    exists"; without it the mask is all True until faces are detected (the visual extractors write zero
    vectors where no face is found, which training and prediction read as 'no face')."""
    path = Path(path)
    timeline = read_video_timeline(path, DEFAULT_FPS)
    if not timeline.has_video:
        raise MediaError(path, "has no video stream (an audio-only file)", AUDIO_ONLY_FIX)
    n = timeline.num_frames
    crops = Path(crops_dir) if crops_dir is not None else None
    if crops is not None and not crops.is_dir():
        raise MediaError(crops, "face crops folder not found", "pass the folder of this video's 00001.jpg crops")
    face_mask = crops_face_mask(crops, n, 0, "the crops folder belongs to another video", where=path.name)
    return Recording(name=name or path.stem, times=timeline.times, labels=np.full((n, 2), np.nan, np.float32),
                     face_mask=face_mask, split=split, video_path=path, crops_dir=crops,
                     audio_path=path if timeline.has_audio else None, fps=timeline.fps)


def list_videos(folder: str | Path, recursive: bool = True) -> list[Path]:
    """The video files under ``folder`` (by extension), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(folder, "not a folder", "pass a folder of video files")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in VIDEO_EXTS)


def load_video_folder(folder: str | Path, recursive: bool = True) -> tuple[list[Recording], dict[str, str]]:
    """Every video under ``folder``: ``(recordings, broken)`` where ``broken`` maps the name of each
    file that cannot be read to the reason (the caller records it; one bad file stops nothing).

    Names are the paths relative to ``folder`` without extension (``sub/clip``), so equal file names
    in different sub-folders stay distinct."""
    folder = Path(folder)
    recordings, broken = [], {}
    pattern = "**/*" if recursive else "*"
    for f in sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_EXTS):
        broken[f.relative_to(folder).as_posix()] = str(MediaError(f, "audio-only file, not extracted", AUDIO_ONLY_FIX))
    for f in list_videos(folder, recursive):
        name = f.relative_to(folder).with_suffix("").as_posix()
        try:
            recordings.append(recording_from_video(f, name))
        except MediaError as e:
            broken[name] = str(e)
    return recordings, broken
