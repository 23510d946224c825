"""Helpers of the fault tests: tiny dataset layouts and media checks (importable: pytest puts this folder on
``sys.path`` for the tests in it; ``tests/`` is added for the shared ``mediafiles`` writers)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mediafiles import write_test_video  # noqa: E402

ANN = Path("annotations") / "VA_Estimation_Challenge"


def ann_text(n: int, row=None) -> str:
    """An Aff-Wild2 ``valence,arousal`` annotation of ``n`` rows; ``row(i)`` may replace row ``i``'s text."""
    lines = []
    for i in range(n):
        text = row(i) if row is not None else None
        lines.append(text if text is not None else f"{0.5 * math.sin(i / 5):.3f},{0.4 * math.cos(i / 7):.3f}")
    return "valence,arousal\n" + "\n".join(lines) + "\n"


def aff_root(tmp_path: Path, a_text: str | None = None, frames: int = 20) -> Path:
    """A tiny Aff-Wild2 layout: train recording ``a``, validation recording ``b`` (videos with audio)."""
    root = tmp_path / "aff"
    for folder in ("Train_Set", "Validation_Set"):
        (root / ANN / folder).mkdir(parents=True)
    (root / ANN / "Train_Set" / "a.txt").write_text(a_text if a_text is not None else ann_text(frames))
    (root / ANN / "Validation_Set" / "b.txt").write_text(ann_text(frames))
    write_test_video(root / "videos" / "a.mp4", frames)
    write_test_video(root / "videos" / "b.mp4", frames)
    return root


def write_jpgs(folder: Path, indices) -> None:
    """Face-crop files ``00001.jpg`` ... for the 0-based ``indices``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))
    for i in indices:
        (folder / f"{i + 1:05d}.jpg").write_bytes(buf.tobytes())


def decoded_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))
