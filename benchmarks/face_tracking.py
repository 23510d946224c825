"""Detection every k frames with tracking in between: speed gained against faces lost, side by side in one run.

    python benchmarks/face_tracking.py [--videos ../shared/data/crema_d] [--every 1 2 3 5 10] [--rounds 3]

For each ``detect_every`` k, the face pipeline (:func:`avaffect.features.faces.track_faces`: Haar, ROI search
around the track, eye-levelling alignment, 112 px crops) runs on every video; rows alternate round by round.
Reported per k: frames per second of the whole pipeline (decoding included), the share of frames with a face,
and against k = 1 (the detector on every frame): the mean IoU of the boxes on frames both found, and the share
of k = 1's face frames that k misses. Written to ``docs/benchmarks/face_tracking.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from pages import publish

from avaffect.features.faces import track_faces
from avaffect.features.faces.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[1]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``[N, 4]`` boxes (x1, y1, x2, y2)."""
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2, y2 = np.minimum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, default=REPO.parent / "shared" / "data" / "crema_d")
    p.add_argument("--every", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "face_tracking.md")
    args = p.parse_args(argv)
    videos = sorted(args.videos.glob("*.flv")) + sorted(args.videos.glob("*.mp4")) if args.videos.is_dir() \
        else [args.videos]
    every = sorted(set(args.every) | {1})
    seconds: dict[int, list[float]] = {k: [] for k in every}
    tracks: dict[int, list] = {}
    for r in range(args.rounds):
        for k in every:
            t0 = time.perf_counter()
            tracks[k] = [track_faces(v, FacePipeline(detect_every=k)) for v in videos]
            seconds[k].append(time.perf_counter() - t0)
            print(f"round {r}: detect_every {k}: {seconds[k][-1]:.2f} s", flush=True)
    frames = sum(len(t) for t in tracks[1])
    from avaffect.workflows.bench import machine

    info = machine()
    lines = ["# Face detection every k frames, tracking in between", "",
             f"`python benchmarks/face_tracking.py --every {' '.join(map(str, every))} --rounds {args.rounds}` on "
             f"{info['cpu']} ({info['cores']} cores): {len(videos)} videos ({frames} frames: "
             f"{', '.join(v.name for v in videos[:6])}{', …' if len(videos) > 6 else ''}), Haar + ROI search + "
             "alignment + 112 px crops, decoding included; median over rounds. IoU and misses are against "
             "k = 1 (the detector on every frame).", "",
             "| detect_every | frames/s | speed vs k=1 | face found | IoU vs k=1 (mean / 5th pct) | k=1 faces missed |",
             "|---:|---:|---:|---:|---:|---:|"]
    base = statistics.median(seconds[1])
    for k in every:
        sec = statistics.median(seconds[k])
        found = np.concatenate([t.crop_present for t in tracks[k]])
        ref = np.concatenate([t.crop_present for t in tracks[1]])
        both = found & ref
        boxes = np.concatenate([t.boxes for t in tracks[k]])[both]
        ref_boxes = np.concatenate([t.boxes for t in tracks[1]])[both]
        ious = iou(boxes, ref_boxes) if both.any() else np.array([np.nan])
        missed = (ref & ~found).sum() / max(1, ref.sum())
        lines.append(f"| {k} | {frames / sec:.1f} | {base / sec:.2f}x | {found.mean():.1%} | "
                     f"{np.nanmean(ious):.3f} / {np.nanpercentile(ious, 5):.3f} | {missed:.1%} |")
    text = "\n".join(lines) + "\n"
    return publish(args.out, text)


if __name__ == "__main__":
    raise SystemExit(main())
