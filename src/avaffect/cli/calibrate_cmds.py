"""``calibrate``: fit predict's post-processing to your own labelled videos; a calibrated model that predict uses."""

from __future__ import annotations

from pathlib import Path

from avaffect.errors import AvaffectError


def _label_files(labels: list[Path], videos: list[Path]) -> list[Path]:
    """One label file per video: the files given, in the videos' order, or a folder's ``<video stem>.csv|txt``."""
    if len(labels) == 1 and labels[0].is_dir():
        out = []
        for v in videos:
            found = [f for f in (labels[0] / f"{v.stem}.csv", labels[0] / f"{v.stem}.txt") if f.is_file()]
            if not found:
                raise AvaffectError(f"no {v.stem}.csv or {v.stem}.txt in {labels[0]} for {v}")
            out.append(found[0])
        return out
    return labels


def cmd_calibrate(args) -> int:
    from avaffect.config import PostprocessConfig
    from avaffect.workflows.calibrate import calibrate

    videos = list(args.videos)
    missing = [v for v in videos if not v.is_file()]
    if missing:
        raise AvaffectError(f"{missing[0]}: no such video")
    config = PostprocessConfig(max_delay=args.max_delay)
    result = calibrate(args.checkpoint, videos, _label_files(list(args.labels), videos), args.out,
                       holdout=args.holdout, config=config)
    for t in result.before:
        print(f"{t}: CCC on the held-out {args.holdout:.0%} of each video {result.before[t]:.3f} -> "
              f"{result.after[t]:.3f}")
    print(f"calibrated model → {result.out_dir / 'model.safetensors'} (predict applies {result.out_dir}/"
          "calibration.json after the model)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a delay, smoothing, bias and scale to your own labelled videos; "
                       "write a calibrated model that predict uses")
    p.add_argument("checkpoint", type=Path, help="model.safetensors of a run")
    p.add_argument("videos", type=Path, nargs="+", help="the labelled videos")
    p.add_argument("--labels", type=Path, nargs="+", required=True, help="one label file per video, in the same "
                   "order (time,valence,arousal / frame,valence,arousal / valence,arousal; or Aff-Wild2 .txt), or "
                   "a folder with <video name>.csv")
    p.add_argument("--out", type=Path, required=True, help="the calibrated model's folder (a copy of the "
                   "checkpoint's files and calibration.json)")
    p.add_argument("--holdout", type=float, default=0.3, help="the last fraction of every video held out to "
                   "report the CCC before / after (default 0.3)")
    p.add_argument("--max-delay", type=int, default=50, help="largest delay tried, in frames (default 50)")
    p.set_defaults(func=cmd_calibrate)
