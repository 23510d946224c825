"""``face_hog`` on a chunk of real face crops: crop by crop against the batched path, side by side in one run.

    python benchmarks/face_hog.py [--rounds 5] [--chunk 256]

The crops are the CREMA-D clips' faces (``../shared/data/crema_d``, ODbL), cut by the face pipeline at the
extractor's ``crop_size`` (112 px) and described ``--chunk`` at a time, as the streaming path hands them over.
"crop by crop": colour conversion, resizes and HOG with OpenCV on each crop alone (the path before batching);
"batched": :meth:`FaceHOG.features_from_crops` (one colour conversion and one resize for the chunk, the HOG per
crop). Rounds interleave the two; the features are checked equal bit for bit. Also timed: OpenCV's HOG
alone per crop, and OpenCV's one-call HOG over the chunk tiled into one image (windows at given locations).
Written to ``docs/benchmarks/face_hog.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from pages import publish

from avaffect.data.folder import recording_from_video
from avaffect.features.extractors import get_extractor
from avaffect.features.faces import load_face_crops
from avaffect.features.faces.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "crema_d"


def crops_of(clips: list[Path], size: int, n: int) -> np.ndarray:
    out = []
    for clip in clips:
        t = load_face_crops(recording_from_video(clip), FacePipeline(crop_size=size))
        crops, mask = t.crops, t.crop_present
        out.extend(crops[mask])
    out = np.stack(out)
    return np.concatenate([out] * (n // len(out) + 1))[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "face_hog.md")
    args = p.parse_args(argv)
    from avaffect.workflows.bench import machine

    ex = get_extractor("face_hog")
    crops = crops_of(sorted(CLIPS.glob("*.flv")), int(ex.params["crop_size"]), args.chunk)
    mask = np.ones(len(crops), bool)
    hog = ex._descriptor()
    size = int(ex.params["size"])

    grid = int(ex.params["grid"])

    def one_by_one() -> np.ndarray:  # the path before batching: OpenCV on each crop alone
        out = []
        for c in crops:
            g = cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
            out.append(np.concatenate([hog.compute(g).reshape(-1),
                                       cv2.resize(g, (grid, grid), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0]))
        return np.stack(out).astype(np.float32)

    small = [cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
             for c in crops]

    def hog_alone() -> None:
        for g in small:
            hog.compute(g)

    padded = np.pad(np.stack(small), ((0, 0), (1, 1), (1, 1)), mode="reflect")  # each crop's own border
    tall = np.ascontiguousarray(padded.reshape(-1, size + 2))
    locations = [(1, (size + 2) * k + 1) for k in range(len(small))]

    def hog_tiled() -> None:
        hog.compute(tall, (ex.params["block_stride"],) * 2, (0, 0), locations)

    cases = {"crop by crop": one_by_one, "batched": lambda: ex.features_from_crops(crops, mask),
             "OpenCV HOG alone, per crop": hog_alone, "OpenCV HOG, one call on the tiled chunk": hog_tiled}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    np.testing.assert_array_equal(one_by_one(), ex.features_from_crops(crops, mask))
    tiled = hog.compute(tall, (ex.params["block_stride"],) * 2, (0, 0), locations).reshape(len(small), -1)
    np.testing.assert_array_equal(tiled, np.stack([hog.compute(g).reshape(-1) for g in small]))
    info = machine()
    base = statistics.median(times["crop by crop"])
    lines = ["# face_hog: crop by crop vs batched", "",
             f"`python benchmarks/face_hog.py --rounds {args.rounds} --chunk {args.chunk}` on {info['cpu']} "
             f"({info['cores']} cores, OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads). "
             f"{len(crops)} real CREMA-D face crops of {ex.params['crop_size']} px (one streaming chunk), "
             f"face_hog defaults (size {size}, HOG {ex.hog_dim} + grid {ex.params['grid'] ** 2}). Rounds "
             "interleaved; microseconds per crop, median (min-max) of the rounds. The batched features equal the "
             "crop-by-crop ones bit for bit, and so do the tiled HOG's.", "",
             "| path | us a crop | vs crop by crop |", "|---|---:|---:|"]
    for name, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"| {name} | {med / len(crops) * 1e6:.1f} ({min(ts) / len(crops) * 1e6:.1f}-"
                     f"{max(ts) / len(crops) * 1e6:.1f}) | {med / base:.2f} |")
    return publish(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
