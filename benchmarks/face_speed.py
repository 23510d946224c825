"""What the face pipeline's speed settings cost in faces found: today's defaults against the settings before, side
by side in one run, on the same decoded frames.

    python benchmarks/face_speed.py [--rounds 3] [--out docs/benchmarks/face_speed.md]

Sets: CREMA-D actor 1001's six clips (``../shared/data/crema_d``, ODbL), three videos of the built-in synthetic set
(cartoon faces), and a moving face (a CREMA-D clip pasted on a 640 x 360 canvas, its aspect kept, drifting across
it and growing from 180 to 340 px high; ``tests/people_videos.py``). Every set's frames are decoded once per colour
conversion (swscale's rgb24, the one before; :func:`avaffect.media.frame_rgb`, today's), then each row runs the
single-face pipeline (:func:`avaffect.features.faces.crops.iter_face_steps`, Haar, ``detect_every`` 5 as the demo
checkpoint records) on them, on one thread (no detection ahead, OpenCV's own threads off, so that
``time.thread_time`` is all of its CPU time); rows alternate round by round. Per row: the busy time of the pipeline
(decoding excluded) per frame, of which the detector's (wall time inside its calls); faces found; against the row
*before* (the settings until 2026-12, swscale frames): frames whose face flag differs and the IoU of the boxes on
frames both found; against the detector on every frame at the settings before (k = 1): the same. "Eyes found": the
share of detections whose eye line was measured (what the alignment levels the crop with).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
from pages import publish

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import people_videos as pv  # noqa: E402
from face_tracking import iou  # noqa: E402  (row-wise IoU, one copy)

from avaffect.features.faces.crops import iter_face_steps  # noqa: E402
from avaffect.features.faces.pipeline import FacePipeline, face_pipeline  # noqa: E402
from avaffect.media import frame_rgb, upright  # noqa: E402

CLIPS = REPO.parent / "shared" / "data" / "crema_d"
BEFORE = {"roi_min": 0.5, "roi_max": 2.0}  # and the pipeline's roi_pad 1
# row -> (haar params, conversion, detect_every, other pipeline settings)
ROWS = {
    "reference: k = 1, settings before": (BEFORE, "swscale", 1, {}),
    "before (until 2026-12)": (BEFORE, "swscale", 5, {}),
    "before, frame_rgb frames": (BEFORE, "frame_rgb", 5, {}),
    "today's defaults": ({}, "frame_rgb", 5, {}),
    "eyes searched on a 90 px face": ({"eye_width": 90}, "frame_rgb", 5, {}),
    "eyes on every 2nd detection (eyes_every 2)": ({}, "frame_rgb", 5, {"eyes_every": 2}),
}
DEFAULTS = "today's defaults"


def decode(path: Path, conversion: str) -> list[tuple[float, np.ndarray]]:
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            rgb = f.to_ndarray(format="rgb24") if conversion == "swscale" else frame_rgb(f)
            out.append((float(f.pts * s.time_base), upright(rgb, f.rotation)))
    return out


def synthetic_videos(work: Path, n: int = 3) -> list[Path]:
    from avaffect.data.synth import SynthConfig, write_synthetic_dataset

    write_synthetic_dataset(work / "synth", SynthConfig(n_train=n, n_val=0, duration_s=3.0), progress=False)
    return sorted((work / "synth").rglob("*.mp4"))[:n]


def moving_face(work: Path, n: int = 300) -> list[Path]:
    def scene(i: int) -> list[pv.Placement]:
        h = int(180 + 160 * i / n)
        w = h * 4 // 3
        return [(0, int((640 - w) * i / n), int((360 - h) * 0.5 * (1 + np.sin(i / 40))), w, h)]

    out = work / "moving_face.mp4"
    pv.compose(out, [CLIPS / "1001_DFA_HAP_XX.flv"], scene, n)
    return [out]


def run_pipeline(frames: list[tuple[float, np.ndarray]], pipe: FacePipeline) -> dict:
    """The single-face pipeline on ``frames``, all of it on this thread (its CPU time is the pipeline's): busy and
    detector seconds, boxes and levelling angles per frame (NaN without a face), the pipeline's counters."""
    st: dict = {}
    t0 = time.thread_time()
    steps = list(iter_face_steps(frames, pipe, stats=st, ahead=False))
    busy = time.thread_time() - t0
    boxes = np.array([s.box if s.box is not None else [np.nan] * 4 for s in steps], np.float64)
    angles = np.array([s.angle if s.box is not None else np.nan for s in steps], np.float64)
    return {"busy": busy, "detect": st["detect_seconds"], "boxes": boxes, "angles": angles, "stats": st}


def run(frames: list[tuple[float, np.ndarray]], haar: dict, every: int, other: dict) -> dict:
    pipe = face_pipeline(detector_params=haar, detect_every=every, **({"roi_pad": 1.0} if haar == BEFORE else {}),
                         **other)
    out = run_pipeline(frames, pipe)
    return {**out, "eyes": out["stats"]["eyes_found"], "searches": out["stats"]["eye_searches"]}


def compare(boxes: np.ndarray, ref: np.ndarray) -> tuple[int, float, float]:
    """Frames whose face flag differs, mean and 5th-percentile IoU where both found one."""
    fa, fb = np.isfinite(boxes[:, 0]), np.isfinite(ref[:, 0])
    both = fa & fb
    v = iou(boxes[both], ref[both]) if both.any() else np.array([np.nan])
    return int((fa != fb).sum()), float(np.mean(v)), float(np.percentile(v, 5))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "face_speed.md")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    work = Path(tempfile.mkdtemp(prefix="avaffect_face_speed_"))
    sets = {"CREMA-D (6)": sorted(CLIPS.glob("1001_*.flv")), "synthetic (3)": synthetic_videos(work),
            "moving face (1)": moving_face(work)}
    table = []
    for set_name, videos in sets.items():
        decoded = {conv: [decode(v, conv) for v in videos] for conv in ("swscale", "frame_rgb")}
        n = sum(len(f) for f in decoded["swscale"])
        busy: dict[str, list[float]] = {r: [] for r in ROWS}
        det: dict[str, list[float]] = {r: [] for r in ROWS}
        boxes: dict[str, np.ndarray] = {}
        angles: dict[str, np.ndarray] = {}
        outs_of: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            for row, (haar, conv, every, other) in ROWS.items():
                outs = outs_of[row] = [run(frames, haar, every, other) for frames in decoded[conv]]
                busy[row].append(sum(o["busy"] for o in outs))
                det[row].append(sum(o["detect"] for o in outs))
                boxes[row] = np.concatenate([o["boxes"] for o in outs])
                angles[row] = np.concatenate([o["angles"] for o in outs])
        ref, before = boxes["reference: k = 1, settings before"], boxes["before (until 2026-12)"]
        base = statistics.median(busy["before (until 2026-12)"])
        for row in ROWS:
            b = boxes[row]
            d_before, m_before, p_before = compare(b, before)
            d_ref, m_ref, p_ref = compare(b, ref)
            turn = np.abs(angles[row] - angles[DEFAULTS])
            turn = turn[np.isfinite(turn)]
            searches = sum(o["searches"] for o in outs_of[row])
            table.append({"set": set_name, "frames": n, "row": row,
                          "busy_ms": 1000 * statistics.median(busy[row]) / n,
                          "detect_ms": 1000 * statistics.median(det[row]) / n,
                          "speed_vs_before": base / statistics.median(busy[row]),
                          "found": float(np.isfinite(b[:, 0]).mean()),
                          "eyes": sum(o["eyes"] for o in outs_of[row]) / max(1, searches),
                          "searches": searches,
                          "angle_vs_defaults": (float(np.mean(turn)), float(np.percentile(turn, 95))) if len(turn)
                          else (float("nan"), float("nan")),
                          "flag_diff_before": d_before, "iou_before": (m_before, p_before),
                          "flag_diff_ref": d_ref, "iou_ref": (m_ref, p_ref)})
            print(table[-1], flush=True)
    from avaffect.workflows.bench import machine

    info = machine()
    lines = ["# Face pipeline speed settings: cost against faces found", "",
             f"`python benchmarks/face_speed.py --rounds {args.rounds}` on {info['cpu']} ({info['cores']} cores); "
             f"median of {args.rounds} rounds, rows alternating. Busy = CPU time of the pipeline's thread "
             "(decoding excluded); *before* = the Haar tracking settings until 2026-12 "
             f"({', '.join(f'{k} {v}' for k, v in BEFORE.items())}) on swscale's frames; k = 1 = the detector on "
             "every frame at those settings. Face flag differences count frames. Eye searches: how many ran (the "
             "face followed's only), eyes found: the share of them that found both eyes; angle vs today's: the "
             "crop's levelling angle against today's defaults on the same frames, mean / 95th percentile of the "
             "absolute difference (degrees).", "",
             "| set | frames | row | busy ms/frame | detect ms/frame | speed vs before | face found | eye searches | "
             "eyes found | angle vs today's (mean / p95, deg) | flag differs vs before | IoU vs before (mean / 5th "
             "pct) | flag differs vs k = 1 | IoU vs k = 1 (mean / 5th pct) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---|"]
    for r in table:
        lines.append(f"| {r['set']} | {r['frames']} | {r['row']} | {r['busy_ms']:.2f} | {r['detect_ms']:.2f} | "
                     f"{r['speed_vs_before']:.2f}x | {r['found']:.1%} | {r['searches']} | {r['eyes']:.0%} | "
                     f"{r['angle_vs_defaults'][0]:.2f} / {r['angle_vs_defaults'][1]:.2f} | {r['flag_diff_before']} | "
                     f"{r['iou_before'][0]:.3f} / {r['iou_before'][1]:.3f} | {r['flag_diff_ref']} | "
                     f"{r['iou_ref'][0]:.3f} / {r['iou_ref'][1]:.3f} |")
    return publish(args.out, "\n".join(lines) + "\n", table)


if __name__ == "__main__":
    raise SystemExit(main())
