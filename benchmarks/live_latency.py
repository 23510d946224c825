"""``avaffect live``: latency as the user sees it, dropped frames, CPU, and what provisional values cost in accuracy.

    python benchmarks/live_latency.py --checkpoint demo_out/runs/rjca/model.safetensors [--seconds 60]

Part 1, **latency**: a video (CREMA-D clips of one actor looped to ``--seconds``, 640 x 360, 30 fps, a real face and
voice in every frame: ``predict_speed.make_video``) is written at real-time pace, as a live Matroska stream, into
the stdin of ``avaffect live MODEL -`` (:func:`avaffect.livemedia.stream_file`; a pipe is what a FIFO or
``ffmpeg ... -f matroska -`` gives). Each JSON line is time-stamped when this script reads it; a step's
**latency** is that time minus its capture time (when the writer released its frame: the stream's start plus
the step's time), so it counts the pipe, the decoder, the face pipeline, the windows and the output. Per row:
median / p95 / max of the final values' latency and of the provisional values', frames dropped, and the child's
CPU seconds per second of stream. Rows: the demo model with final values only and with ``--max-latency`` 0.5 / 1,
the demo model detecting on every frame on one core shared with two CPU-bound processes (the machine cannot keep
up: frames are dropped by the ``--max-lag`` rule and the lag stays bounded), and a face-only model
(``--face-model``: an EfficientNet-B0 in EmotiEffLib's layout with random weights, the compute of
``enet_b0_8_va_mtl``, which is not downloadable here).

Part 2, **accuracy at a latency**: on the synthetic validation videos (``--data``, the demo's dataset), the
provisional value a step gets ``k`` steps after it (the stream then holds ``k`` more steps: what
``--max-latency k/fps`` sends, processing time aside) against the final value (= offline ``predict``), as CCC
and mean absolute difference, for several latencies. Computed in-process with the same
:class:`~avaffect.evaluation.streaming.LiveWindows` the command uses (one model call per step).

Written to ``docs/benchmarks/live_latency.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from pages import publish
from predict_speed import CLIPS, make_video

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "avaffect.cli.main"]


def _stand_in_face_model(path: Path) -> Path:
    """EfficientNet-B0 (torchvision, random weights) with a 10-column head, exported to ONNX: the architecture and
    input (224 x 224) of EmotiEffLib's ``enet_b0_8_va_mtl``, so its cost, not its values."""
    if path.exists():
        return path
    import torch
    from torchvision.models import efficientnet_b0

    net = efficientnet_b0(weights=None, num_classes=10).eval()
    torch.onnx.export(net, torch.zeros(1, 3, 224, 224), str(path), input_names=["input"], output_names=["head"],
                      dynamic_axes={"input": {0: "N"}, "head": {0: "N"}}, opset_version=17, dynamo=False)
    return path


def _hog() -> None:
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2147483648


