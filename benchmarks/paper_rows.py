"""Every shipped paper configuration trained on the synthetic set, and ``docs/reproducing.md``'s row tables.

    python benchmarks/paper_rows.py [--max-epochs 4] [--n-train 8 --n-val 4] [--only abaw8] [--report-only]

Each row runs in its weight-free variant (:meth:`RunConfig.weight_free`: the offline ``logmel_stats`` /
``face_hog`` features replace the learned backbones, whose weights are not shipped), on the synthetic set's
official split, one seed, with ``training.max_epochs`` capped and ``protocol.repetitions`` set to 1; every other
setting is the row's own (loss, optimiser, learning rate, warm-up, window, model). The numbers show that each row
trains end to end and how its model behaves on data whose ground truth we know; they say nothing about the
papers' numbers. Results are kept in ``WORK/results.json`` (resumable); the tables between the markers of
``docs/reproducing.md`` are rewritten from them and from each config's ``paper:`` header.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from avaffect.config import load_config, paper_config_names
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.synth import SynthConfig, write_synthetic_dataset
from avaffect.features.extractors import get_extractor, needs_weights
from avaffect.features.weights import WEIGHTS
from avaffect.files import atomic_write_text, write_json
from avaffect.logs import quiet_third_party_logs
from avaffect.training.protocols import train_one
from avaffect.workflows.bench import machine

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reproducing.md"
BEGIN, END = "<!-- paper rows: begin (benchmarks/paper_rows.py) -->", "<!-- paper rows: end -->"
SECTIONS = {
    "rja_blstm": "RJA-BLSTM — Praveen et al., ICASSP 2023",
    "hgrjca_abaw6": "HGRJCA — Praveen & Alam, ABAW6 (CVPRW 2024)",
    "abaw8": "GRJCA / HGRJCA — Praveen et al., ABAW8 (CVPRW 2025)",
    "dlstm_att": "DLSTM-ATT — Lucas et al.",
    "extras": "Extras (no paper row: other readings of a row, ablations)",
}
DATASETS = {"affwild2": "Aff-Wild2 (ABAW VA)", "recola": "RECOLA / AVEC 2016", "synthetic": "synthetic"}


def run_rows(args) -> dict:
    results_path = args.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    root = write_synthetic_dataset(args.work / "data", SynthConfig(n_train=args.n_train, n_val=args.n_val, n_test=0),
                                   progress=False)
    recs = load_affwild2(root, splits=("train", "validation"))
    for name in paper_config_names():
        if (args.only and name.split("/")[0] not in args.only) or name in results:
            continue
        if load_config(name).end_to_end.enabled:  # backbones trained on the CPU: hours (docs/benchmarks/train_e2e.md)
            continue
        cfg = load_config(name, {"data": {"dataset": "synthetic", "root": str(root)},
                                 "features": {"store": str(root / "features")},
                                 "protocol": {"repetitions": 1, "fold": None}}).weight_free()
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={
            "max_epochs": min(cfg.training.max_epochs, args.max_epochs), "accelerator": "cpu"})})
        t = time.perf_counter()
        res = train_one(cfg, args.work / "runs" / name, recs, progress=False)
        results[name] = {**{k: res.metrics.get(k) for k in ("ccc_valence", "ccc_arousal", "p_va")},
                         "seconds": round(time.perf_counter() - t, 1)}
        write_json(results_path, results)
        print(f"{name}: {results[name]}", flush=True)
    return results


def _num(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _needs(cfg) -> str:
    parts = [DATASETS.get(cfg.data.dataset, cfg.data.dataset)]
    for spec in (cfg.features.audio, cfg.features.video):
        if needs_weights(spec.name):
            w = spec.params.get("weights") or get_extractor(spec.name, **spec.params).weights_name
            entry = WEIGHTS.get(w, None) if isinstance(w, str) else None
            if entry is not None and not entry.url:
                parts.append(f"`{spec.name}` weights ({entry.filename}, user-supplied: {entry.source})")
            else:
                parts.append(f"`{spec.name}` weights ({entry.filename}, {entry.url})" if entry else
                             f"`{spec.name}` weights (your file: `features.*.params.weights`)")
        if cfg.end_to_end.enabled:
            parts.append("a GPU (end-to-end: the backbones are fine-tuned; not run on the synthetic set here)")
    return "; ".join(parts)


def render(results: dict, info: dict, args) -> str:
    lines = [BEGIN, "",
             f"Synthetic-set columns: `python benchmarks/paper_rows.py --max-epochs {args.max_epochs} --n-train "
             f"{args.n_train} --n-val {args.n_val}` on {info['cpu']} ({info['cores']} cores, torch {info['torch']}): "
             "the weight-free variant of each row (offline `logmel_stats` / `face_hog` features instead of its "
             f"backbones), the synthetic set's official split, one seed, at most {args.max_epochs} epochs, "
             "`repetitions: 1`; every other setting is the row's own. They check that the row trains end to end "
             "and say nothing about the paper's numbers: rows with the papers' small learning rates (ABAW6 1e-4, "
             f"ABAW8 1e-5, with warm-up) barely move in {args.max_epochs} epochs on this small set (CCC near 0), "
             "while the toolkit-default rows (1e-3) learn. A mean the paper did not print is shown as –. "
             "No GPU was lent to the session that measured them, so "
             "no row's GPU time is known yet; the paper rows need their dataset and backbone weights (last "
             "column) to run for real.", ""]
    for folder, title in SECTIONS.items():
        names = [n for n in paper_config_names() if n.split("/")[0] == folder]
        if not names:
            continue
        lines += [f"### {title}", "",
                  "| table | row | config | paper: CCC V / A / mean | synthetic: CCC V / A / P_VA | needs |",
                  "|---|---|---|---|---|---|"]
        for name in names:
            cfg = load_config(name)
            p = cfg.paper
            rep = p.reported if p else {}
            ours = results.get(name, {})
            other = ", ".join(f"{k} {_num(v)}" for k, v in rep.items() if k not in ("ccc_valence", "ccc_arousal",
                                                                                   "p_va"))
            printed = f"{_num(rep.get('ccc_valence'))} / {_num(rep.get('ccc_arousal'))} / {_num(rep.get('p_va'))}"
            printed += f" ({other})" if other else ""
            lines.append(f"| {p.table if p else ''} | {p.row if p else ''} | `{name}` | {printed} | "
                         f"{_num(ours.get('ccc_valence'))} / {_num(ours.get('ccc_arousal'))} / "
                         f"{_num(ours.get('p_va'))} | {_needs(cfg)} |")
        lines.append("")
    lines += [END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/avaffect-paper-rows"))
    p.add_argument("--max-epochs", type=int, default=4)
    p.add_argument("--n-train", type=int, default=8)
    p.add_argument("--n-val", type=int, default=4)
    p.add_argument("--only", nargs="+", default=None, help="paper folders to run (default: all)")
    p.add_argument("--report-only", action="store_true", help="rewrite the doc from WORK/results.json only")
    args = p.parse_args(argv)
    quiet_third_party_logs()
    args.work.mkdir(parents=True, exist_ok=True)
    results = (json.loads((args.work / "results.json").read_text()) if args.report_only
               else run_rows(args))
    doc = DOC.read_text()
    a, b = doc.index(BEGIN), doc.index(END) + len(END)
    atomic_write_text(DOC, doc[:a] + render(results, machine(), args) + doc[b:])
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
