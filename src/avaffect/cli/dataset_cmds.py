"""Dataset and challenge commands: ``prepare`` (check a raw dataset) and ``submit`` (challenge files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_prepare(args) -> int:
    from avaffect.data.prepare import prepare_dataset, summary_table

    report = prepare_dataset(args.dataset, args.root, length_tolerance=args.length_tolerance,
                             check_media=not args.no_media)
    print(report.format(max_problems=args.max_problems))
    if args.json:
        from avaffect.files import write_json

        write_json(args.json, {"dataset": args.dataset, "root": str(args.root), "ok": report.ok,
                               "problems": [{"severity": p.severity, "path": p.path, "message": p.message}
                                            for p in report.problems],
                               "summary": summary_table(report)})
    return 0 if report.ok else 1


def cmd_submit(args) -> int:
    from avaffect.evaluation.submission import check_abaw_va, read_sample_file, write_abaw_va_from_runs

    if args.check:
        if args.predictions or args.out:
            print("avaffect submit: --check takes no --predictions/--out", file=sys.stderr)
            return 2
        problems = check_abaw_va(args.check, args.sample_file)
        if not problems:
            print(f"{args.check}: valid ABAW VA submission")
            return 0
        print(f"{args.check}: {len(problems)} problem(s) — fix them, or write the file again with `avaffect submit "
              "abaw --predictions DIR --sample-file SAMPLE --out FILE`, which always follows the sample file:")
        for p in problems[:args.max_problems]:
            print(f"  {p}")
        if len(problems) > args.max_problems:
            print(f"  ... and {len(problems) - args.max_problems} more")
        return 1
    if not args.predictions or not args.out:
        print("avaffect submit: give --predictions DIR and --out FILE (or --check FILE)", file=sys.stderr)
        return 2
    sample = read_sample_file(args.sample_file)
    report = write_abaw_va_from_runs(args.predictions, sample, args.out)
    print(report.format())
    problems = check_abaw_va(report.path, sample)
    if problems:  # cannot happen unless the writer is wrong; never hand in an invalid file silently
        print(json.dumps(problems[:args.max_problems], indent=1), file=sys.stderr)
        return 1
    print("check passed")
    return 0


def register(sub) -> None:
    from avaffect.data.datasets import DATASET_NAMES

    p = sub.add_parser("prepare", help="check a raw dataset's layout and summarise it (lists every problem)")
    p.add_argument("dataset", choices=DATASET_NAMES)
    p.add_argument("root", type=Path, help="dataset root (manifest: the CSV, or a folder with manifest.csv)")
    p.add_argument("--length-tolerance", type=int, default=0,
                   help="annotation rows may differ from video frames by this many (default 0)")
    p.add_argument("--no-media", action="store_true", help="do not open the audio/video files (faster)")
    p.add_argument("--max-problems", type=int, default=100, help="print at most this many problems")
    p.add_argument("--json", type=Path, help="also write the problems and summary to this JSON file")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("submit", help="write or check a challenge submission file",
                       description="avaffect submit abaw --predictions DIR --sample-file SAMPLE --out FILE; "
                                   "avaffect submit abaw --check FILE --sample-file SAMPLE")
    p.add_argument("challenge", choices=["abaw"], help="challenge (abaw: ABAW valence-arousal)")
    p.add_argument("--sample-file", required=True, type=Path, help="the organisers' sample file (row order)")
    p.add_argument("--predictions", type=Path, action="append",
                   help="folder of per-recording prediction CSVs (a run folder or predictions/<split>); "
                        "repeat for one run per target")
    p.add_argument("--out", type=Path, help="submission file to write")
    p.add_argument("--check", type=Path, help="validate this submission file instead of writing one")
    p.add_argument("--max-problems", type=int, default=50, help="print at most this many problems")
    p.set_defaults(func=cmd_submit)
