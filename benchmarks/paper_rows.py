"""Every paper configuration (``configs/<paper>/<row>.yaml``) trained on the synthetic set.

    python benchmarks/paper_rows.py --out docs/benchmarks/paper_rows.md [--max-epochs 10] [--only abaw8]

Each row runs in its weight-free variant (the offline ``logmel_stats`` / ``face_hog`` features replace
the learned backbones, whose weights are not shipped), on the official split (fold 0), one seed, with
``training.max_epochs`` capped. The numbers check that every row trains end to end and how its model
behaves on data whose ground truth we know; they say nothing about the papers' numbers.
Resumable: finished runs are reused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from avaffect.config import make_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.synth import SynthConfig, write_synthetic_dataset
from avaffect.logs import quiet_third_party_logs
from avaffect.training.protocols import train_one
from avaffect.workflows.bench import machine

REPO = Path(__file__).resolve().parents[1]


def weight_free(raw: dict, root: Path, max_epochs: int) -> dict:
    raw = dict(raw)
    raw["data"] = {**raw.get("data", {}), "dataset": "synthetic", "root": str(root)}
    raw["features"] = {**raw.get("features", {}), "store": str(root / "features")}
    training = dict(raw.get("training", {}))
    training["max_epochs"] = min(int(training.get("max_epochs", max_epochs)), max_epochs)
    training["accelerator"] = "cpu"
    raw["training"] = training
    raw["protocol"] = {**raw.get("protocol", {}), "fold": None}
    return raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "paper_rows.md")
    p.add_argument("--work", type=Path, default=Path("/tmp/avaffect-paper-rows"))
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--only", nargs="+", default=None, help="paper folders to run (default: all)")
    args = p.parse_args(argv)
    quiet_third_party_logs()
    root = write_synthetic_dataset(args.work / "data", SynthConfig(), progress=False)
    recs = load_affwild2(root, splits=("train", "validation"))
    rows, t0 = [], time.perf_counter()
    for path in sorted((REPO / "configs").glob("*/*.yaml")):
        paper = path.parent.name
        if args.only and paper not in args.only:
            continue
        cfg = make_config(weight_free(yaml.safe_load(path.read_text()), root, args.max_epochs),
                          source=str(path)).weight_free()
        t = time.perf_counter()
        res = train_one(cfg, args.work / "runs" / paper / path.stem, recs, progress=False)
        score = res.metrics.get("p_va", res.metrics.get(f"ccc_{cfg.training.targets[0]}"))
        rows.append((paper, path.stem, cfg.model.name, "P_VA" if "p_va" in res.metrics else
                     f"CCC {cfg.training.targets[0]}", score, time.perf_counter() - t))
        print(f"{paper}/{path.stem}: {rows[-1][3]} = {score:.3f}", flush=True)
    info = machine()
    lines = ["# Paper configurations on the synthetic set (weight-free variant)", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}. Default synthetic set, "
             f"official split, seed of the config, max {args.max_epochs} epochs, features `logmel_stats` + "
             f"`face_hog` instead of the rows' backbones. Wall time {time.perf_counter() - t0:.0f} s.", "",
             "| paper | row | preset | score (validation) | value | train s |", "|---|---|---|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e:.3f} | {f:.0f} |" for a, b, c, d, e, f in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
