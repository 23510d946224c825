"""``bench``: speed of decoding, faces, extractors and prediction on this machine."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_bench(args) -> int:
    from avaffect.cli.common import no_video_error
    from avaffect.cli.predict_cmds import expand_inputs
    from avaffect.workflows.bench import bench_media, bench_predict, format_table, machine

    videos = expand_inputs(args.videos)
    if not videos:
        raise no_video_error(args.videos)
    rows = bench_media(videos, args.extractors, args.device) if args.what == "media" else \
        bench_predict(args.checkpoint, videos, "cuda" if args.device == "cuda" else "cpu")
    info = machine()
    print(format_table(rows, info))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure speed on this machine: media/faces/extractors, or predict")
    p.add_argument("what", choices=["media", "predict"])
    p.add_argument("videos", type=Path, nargs="+", metavar="VIDEO_OR_FOLDER")
    p.add_argument("--checkpoint", type=Path, help="model.safetensors (bench predict)")
    p.add_argument("--extractors", nargs="+", default=None, help="default: every registered extractor")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    p.set_defaults(func=cmd_bench)
