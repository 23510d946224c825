"""``avaffect predict`` as the user waits for it: the whole command, from process start to exit, for videos of
growing length, this code against an earlier commit, paired round by round.

    python benchmarks/predict_command.py --checkpoint demo_out/runs/rjca/model.safetensors \\
        [--before 683aaca] [--minutes 0.03 1 3 10] [--rounds 3] [--out docs/benchmarks/predict_command.md]

Videos: CREMA-D actor 1001's six clips looped (``../shared/data/crema_d``, ODbL; the clips' 480 x 360 frames centred
on a 640 x 360 black canvas, 30 fps H.264 + AAC; ``predict_speed.make_video``), so every frame holds a real face and a
real voice. Each run is the plain command ``avaffect predict CHECKPOINT VIDEO --out DIR`` under ``/usr/bin/time``
(wall seconds from start to exit, peak RSS, user + system CPU), in a fresh process. ``--before REF`` checks REF out
into a git worktree and runs the same command with that code first on ``PYTHONPATH`` (same interpreter, same
packages, same checkpoint); the two alternate within each round, so the ratio is taken on the same machine minutes.
Reported per row: the median (and min-max) of the rounds; the real-time factor the user sees (video seconds / whole
command seconds) and the one the command prints (video / its prediction stage); peak RSS; and this code's stages
from its JSON as busy time (decode work, detection, this thread's crop work, features, audio; ``wait`` = the main
thread blocked on frames or detections; ``cpu`` = the process's CPU seconds over the pass).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pages import publish
from predict_speed import CLIPS, make_video

REPO = Path(__file__).resolve().parents[1]
AVAFFECT = [sys.executable, "-c", "import sys; from avaffect.cli.main import main; sys.exit(main())"]


def worktree(ref: str, work: Path) -> Path:
    """``ref`` checked out (detached) under ``work``, made once."""
    path = work / f"before-{ref}"
    if not (path / "src").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref], check=True,
                       capture_output=True)
    return path


def timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd`` under /usr/bin/time: wall seconds, peak RSS (MB), CPU seconds."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rep:
        done = subprocess.run(["/usr/bin/time", "-o", rep.name, "-f", "%e %M %U %S", *cmd], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        wall, rss, user, sys_ = rep.read().split()[-4:]
    return {"wall": float(wall), "rss_mb": int(rss) / 1024, "cpu": float(user) + float(sys_)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--before", metavar="REF", help="also run this git ref's code, alternating")
    p.add_argument("--before-checkpoint", type=Path, help="the checkpoint that code runs (default --checkpoint): "
                   "a demo checkpoint made by that code, when its settings differ (e.g. the demo's face pipeline)")
    p.add_argument("--minutes", type=float, nargs="+", default=[0.03, 1, 3, 10])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path("/tmp/avaffect-predict-speed"))
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "predict_command.md")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    clips = sorted(CLIPS.glob("1001_*.flv"))
    if not clips:
        raise SystemExit(f"no CREMA-D clips in {CLIPS}")
    codes = {"this code": (REPO / "src", args.checkpoint)}
    if args.before:
        codes[f"before ({args.before})"] = (worktree(args.before, args.work) / "src",
                                            args.before_checkpoint or args.checkpoint)
    videos = {m: make_video(args.work / f"crema_loop_{m:g}min.mp4", m, clips) for m in args.minutes}
    runs: dict[tuple[float, str], list[dict]] = {}
    for r in range(args.rounds):
        for minutes, video in videos.items():
            for code, (src, checkpoint) in codes.items():
                out = args.work / "out" / code.split()[0]
                shutil.rmtree(out, ignore_errors=True)
                env = {**os.environ, "PYTHONPATH": str(src)}
                row = timed([*AVAFFECT, "predict", str(checkpoint), str(video), "--out", str(out)], env)
                summary = json.loads((out / f"{video.stem}.json").read_text())
                row.update(duration=summary["duration_s"], printed=summary["realtime_factor"],
                           face=summary["face_fraction"], stages=summary["timings_s"].get("stages", {}),
                           runtime=summary.get("runtime", "torch"))
                runs.setdefault((minutes, code), []).append(row)
                print(json.dumps({"round": r, "minutes": minutes, "code": code, **row}), flush=True)
    from avaffect.workflows.bench import machine

    info = machine()
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    lines = ["# predict as the user waits: the whole command", "",
             f"Code at {commit}. `python benchmarks/predict_command.py --checkpoint {args.checkpoint}"
             f"{' --before ' + args.before if args.before else ''}"
             f"{' --before-checkpoint ' + str(args.before_checkpoint) if args.before_checkpoint else ''}"
             f" --minutes {' '.join(f'{m:g}' for m in args.minutes)}"
             f" --rounds {args.rounds}` on {info['cpu']} ({info['cores']} cores); median (min-max) of "
             f"{args.rounds} rounds, the codes alternating within each round. Whole command = process start to exit "
             "(`/usr/bin/time`); x real time (user) = video seconds / whole command; x real time (printed) = what "
             "the command prints (video / its prediction stage).", "",
             "| video | code | whole command s | x real time (user) | x real time (printed) | peak RSS MB | CPU s | "
             "face | model run by |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for (_, code), rs in runs.items():
        wall = [x["wall"] for x in rs]
        dur = rs[0]["duration"]
        lines.append(f"| {dur:g} s | {code} | {statistics.median(wall):.2f} ({min(wall):.2f}-{max(wall):.2f}) | "
                     f"{dur / statistics.median(wall):.1f} | {statistics.median(x['printed'] for x in rs):.1f} | "
                     f"{statistics.median(x['rss_mb'] for x in rs):.0f} | "
                     f"{statistics.median(x['cpu'] for x in rs):.1f} | {rs[0]['face']:.0%} | {rs[0]['runtime']} |")
    if args.before:
        lines += ["", "Paired ratio (before / this code, whole command, per round): "
                  + "; ".join(f"{m:g} min: " + ", ".join(
                      f"{b['wall'] / a['wall']:.2f}x" for a, b in zip(runs[(m, 'this code')],
                                                                      runs[(m, f'before ({args.before})')]))
                              for m in args.minutes)]
    lines += ["", "This code's stages (seconds, median round; busy time: work done, not waiting):", "",
              "| video | stages |", "|---|---|"]
    for minutes in args.minutes:
        rs = runs[(minutes, "this code")]
        keys = list(rs[0]["stages"])
        st = ", ".join(f"{k} {statistics.median(x['stages'].get(k, 0.0) for x in rs):.2f}" for k in keys)
        lines.append(f"| {rs[0]['duration']:g} s | {st} |")
    sizes = sorted(args.minutes)
    lo, hi = next((m for m in sizes if m >= 1), sizes[0]), sizes[-1]  # a clip of seconds fills no buffer yet
    for code in codes:
        a, b = runs[(lo, code)], runs[(hi, code)]
        lines.append("")
        lines.append(f"- {code}: peak RSS at {hi:g} min / at {lo:g} min = "
                     f"{statistics.median(x['rss_mb'] for x in b) / statistics.median(x['rss_mb'] for x in a):.2f}")
    rows = [{"minutes": m, "code": c, "runs": rs} for (m, c), rs in runs.items()]
    return publish(args.out, "\n".join(lines) + "\n", rows)


if __name__ == "__main__":
    raise SystemExit(main())
