"""``predict`` on long videos: real-time factor, peak memory and seconds per stage, streaming vs whole-video path.

    python benchmarks/predict_speed.py --checkpoint demo_out/runs/rjca/model.safetensors [--minutes 1 3 10]
    python benchmarks/predict_speed.py --authors rja_icassp23 --minutes 1 3 --out docs/benchmarks/predict_authors.md

The videos are made by looping the CREMA-D clips of one actor (``../shared/data/crema_d``, ODbL; the clips'
480 x 360 frames centred on a 640 x 360 black canvas, 30 fps H.264 + AAC), so every frame holds a real face and
a real voice. Each (video, path) runs ``avaffect predict`` in a child process of its own, so that its peak RSS
(``ru_maxrss``) is its own; the two paths alternate per video. Written to ``docs/benchmarks/predict_speed.md``
(and ``.json``). Rows per video: the whole-video path, the streaming path, and the streaming path with the face
detector on every ``--detect-every``-th frame only (``predict --detect-every``). With ``--overlay`` every row also
writes the overlay video (``predict --overlay``): the whole-video path by a second decode, the streaming paths in
their own pass (``--out docs/benchmarks/predict_overlay.md`` keeps both tables). ``--authors VARIANT`` measures the
authors'-model path instead (``convert-official``'s preprocessing: one R3D-18 clip of 8 frames per step, its
512 x 7 x 7 map, the RJA spectrogram ResNet-18): a checkpoint at the released sizes and its two backbone files are
made with random weights (speed and memory do not depend on the values), and the third row is left out (that path
has no ``detect_every``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from pages import publish

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "crema_d"
WIDTH, HEIGHT, FPS, RATE = 640, 360, 30, 44100


def _clip_media(clips: list[Path]) -> tuple[list[np.ndarray], np.ndarray]:
    """Every frame of ``clips`` centred on the canvas, and their audio cut or padded to each clip's frames."""
    from avaffect.media import iter_video_frames, read_audio

    frames, audio = [], []
    for clip in clips:
        n = 0
        for _, rgb in iter_video_frames(clip):
            canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            h, w = min(rgb.shape[0], HEIGHT), min(rgb.shape[1], WIDTH)
            y, x = (HEIGHT - h) // 2, (WIDTH - w) // 2
            canvas[y:y + h, x:x + w] = rgb[:h, :w]
            frames.append(canvas)
            n += 1
        wav = read_audio(clip, RATE)
        target = int(round(n / FPS * RATE))
        audio.append(np.pad(wav[:target], (0, max(0, target - len(wav)))))
    return frames, np.concatenate(audio)


