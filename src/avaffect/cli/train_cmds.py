"""Training commands: ``train`` (one run, or folds × seeds) and the ``demo``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from avaffect.cli.common import add_synth_args, synth_config


def cmd_train(args) -> int:
    from avaffect.config import load_config, make_config
    from avaffect.training.protocols import train_one

    overrides: dict = {"data": {"root": str(args.root)}}
    if args.model:
        overrides["model"] = {"name": args.model}
    if args.max_epochs is not None:  # 0 is refused by the config (max_epochs >= 1), never dropped
        overrides["training"] = {"max_epochs": args.max_epochs}
    if args.num_folds is not None:
        overrides["protocol"] = {"num_folds": args.num_folds}
    cfg = load_config(args.config, overrides) if args.config else make_config({}, overrides)
    if args.set:
        cfg = make_config(apply_sets(cfg.model_dump(mode="json"), args.set), source="--set")
    if args.weight_free:
        free = cfg.weight_free()
        for m in ("audio", "video"):
            if getattr(free.features, m) != getattr(cfg.features, m):
                print(f"--weight-free: {m} features {getattr(cfg.features, m).name} → {getattr(free.features, m).name}")
        cfg = free
    if args.folds is not None or args.seeds is not None:
        return _train_protocol(cfg, args)
    out = Path(args.out or Path("runs") / cfg.model.name)
    res = train_one(cfg, out, progress=not args.quiet)
    print(json.dumps({k: round(v, 4) for k, v in res.metrics.items() if k.startswith(("ccc", "p_va"))}))
    print(f"run directory: {res.run_dir}")
    return 0


def apply_sets(raw: dict, items: list[str]) -> dict:
    """``--set a.b.c=VALUE``: replace (not merge) the value at a dotted path; VALUE is parsed as YAML."""
    import yaml

    from avaffect.errors import ConfigError

    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.max_epochs=5")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: VALUE is not valid YAML: {e}") from None
        *parents, last = key.strip().split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        node[last] = value
    return raw


def _train_protocol(cfg, args) -> int:
    """``--folds`` / ``--seeds``: every (fold, seed) into OUT/fold{k}/seed{s}/, then the summary table."""
    from avaffect.training.protocols import run_protocol

    out = Path(args.out or Path("runs") / f"{cfg.model.name}-cv")
    res = run_protocol(cfg, out, args.folds, args.seeds if args.seeds is not None else 1, progress=not args.quiet)
    print((out / "summary.md").read_text())
    print(f"protocol directory: {out} (summary.csv, summary.md; evaluate the fold ensemble with "
          f"`avaffect evaluate {out} --split test`)")
    return 0 if len(res.runs) else 1


def _jobs(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number or auto, not {text!r}") from None


def cmd_demo(args) -> int:
    from avaffect.workflows.demo import DEMO_MODELS, run_demo

    overrides = {"training": {"max_epochs": args.max_epochs}} if args.max_epochs else None
    results = run_demo(args.out, synth_config(args), models=args.models or DEMO_MODELS, overrides=overrides,
                       progress=not args.quiet, jobs=args.jobs)
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
    p.add_argument("--jobs", type=_jobs, default="auto", help="models trained at once, a process each (default "
                   "auto: as many as the cores hold at training.cpu_threads, e.g. 2 on 2 cores; 1: one after the "
                   "other, with progress bars)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_synth_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one model from a config (or k folds x seeds: --folds/--seeds)")
    p.add_argument("root", type=Path, help="dataset root")
    p.add_argument("--config", type=Path, help="run config YAML, or a shipped paper config's name "
                   "(`avaffect config list`)")
    p.add_argument("--model", help="override model.name")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="replace one config value (dotted path, YAML value), e.g. --set training.max_epochs=5 or "
                   "--set 'features.video={name: face_hog}'; repeatable")
    p.add_argument("--weight-free", action="store_true",
                   help="replace the extractors that need downloaded weights by the offline face_hog / logmel_stats "
                   "(a row's weight-free variant: trains anywhere, says nothing about the paper's numbers)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<model>, with --folds/--seeds "
                   "runs/<model>-cv)")
    p.add_argument("--folds", default=None, metavar="all|0,2",
                   help="k-fold cross-validation: train these folds (fold 0 = the official split, folds 1..k-1 "
                   "re-partition train+validation, subject-independent) into OUT/fold<k>/seed<s>/")
    p.add_argument("--num-folds", type=int, default=None, help="k (default protocol.num_folds, 6)")
    p.add_argument("--seeds", type=int, default=None,
                   help="train each fold with this many seeds (training.seed, +1, ...); reported as mean ± std")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_train)
