"""A folder of videos as unlabelled recordings (for ``avaffect extract VIDEO_FOLDER`` and ``predict``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avaffect.data.affwild2 import VIDEO_EXTS
from avaffect.data.recording import Recording
from avaffect.errors import MediaError


def recording_from_video(path: str | Path, name: str | None = None, split: str = "test") -> Recording:
    """One video as a recording: the timeline is its frames (timestamps from the stream), no labels,
    the face mask unknown until faces are detected (all True here; the visual extractors write zero
    vectors where no face is found, which training and prediction read as 'no face')."""
    from avaffect.features.media import probe, video_frame_times

    path = Path(path)
    times = video_frame_times(path)
    info = probe(path)
    return Recording(name=name or path.stem, times=times, labels=np.full((len(times), 2), np.nan, np.float32),
                     face_mask=np.ones(len(times), dtype=bool), split=split, video_path=path,
                     audio_path=path if info.has_audio else None, fps=info.fps or 25.0)


def load_video_folder(folder: str | Path, recursive: bool = True) -> tuple[list[Recording], dict[str, str]]:
    """Every video under ``folder``: ``(recordings, broken)`` where ``broken`` maps the name of each
    file that cannot be read to the reason (the caller records it; one bad file stops nothing).

    Names are the paths relative to ``folder`` without extension (``sub/clip``), so equal file names
    in different sub-folders stay distinct."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(folder, "not a folder", "pass a folder of video files")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    recordings, broken = [], {}
    for f in files:
        name = f.relative_to(folder).with_suffix("").as_posix()
        try:
            recordings.append(recording_from_video(f, name))
        except MediaError as e:
            broken[name] = str(e)
    return recordings, broken
