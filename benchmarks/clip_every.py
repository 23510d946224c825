"""``r2plus1d18_clip`` with ``clip_every`` = k: seconds against the error of sharing each k-th clip's features.

    python benchmarks/clip_every.py [--video ../shared/data/crema_d/1001_DFA_ANG_XX.flv] [--every 1 2 4 8]

The extractor runs with random weights (no weight file needed; its speed does not depend on the values, and the
error of sharing neighbouring clips' features is a property of the clips' overlap, measured here on a random
network because no Kinetics file is shipped), on one CREMA-D clip's detected faces, 112 px crops, 8-frame
causal clips. The face crops are cut once and shared by all rows, so the seconds are the network's. Error: per
face step, ``|f_k - f_1| / |f_1|`` (relative L2) and the cosine similarity to k = 1. Written to
``docs/benchmarks/clip_every.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from pages import publish

from avaffect.data.folder import recording_from_video
from avaffect.features.extractors import get_extractor
from avaffect.features.faces import load_face_crops
from avaffect.features.faces.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, default=REPO.parent / "shared" / "data" / "crema_d" / "1001_DFA_ANG_XX.flv")
    p.add_argument("--every", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "clip_every.md")
    args = p.parse_args(argv)
    rec = recording_from_video(args.video)
    t = load_face_crops(rec, FacePipeline())
    crops, mask = t.crops, t.crop_present
    every = sorted(set(args.every) | {1})
    feats, secs = {}, {}
    for k in every:
        ex = get_extractor("r2plus1d18_clip", allow_random=True, device="cpu", clip_every=k)
        ex.network()
        t0 = time.perf_counter()
        feats[k] = ex.features_from_crops(crops, mask)
        secs[k] = time.perf_counter() - t0
        print(f"clip_every {k}: {secs[k]:.1f} s", flush=True)
    face = mask.astype(bool)
    ref = feats[1][face]
    from avaffect.workflows.bench import machine

    info = machine()
    lines = ["# r2plus1d18_clip: every k-th clip, shared", "",
             f"`python benchmarks/clip_every.py --every {' '.join(map(str, every))}` on {info['cpu']} "
             f"({info['cores']} cores, torch {info['torch']}): `{args.video.name}`, {int(face.sum())} face steps of "
             f"{len(face)}, 112 px crops, 8-frame causal clips, random weights (see the script's docstring).", "",
             "| clip_every | seconds | speed vs k=1 | relative L2 error (mean / max) | cosine to k=1 (min) |",
             "|---:|---:|---:|---:|---:|"]
    for k in every:
        f = feats[k][face]
        err = np.linalg.norm(f - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)
        cos = (f * ref).sum(1) / np.maximum(np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
        lines.append(f"| {k} | {secs[k]:.1f} | {secs[1] / secs[k]:.2f}x | {err.mean():.3f} / {err.max():.3f} | "
                     f"{cos.min():.3f} |")
    return publish(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
