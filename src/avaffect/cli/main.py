"""``avaffect`` command line: one sub-command per step of the research flow (SPEC §1)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from avaffect import __version__
from avaffect.errors import AvaffectError


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    from avaffect.data.synth import SynthConfig

    g = p.add_argument_group("synthetic dataset")
    for name, field in SynthConfig.model_fields.items():
        kind = field.annotation if field.annotation in (int, float) else None
        if kind is None:
            continue
        g.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, dest=f"synth_{name}",
                       help=f"{field.description or name} (default {field.default})")


def _synth_config(args):
    from avaffect.data.synth import SynthConfig

    given = {k[len("synth_"):]: v for k, v in vars(args).items() if k.startswith("synth_") and v is not None}
    return SynthConfig(**given)


def cmd_synth(args) -> int:
    from avaffect.data.synth import write_synthetic_dataset

    root = write_synthetic_dataset(args.out, _synth_config(args), progress=not args.quiet)
    print(f"synthetic dataset ready at {root}")
    return 0


def cmd_extract(args) -> int:
    from avaffect.config import load_config, make_config
    from avaffect.data.datasets import load_dataset
    from avaffect.features.extract import extract_features
    from avaffect.features.store import FeatureStore
    from avaffect.training.run import build_extractors

    overrides = {"data": {"root": str(args.root), "dataset": args.dataset}}
    if args.out:
        overrides["features"] = {"store": str(args.out)}
    if args.workers:
        overrides.setdefault("features", {})["workers"] = args.workers
    cfg = load_config(args.config, overrides) if args.config else make_config({}, overrides)
    recs = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.length_tolerance)
    summary = extract_features(recs, list(build_extractors(cfg)), FeatureStore(cfg.store_path()),
                               workers=cfg.features.workers, progress=not args.quiet)
    print(summary.format())
    return 0 if summary.ok else 1


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


def cmd_models(args) -> int:
    import torch

    from avaffect.models import create_model, get_entry, list_models

    print(f"{'model':<14} {'params':>10}  description (d_audio={args.d_audio}, d_video={args.d_video}, "
          f"L={args.window})")
    for name in list_models():
        entry = get_entry(name)
        params = {"window_length": args.window} if "window_length" in entry.config_cls.model_fields else {}
        model = create_model(name, args.d_audio, args.d_video, params)
        n = sum(p.numel() for p in model.parameters() if isinstance(p, torch.nn.Parameter))
        print(f"{name:<14} {n:>10,}  {entry.summary}")
    return 0


def cmd_demo(args) -> int:
    from avaffect.demo import DEMO_MODELS, run_demo

    overrides = {"training": {"max_epochs": args.max_epochs}} if args.max_epochs else None
    results = run_demo(args.out, _synth_config(args), models=args.models or DEMO_MODELS, overrides=overrides,
                       progress=not args.quiet)
    print(f"\n{'model':<12} {'CCC-V':>7} {'CCC-A':>7} {'P_VA':>7}")
    for name, m in results.items():
        print(f"{name:<12} {m['ccc_valence']:7.3f} {m['ccc_arousal']:7.3f} {m['p_va']:7.3f}")
    print(f"\nwrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avaffect", description=__doc__)
    parser.add_argument("--version", action="version", version=f"avaffect {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="synthetic data → features → 4 models → report (the main job)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--models", nargs="+", default=None, help="models to train (default: the four baselines)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_synth_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="write the built-in synthetic dataset (Aff-Wild2 layout)")
    p.add_argument("--out", required=True, help="dataset root to write")
    p.add_argument("-q", "--quiet", action="store_true")
    _add_synth_args(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("extract", help="extract features of a dataset into a feature store (resumable)")
    p.add_argument("root", type=Path, help="dataset root")
    p.add_argument("--dataset", default="affwild2", choices=["affwild2", "synthetic"])
    p.add_argument("--config", type=Path, help="run config YAML (its features section is used)")
    p.add_argument("--out", type=Path, help="feature store folder (default ROOT/features)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("train", help="train one model from a config")
    p.add_argument("root", type=Path, help="dataset root")
    p.add_argument("--config", type=Path, help="run config YAML")
    p.add_argument("--model", help="override model.name")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--out", type=Path, help="run directory (default runs/<model>)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="list the model presets with parameter counts")
    p.add_argument("--d-audio", type=int, default=128)
    p.add_argument("--d-video", type=int, default=512)
    p.add_argument("--window", type=int, default=300)
    p.set_defaults(func=cmd_models)
    return parser


def quiet_third_party_logs() -> None:
    """Keep Lightning's start-up chatter (device summary, tips) out of the user's terminal."""
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        quiet_third_party_logs()
    try:
        return int(args.func(args) or 0)
    except AvaffectError as e:
        if args.verbose:
            raise
        print(f"avaffect: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avaffect: interrupted; finished work is kept and the next run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