def run_live(model_args: list[str], video: Path, extra: list[str], hogs: int = 0) -> dict:
    """One live run fed at real-time pace (module docstring): latencies, drops, CPU. ``hogs``: that many CPU-bound
    processes share one core with the live process (pinned there with it): it gets about 1 / (hogs + 1) of a
    core, a machine that cannot keep up."""
    from avaffect.livemedia import stream_file

    pin = (lambda: os.sched_setaffinity(0, {0})) if hogs else None
    procs = [subprocess.Popen([sys.executable, "-c", "import live_latency as m; m._hog()"],
                              cwd=Path(__file__).parent, preexec_fn=pin) for _ in range(hogs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([*CLI, "live", *model_args, "-", *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0, preexec_fn=pin)
    started: list[float] = []

    def write() -> None:
        try:
            stream_file(video, proc.stdin, on_start=started.append)
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    rows = []
    for raw in proc.stdout:
        rows.append((time.monotonic(), json.loads(raw)))
    proc.wait()
    stderr = proc.stderr.read().decode()
    for p in procs:
        p.kill()
        p.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"live failed: {stderr}")
    summary = rows[-1][1]["summary"]
    start = started[0]
    final = [t - (start + s["time"]) for t, s in rows[:-1] if not s["provisional"]]
    prov = [t - (start + s["time"]) for t, s in rows[:-1] if s["provisional"]]

    def stats(v: list[float]) -> dict:
        return {"median": float(np.median(v)), "p95": float(np.percentile(v, 95)), "max": float(np.max(v)),
                "count": len(v)} if v else {}

    third = len(final) // 3
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if hogs:
        cpu = float("nan")  # the hogs' CPU is counted among the children too
    return {"final": stats(final), "provisional": stats(prov), "steps": summary["steps"],
            "dropped": summary["frames_dropped"], "duration_s": summary["duration_s"],
            "cpu_per_s": cpu / max(summary["duration_s"], 1e-9),
            "final_first_third_median": float(np.median(final[:third])) if third else None,
            "final_last_third_median": float(np.median(final[-third:])) if third else None,
            "ended": summary["source_stats"]["ended"]}


def accuracy_at_latencies(checkpoint: Path, data: Path, latencies_s: list[float]) -> dict:
    """Part 2 of the module docstring."""
    from avaffect.data.folder import recording_from_video
    from avaffect.evaluation.metrics import ccc
    from avaffect.evaluation.streaming import LiveWindows
    from avaffect.features.face_stream import iter_face_feature_chunks
    from avaffect.workflows.predict import load_predictor

    pred = load_predictor(checkpoint)
    names = sorted(p.stem for p in (data / "annotations" / "VA_Estimation_Challenge" / "Validation_Set").glob("*.txt"))
    got: dict[float, list[np.ndarray]] = {lat: [] for lat in latencies_s}
    finals = []
    for name in names:
        rec = recording_from_video(next((data / "videos").glob(f"{name}.*")))
        fps = rec.fps
        audio = pred.audio_ex.extract(rec)
        chunks = list(iter_face_feature_chunks(rec, pred.video_ex, chunk=1))
        n = rec.num_steps
        ks = {lat: int(round(lat * fps)) for lat in latencies_s}
        values = {lat: np.full((n, 2), np.nan) for lat in latencies_s}
        final = np.full((n, 2), np.nan)
        live = LiveWindows(pred.run, pred.spec.window, pred.spec.hop)
        for c in chunks:  # one step at a time: after step m arrives, the value every step gets at each latency
            live.add_video(c)
            live.add_audio(c.lo, c.hi, audio[c.lo:c.hi])
            out = live.advance()
            if out is not None:
                final[out[0]:out[0] + len(out[1])] = out[1]
            m = live.steps_in
            p = live.provisional()
            for lat, k in ks.items():
                s = m - 1 - k  # the step whose latency is k steps now
                if s < 0 or not np.isnan(values[lat][s, 0]):
                    continue
                if p is not None and p[0] <= s:
                    values[lat][s] = p[1][s - p[0]]
                else:  # already final at this latency
                    values[lat][s] = final[s]
        out = live.finish()
        if out is not None:
            final[out[0]:out[0] + len(out[1])] = out[1]
        for lat in latencies_s:  # steps within k of the end: the stream ended first, their value is final
            v = values[lat]
            v[np.isnan(v[:, 0])] = final[np.isnan(v[:, 0])]
            got[lat].append(v)
        finals.append(final)
    final = np.concatenate(finals)
    result = {"videos": names, "steps": int(len(final)), "window": pred.spec.window, "hop": pred.spec.hop, "rows": []}
    for lat in latencies_s:
        v = np.concatenate(got[lat])
        result["rows"].append({"latency_s": lat, "ccc_valence": float(ccc(v[:, 0], final[:, 0])),
                               "ccc_arousal": float(ccc(v[:, 1], final[:, 1])),
                               "mad_valence": float(np.abs(v[:, 0] - final[:, 0]).mean()),
                               "mad_arousal": float(np.abs(v[:, 1] - final[:, 1]).mean())})
    return result


def _fmt(d: dict, key: str) -> str:
    return f"{d[key]:.2f}" if d else "–"


def render(res: dict) -> str:
    lines = ["# `avaffect live`: latency, dropped frames, CPU; accuracy of provisional values", "",
             f"Machine: {res['machine']}. Generated by `python benchmarks/live_latency.py` ({res['date']}).", "",
             f"## Latency: a {res['seconds']:.0f}-s 640x360 30-fps video (CREMA-D loop) written at real-time pace "
             "into `avaffect live MODEL -`", "",
             "Latency: from the moment the writer released a frame to the moment its JSON line was read (so the "
             "pipe, the decoder, the face pipeline, the windows and the output are in it). CPU: the live "
             "process's CPU seconds per second of stream (2.0 = both cores).", "",
             "| model | options | steps | dropped | final: median / p95 / max (s) "
             "| provisional: median / p95 / max (s) | final, first third → last third (median s) | CPU s per s |",
             "|---|---|---:|---:|---|---|---|---:|"]
    for r in res["runs"]:
        f, p = r["final"], r["provisional"]
        lines.append(f"| {r['model']} | {r['options']} | {r['steps']} | {r['dropped']} | {_fmt(f, 'median')} / "
                     f"{_fmt(f, 'p95')} / {_fmt(f, 'max')} | {_fmt(p, 'median')} / {_fmt(p, 'p95')} / "
                     f"{_fmt(p, 'max')} | {r['final_first_third_median']:.2f} → {r['final_last_third_median']:.2f} | "
                     + ("–" if r["cpu_per_s"] != r["cpu_per_s"] else f"{r['cpu_per_s']:.2f}") + " |")
    acc = res["accuracy"]
    lines += ["", "What this says: a final value comes about the model's window after its frame (the demo model: "
              f"{acc['window']} steps = {acc['window'] / 30:.0f} s at 30 fps, hop {acc['hop']}), the price of "
              "equalling offline `predict`; `--max-latency` sends a provisional value at about the asked latency "
              "plus the face pipeline's few frames. With the machine overloaded, frames are dropped by the "
              "`--max-lag` rule (2 s) and the latency stays bounded instead of growing with the stream.", "",
              f"## Accuracy of provisional values: synthetic validation set ({len(acc['videos'])} videos, "
              f"{acc['steps']} steps), demo model", "",
              "The value a step is sent with `k` steps after it (what `--max-latency k/fps` gives, processing time "
              "aside) against its final value (equal to offline `predict`): CCC and mean absolute difference. At "
              "the window's length the values are final (CCC 1).", "",
              "| latency (s) | CCC valence | CCC arousal | mean abs diff valence | mean abs diff arousal |",
              "|---:|---:|---:|---:|---:|"]
    for r in acc["rows"]:
        lines.append(f"| {r['latency_s']:g} | {r['ccc_valence']:.3f} | {r['ccc_arousal']:.3f} | "
                     f"{r['mad_valence']:.4f} | {r['mad_arousal']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="the synthetic dataset (default: data/ beside the run folder)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/avaffect-live-latency"))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "live_latency.md")
    ap.add_argument("--machine", default="this workplace's CPU machine (2 cores)")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    data = args.data or args.checkpoint.resolve().parents[2] / "data"
    video = args.cache / f"crema_loop_{args.seconds:g}s.mp4"
    if not video.exists():
        make_video(video, args.seconds / 60.0, sorted(CLIPS.glob("1001_*.flv")))
    face_model = _stand_in_face_model(args.cache / "enet_b0_standin.onnx")
    ckpt = str(args.checkpoint)
    plan = [("demo rjca", [ckpt], [], "final only", 0),
            ("demo rjca", [ckpt], ["--max-latency", "0.5"], "--max-latency 0.5", 0),
            ("demo rjca", [ckpt], ["--max-latency", "1"], "--max-latency 1", 0),
            ("demo rjca", [ckpt], ["--detect-every", "1"], "--detect-every 1, on one core shared with 2 CPU hogs", 2),
            ("face-only (EfficientNet-B0 stand-in)", ["--face-model", str(face_model)], [], "final only", 0)]
    runs = []
    for model, model_args, extra, options, hogs in plan:
        print(f"{model}, {options} ...", flush=True)
        r = run_live(model_args, video, extra, hogs)
        runs.append({"model": model, "options": options, **r})
        print(json.dumps(runs[-1]), flush=True)
    print("accuracy at latencies ...", flush=True)
    acc = accuracy_at_latencies(args.checkpoint, data, [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    res = {"machine": args.machine, "date": time.strftime("%Y-%m-%d"), "seconds": args.seconds, "runs": runs,
           "accuracy": acc, "cpus": os.cpu_count()}
    publish(args.out, render(res), res)
    print(render(res))


if __name__ == "__main__":
    main()
