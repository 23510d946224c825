"""Feature commands: ``extract`` (a dataset, or a folder of videos)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` → ``(i, N)`` with 0 <= i < N."""
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or not int(m.group(1)) < int(m.group(2)):
        from avaffect.errors import ConfigError

        raise ConfigError(f"--shard must look like i/N with 0 <= i < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def worker_count(requested: int) -> int:
    """``--workers``: 0 means one per core; a negative count is an error."""
    if requested < 0:
        from avaffect.errors import ConfigError

        raise ConfigError(f"--workers must be >= 0 (0 = one per core), got {requested}")
    return requested or max(1, os.cpu_count() or 1)


def cmd_extract(args) -> int:
    from avaffect.cli.common import no_video_error
    from avaffect.config import load_config, make_config
    from avaffect.data.folder import list_videos, load_video_folder
    from avaffect.data.layout import AFFWILD2_ANNOTATION_DIR
    from avaffect.errors import DataError
    from avaffect.features.store_extraction import extract_features, select_shard

    root = Path(args.root)
    if not root.exists():
        raise DataError(root, "does not exist", "give a dataset root or a folder of videos")
    dataset = args.dataset or ("affwild2" if (root / AFFWILD2_ANNOTATION_DIR).is_dir() else "folder")
    if dataset == "folder" and root.is_dir() and not list_videos(root):  # predict's rule, and its message
        raise no_video_error([root], "pass a folder that holds videos, or a dataset root (an Aff-Wild2 root has "
                             f"{AFFWILD2_ANNOTATION_DIR}; other kinds: --dataset NAME)")
    shard = parse_shard(args.shard)
    overrides: dict = {"features": {}}
    if dataset != "folder":
        overrides["data"] = {"root": str(root), "dataset": dataset}
    if args.out:
        overrides["features"]["store"] = str(args.out)
    elif dataset == "folder":
        overrides["features"]["store"] = str(root / "features")
    if args.workers is not None:
        overrides["features"]["workers"] = worker_count(args.workers)
    cfg = load_config(args.config, overrides) if args.config else make_config({}, overrides)
    broken: dict[str, str] = {}
    if dataset == "folder":
        recs, broken = load_video_folder(root)
    else:
        recs = cfg.load_recordings()  # media-less recordings timed by the store: checked, never re-extracted
        if not recs:
            raise DataError(root, f"no recording found (read as a {cfg.data.dataset} dataset)",
                            f"check the path and --dataset; `avaffect prepare {cfg.data.dataset} {root}` lists "
                            "what the layout lacks")
    if shard is not None and recs and not select_shard(recs, shard):
        # a job array with more tasks than recordings: this task has nothing to do, the others cover the dataset
        print(f"extract: shard {shard[0]}/{shard[1]} selects none of the {len(recs)} recording(s) (shards are "
              f"round-robin over the recordings sorted by name): nothing to do")
        return 0
    pipeline = cfg.feature_pipeline()
    store, extractors = pipeline.store, list(pipeline.extractors)
    summary = extract_features(recs, extractors, store, workers=cfg.features.workers, progress=not args.quiet,
                               force=args.force, shard=shard, backend=args.backend,
                               verify=True)  # an explicit extract re-reads what it reports as done
    for name, reason in broken.items():  # files that could not even be opened: recorded like any failure
        for ex in extractors:
            store.mark_failed(ex, name, reason, update_manifest=False)
            summary.failed.append((ex.id, name, reason))
    for ex in extractors:  # the manifest from every recording's entry, this run's and other processes' (shards)
        store.write_manifest(ex)
    print(summary.format())
    print(f"feature store: {store.root}")
    return 0 if summary.ok else 1


def cmd_extractors(args) -> int:
    from avaffect.features.extractors import EXTRACTORS, extractor_params_table

    names = args.names or EXTRACTORS.names()
    for name in names:
        print(extractor_params_table(name))
        print()
    return 0


def register(sub) -> None:
    p = sub.add_parser("extractors", help="list the feature extractors: modality, dimension, and each parameter "
                       "with its default and meaning (what features.audio / features.video params accept)")
    p.add_argument("names", nargs="*", help="only these extractors (default: all)")
    p.set_defaults(func=cmd_extractors)
    p = sub.add_parser("extract", help="extract features of a dataset or a folder of videos (resumable)")
    p.add_argument("root", type=Path, help="dataset root, or a folder of videos")
    p.add_argument("--dataset", default=None, help="dataset kind (default: affwild2 if ROOT has annotations, "
                   "else a folder of videos)")
    p.add_argument("--config", type=Path, help="run config YAML (its features section is used)")
    p.add_argument("--out", type=Path, help="feature store folder (default ROOT/features)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (0 = one per core)")
    p.add_argument("--shard", default=None, help="i/N: process the i-th of N disjoint slices (job arrays)")
    p.add_argument("--backend", default="process", choices=["process", "ray"],
                   help="ray: distribute over a Ray cluster (optional extra avaffect[ray])")
    p.add_argument("--force", action="store_true", help="recompute what is already done")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_extract)
