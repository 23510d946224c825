"""Training commands: ``train`` and the ``demo``."""

from __future__ import annotations

import json
from pathlib import Path

from avaffect.cli.common import add_synth_args, synth_config


def cmd_train(args) -> int:
    from avaffect.config import load_config, make_config
    from avaffect.training.run import train

    overrides: dict = {"data": {"root": str(args.root)}}
    if args.model:
        overrides["model"] = {"name": args.model}
    if args.max_epochs:
        overrides["training"] = {"max_epochs": args.max_epochs}
    cfg = load_config(args.config, overrides) if args.config else make_config({}, overrides)
    out = Path(args.out or Path("runs") / cfg.model.name)
    res = train(cfg, out, progress=not args.quiet)
    print(json.dumps({k: round(v, 4) for k, v in res.metrics.items() if k.startswith(("ccc", "p_va"))}))
    print(f"run directory: {res.run_dir}")
    return 0


def cmd_demo(args) -> int:
    from avaffect.demo import DEMO_MODELS, run_demo

    overrides = {"training": {"max_epochs": args.max_epochs}} if args.max_epochs else None
    results = run_demo(args.out, synth_config(args), models=args.models or DEMO_MODELS, overrides=overrides,
                       progress=not args.quiet)
    print(f"\n{'model':<12} {'CCC-V':>7} {'CCC-A':>7} {'P_VA':>7}")
    for name, m in results.items():
        print(f"{name:<12} {m['ccc_valence']:7.3f} {m['ccc_arousal']:7.3f} {m['p_va']:7.3f}")
    print(f"\nwrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.md'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="synthetic data → features → 4 models → report (the main job)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--models", nargs="+", default=None, help="models to train (default: the four baselines)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_synth_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one model from a config")
    p.add_argument("root", type=Path, help="dataset root")
    p.add_argument("--config", type=Path, help="run config YAML")
    p.add_argument("--model", help="override model.name")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--out", type=Path, help="run directory (default runs/<model>)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_train)
