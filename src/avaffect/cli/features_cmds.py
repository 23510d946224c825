"""Feature commands: ``extract``."""

from __future__ import annotations

from pathlib import Path


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


def register(sub) -> None:
    p = sub.add_parser("extract", help="extract features of a dataset into a feature store (resumable)")
    p.add_argument("root", type=Path, help="dataset root")
    p.add_argument("--dataset", default="affwild2", choices=["affwild2", "synthetic"])
    p.add_argument("--config", type=Path, help="run config YAML (its features section is used)")
    p.add_argument("--out", type=Path, help="feature store folder (default ROOT/features)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_extract)
