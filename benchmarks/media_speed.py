"""Frames per second of decoding, face detection and every extractor, and predict's real-time factor.

    python benchmarks/media_speed.py --videos ../shared/data/crema_d --out docs/benchmarks/media_speed.md

Runs the same measurements as ``avaffect bench media`` / ``avaffect bench predict`` and writes them, with
the machine they came from, as Markdown (and JSON beside it). Networks run with random weights when no
weight file is installed: their speed does not depend on the values.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pages import publish

from avaffect.cli.predict_cmds import expand_inputs
from avaffect.logs import quiet_third_party_logs
from avaffect.workflows.bench import bench_media, bench_predict, format_table, machine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, nargs="+", default=[Path("../shared/data/crema_d")])
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks/media_speed.md"))
    p.add_argument("--checkpoint", type=Path, default=None, help="also measure predict with this checkpoint")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--extractors", nargs="+", default=None)
    args = p.parse_args(argv)
    quiet_third_party_logs()
    videos = expand_inputs(args.videos)
    rows = bench_media(videos, args.extractors, args.device)
    if args.checkpoint:
        rows += bench_predict(args.checkpoint, videos, "cuda" if args.device == "cuda" else "cpu")
    info = machine()
    text = (f"# Media, faces and extractor speed\n\n{len(videos)} videos "
            f"({', '.join(v.name for v in videos[:3])}{', …' if len(videos) > 3 else ''}).\n\n"
            + format_table(rows, info) + "\n")
    return publish(args.out, text, {"machine": info, "rows": rows}, indent=2)


if __name__ == "__main__":
    raise SystemExit(main())
