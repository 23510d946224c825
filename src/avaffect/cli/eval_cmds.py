"""Evaluation commands: ``evaluate`` (a run, or a fold ensemble of a protocol folder)."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_evaluate(args) -> int:
    from avaffect.workflows.evaluate import evaluate_path

    res = evaluate_path(args.run_dir, args.split, protocol=args.protocol, postprocess=args.postprocess or None,
                        data_root=args.root, max_plots=args.max_plots, progress=not args.quiet)
    if res.overall is not None:
        print(json.dumps({k: round(v, 4) for k, v in res.overall.items() if k.startswith(("ccc", "p_va"))}))
        if res.postprocess is not None and res.split == "validation":
            print("note: the post-processing was fitted on this same validation split, so this score is "
                  "optimistic; the raw score is overall_raw in metrics.json, and --split test applies the chain "
                  "to unseen data")
    else:
        print(f"{len(res.predictions)} recordings predicted (test split: no labels, no scores)")
    print(f"wrote {Path(res.out_dir)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score a finished run on full recordings (or ensemble a --folds folder)")
    p.add_argument("run_dir", type=Path,
                   help="a run folder (with model.safetensors), or a `train --folds/--seeds` output folder to "
                   "ensemble its fold*/seed* runs")
    p.add_argument("--split", choices=("validation", "test", "train"), default="validation",
                   help="split to predict (default validation; a fold run uses its fold's split)")
    p.add_argument("--protocol", choices=("global", "per_recording"), default=None,
                   help="scoring protocol (default: the run's evaluation.protocol)")
    p.add_argument("--postprocess", action="store_true",
                   help="fit clip/smoothing/delay/bias-scale on the validation split and apply it")
    p.add_argument("--root", type=Path, default=None, help="dataset root, if it moved since training")
    p.add_argument("--max-plots", type=int, default=8, help="plot at most this many recordings (default 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)