def make_video(path: Path, minutes: float, clips: list[Path]) -> Path:
    """A ``minutes``-long 640 x 360 30 fps video looping ``clips`` (written once, atomically)."""
    if path.is_file():
        return path
    frames, audio = _clip_media(clips)
    n = int(round(minutes * 60 * FPS))
    tmp = path.with_name(path.stem + ".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "23"})
        vs.width, vs.height, vs.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        aus = out.add_stream("aac", rate=RATE)
        aus.layout = "mono"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        total = int(round(n / FPS * RATE))
        loop = np.resize(audio, total).astype(np.float32)
        for lo in range(0, total, 1024):
            chunk = loop[lo:lo + 1024][None, :]
            af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = RATE, lo, Fraction(1, RATE)
            out.mux(aus.encode(af))
        out.mux(aus.encode(None))
    tmp.replace(path)
    return path


def _paths(detect_every: int) -> dict[str, tuple[bool, int | None]]:
    """Row label → (stream, detect_every override); ``detect_every`` 0: no third row."""
    rows = {"whole video": (False, None), "streaming": (True, None)}
    if detect_every:
        rows[f"streaming, detect_every {detect_every}"] = (True, detect_every)
    return rows


def authors_checkpoint(variant: str, work: Path) -> Path:
    """A converted authors' model at the released sizes (D = 512, 49 regions, L = 16, H = 128), random weights,
    with random backbone files beside it (made once)."""
    out = work / f"authors_{variant}"
    if (out / "model.safetensors").is_file():
        return out / "model.safetensors"
    import torch

    from avaffect.features.extractors import get_extractor
    from avaffect.models.official import CAMSizes, build_official, convert_official

    raw = work / f"authors_{variant}_raw"
    raw.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_official(variant, CAMSizes(dim=512, head_hidden=128, length=16, iterations=2))
    torch.save({"state_dict": model.state_dict()}, raw / "model.pth.tar")
    for name, ex in (("video", get_extractor("r2plus1d18_clip", arch="r3d_18", allow_random=True)),
                     ("audio", get_extractor("spec_resnet18", allow_random=True))):
        torch.save(ex.network().state_dict(), raw / f"{name}.pth")
    return convert_official(raw / "model.pth.tar", variant, out, audio_weights=raw / "audio.pth",
                            video_weights=raw / "video.pth")


def child(checkpoint: Path, video: Path, stream: bool, detect_every: int | None, overlay: bool = False) -> None:
    from avaffect.files import output_path
    from avaffect.logs import quiet_third_party_logs
    from avaffect.workflows.predict import Predictor, PredictorOptions, write_outputs

    quiet_third_party_logs()
    t0 = time.perf_counter()
    predictor = Predictor(checkpoint, PredictorOptions(stream=stream, detect_every=detect_every))
    out, name = Path("/tmp/avaffect-predict-speed-out"), video.stem + ("-s" if stream else "-w")
    result = predictor(video, None, output_path(out, name, "_overlay.mp4") if overlay else None)
    write_outputs(result, out, name, overlay=overlay)
    s = result.summary.as_json()
    wall = time.perf_counter() - t0
    if overlay:  # the overlay is part of the work (a second decode, or inside the streaming pass): count it all
        s["realtime_factor"] = round(s["duration_s"] / wall, 2)
        s["timings_s"]["total"] = round(wall, 3)
    print(json.dumps({"wall_s": wall, "predict_s": s["timings_s"]["total"],
                      "realtime_factor": s["realtime_factor"], "stages": s["timings_s"]["stages"],
                      "model_s": s["timings_s"]["model"], "frames": s["frames"],
                      "face_fraction": s["face_fraction"], "streamed": s["streamed"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


OVERLAY_NOTE = ("With `--overlay` the real-time factor counts the whole call, prediction and overlay together: the "
                "whole-video path decodes the video a second time to draw it, the streaming paths draw it from "
                "their own decode (frames held as JPEG until final; in the table the drawing and H.264 encoding "
                "sit in `crop`).")


def render(rows: list[dict], args) -> str:
    from avaffect.workflows.bench import machine

    info = machine()
    title = "# predict on long videos: streaming vs whole-video path" + (", with the overlay video" if args.overlay
                                                                         else "")
    flag = (" --overlay" if args.overlay else "") + (f" --authors {args.authors}" if args.authors else "")
    lines = [title, "",
             f"`python benchmarks/predict_speed.py --minutes {' '.join(map(str, args.minutes))}{flag}` on "
             f"{info['cpu']} ({info['cores']} cores, torch {info['torch']}), checkpoint `{args.checkpoint}`. Videos: "
             "CREMA-D actor 1001's six clips looped, 640 x 360, 30 fps, a face in every frame. One child process per "
             "row; real-time factor = video seconds / predict seconds (model load excluded, output writing "
             "included in wall). Stages (seconds; the streaming path's are busy time, `StreamStats`): audio "
             "features; decode (its own thread: work, not waiting) and decode_cpu; detect (the detector, on "
             "whichever thread) and detect_cpu; crop (the main thread's own work: cuts, tracking, alignment, "
             "cutting); features; wait_frames / wait_detect (the main thread blocked); main_cpu (the main thread's "
             "CPU seconds over the pass, the model's work included); cpu (the process's CPU "
             "seconds over the pass, every thread's); "
             "video = the pass's wall time; model. The whole command as the user waits for it: "
             "`predict_command.md`."
             + (f" Model: the authors' {args.authors} path as `convert-official` records it (an R3D-18 clip of 8 "
                "frames per step, its 512 x 7 x 7 map; the RJA spectrogram ResNet-18), at the released sizes with "
                "random weights (made by the script: speed and memory do not depend on the values)."
                if args.authors else ""), "",
             "| video | path | x real time | predict s | peak RSS MB | face | stages (s) |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        st = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()) + f", model {r['model_s']:.1f}"
        lines.append(f"| {r['minutes']} min | {r['path']} | {r['realtime_factor']} | {r['predict_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['face_fraction']:.0%} | {st} |")
    lines.append("")
    if args.overlay:
        lines += [OVERLAY_NOTE, ""]
    by = {(r["path"], r["minutes"]): r for r in rows}
    lo, hi = min(args.minutes), max(args.minutes)
    for path in _paths(args.detect_every):
        if (path, lo) in by and (path, hi) in by:
            ratio = by[(path, hi)]["peak_rss_mb"] / by[(path, lo)]["peak_rss_mb"]
            lines.append(f"- {path}: peak RSS at {hi} min / at {lo} min = {ratio:.2f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--authors", metavar="VARIANT", help="measure the authors'-model path (random weights)")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    p.add_argument("--work", type=Path, default=Path("/tmp/avaffect-predict-speed"))
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "predict_speed.md")
    p.add_argument("--detect-every", type=int, default=5, help="the third row's face detection interval (0: none)")
    p.add_argument("--overlay", action="store_true", help="also write the overlay video in every row")
    p.add_argument("--child", nargs=2, metavar=("VIDEO", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.authors:
        args.detect_every = 0
        if not args.child:
            args.checkpoint = authors_checkpoint(args.authors, args.work)
    if args.checkpoint is None:
        p.error("give --checkpoint (or --authors VARIANT)")
    paths = _paths(args.detect_every)
    if args.child:
        child(args.checkpoint, Path(args.child[0]), *paths[args.child[1]], overlay=args.overlay)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    clips = sorted(CLIPS.glob("1001_*.flv"))
    if not clips:
        raise SystemExit(f"no CREMA-D clips in {CLIPS}")
    rows = []
    for minutes in args.minutes:
        video = make_video(args.work / f"crema_loop_{minutes:g}min.mp4", minutes, clips)
        for path in paths:
            out = subprocess.run([sys.executable, __file__, "--checkpoint", str(args.checkpoint), "--child",
                                  str(video), path, "--detect-every", str(args.detect_every)]
                                 + (["--overlay"] if args.overlay else []) + (["--authors", args.authors]
                                                                               if args.authors else []),
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{video} ({path}) failed:\n{out.stderr[-3000:]}")
            row = {"minutes": minutes, "path": path, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    text = render(rows, args)
    return publish(args.out, text, rows)


if __name__ == "__main__":
    raise SystemExit(main())
