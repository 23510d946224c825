"""Every shipped paper configuration trained on the synthetic set, and ``docs/reproducing.md``'s row tables.

    python benchmarks/paper_rows.py [--max-epochs 4] [--n-train 8 --n-val 4] [--only abaw8] [--report-only]
                                    [--results docs/benchmarks/paper_rows.json]

Each row runs in its weight-free variant (:meth:`RunConfig.weight_free`: the offline ``logmel_stats`` /
``face_hog`` features replace the learned backbones, whose weights are not shipped), on the synthetic set's
official split, one seed, with ``training.max_epochs`` capped and ``protocol.repetitions`` set to 1; every other
setting is the row's own (loss, optimiser, learning rate, warm-up, window, model). The numbers show that each row
trains end to end and how its model behaves on data whose ground truth we know; they say nothing about the
papers' numbers. Results are kept in ``--results`` (``docs/benchmarks/paper_rows.json``, resumable: a row already
there is not run again; delete its entry to re-run it); the tables between the markers of ``docs/reproducing.md``
are rewritten from them and from each config's ``paper:`` header.

The "compute" column is counted, not measured: the multiply-adds of each row's networks (torch's
``FlopCounterMode`` on the meta device, so nothing runs) times the dataset's size. Extraction: one forward pass
of each frozen backbone per timeline step of the whole dataset. Training: 3x the forward FLOPs (forward + backward)
of one window, times the training windows of one epoch, times ``max_epochs`` (an upper bound: early stopping
ends sooner), folds and repetitions; end-to-end rows add the backbones' training FLOPs on every frame of every
window. The "GPU hours" figure divides the total by an assumed sustained 100 TFLOP/s: a lower bound on an H100-
class GPU, not a measurement (small LSTM and attention kernels run far below peak).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from avaffect.config import load_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.synth import SynthConfig, write_synthetic_dataset
from avaffect.features.extractors import get_extractor, needs_weights
from avaffect.features.weights import WEIGHTS
from avaffect.files import atomic_write_text, write_json
from avaffect.logs import quiet_third_party_logs
from avaffect.shipped import paper_config_names
from avaffect.training.protocols import train_one
from avaffect.training.run import build_model
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
# Sizes for the compute column: (timeline steps in all, share used for training, steps per second, source).
SIZES = {
    "affwild2": (2_993_081, 356 / 594, 30.0, "ABAW8 §4.1: 594 videos, 2,993,081 frames; 356 training videos "
                 "(training frames taken in proportion to videos; most videos are 30 fps)"),
    "recola": (18 * 300 * 25, 9 / 18, 25.0, "DLSTM-ATT §3: 18 five-minute clips; 9 train, 9 validation, at the "
               "25 Hz label rate"),
}
ASSUMED_FLOPS_PER_S = 100e12


def run_rows(args) -> dict:
    results_path = args.results
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


def _flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _backbone_step_flops(spec, steps_per_s: float) -> float:
    """Forward FLOPs of ``spec``'s network per timeline step (0 for the extractors without a network)."""
    ex = get_extractor(spec.name, **spec.params)
    if not hasattr(ex, "build_network"):
        return 0.0
    p = ex.params
    if "segment_frames" in p:  # the RJA spectrogram ResNet: one 64 x 107 segment per step
        shape = (1, 1, int(p["n_mels"]), int(p["segment_frames"]))
    elif spec.name == "vggish":  # one 96 x 64 example per step (hop 0), else one per hop seconds
        shape, per_step = (1, 1, 96, 64), (1.0 if not p["hop"] else 1.0 / (p["hop"] * steps_per_s))
        return per_step * _meta_forward(ex, shape)
    elif "clip_len" in p:  # one clip per step
        shape = (1, 3, int(p["clip_len"]), int(p["input_size"]), int(p["input_size"]))
    elif "input_size" in p:  # one face crop per step
        shape = (1, 3, int(p["input_size"]), int(p["input_size"]))
    else:
        return 0.0
    return _meta_forward(ex, shape)


def _meta_forward(ex, shape) -> float:
    if ex.name == "egemaps":
        return 0.0
    with torch.device("meta"):
        net = ex.build_network()
    return _flops(lambda: net(torch.empty(shape, device="meta")))


def _fusion_window_flops(cfg, d_a: int, d_v: int) -> float:
    """Forward FLOPs of the row's fusion model on one window (batch 1), run on the CPU (some presets read values,
    which the meta device cannot); torch's CPU LSTM kernel is not seen by the counter, so recurrent layers are
    counted from their sizes: 2 x steps x gates x hidden x (input + hidden) per layer and direction."""
    torch.manual_seed(0)
    model = build_model(cfg, d_a, d_v).eval()
    rnn = [0.0]

    def count(module, args, _out):
        x = args[0]
        steps = x.shape[0] * x.shape[1] if x.dim() == 3 else x.shape[0]
        gates = {"LSTM": 4, "GRU": 3}.get(type(module).__name__, 1)
        dirs = 2 if module.bidirectional else 1
        for layer in range(module.num_layers):
            inp = module.input_size if layer == 0 else module.hidden_size * dirs
            rnn[0] += 2.0 * steps * gates * module.hidden_size * (inp + module.hidden_size) * dirs

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
    window = cfg.training.window
    a, v = torch.zeros(1, window, d_a), torch.zeros(1, window, d_v)
    mask = torch.ones(1, window, dtype=torch.bool)
    with torch.no_grad():
        counted = _flops(lambda: model(a, v, mask))
    for h in hooks:
        h.remove()
    return counted + rnn[0]


def compute(cfg) -> dict | None:
    """Counted FLOPs of running ``cfg`` on its real dataset (see the module docstring); None for unknown sizes."""
    size = SIZES.get(cfg.data.dataset)
    if size is None:
        return None
    steps, train_share, rate, _ = size
    specs = (cfg.features.audio, cfg.features.video)
    per_step = [_backbone_step_flops(s, rate) for s in specs]
    d_a, d_v = (get_extractor(s.name, **s.params).dim for s in specs)
    fusion = _fusion_window_flops(cfg, d_a, d_v)
    train_steps = steps * train_share
    windows = train_steps / cfg.training.hop
    runs = cfg.protocol.num_folds * max(1, cfg.protocol.repetitions)
    epoch = 3 * fusion * windows
    if cfg.end_to_end.enabled:
        epoch += 3 * sum(per_step) * windows * cfg.training.window
    extract = 0.0 if cfg.end_to_end.enabled else sum(per_step) * steps
    total = extract + epoch * cfg.training.max_epochs * runs
    return {"extract": extract, "epoch": epoch, "epochs": cfg.training.max_epochs, "runs": runs, "total": total}


def _compute_cell(c: dict | None) -> str:
    if c is None:
        return "–"
    pf = lambda x: f"{x / 1e15:.3g}"  # noqa: E731
    extract = f"extract {pf(c['extract'])} + " if c["extract"] else ""
    hours = c["total"] / ASSUMED_FLOPS_PER_S / 3600
    return (f"{extract}train {pf(c['epoch'])}/epoch x ≤{c['epochs']} x {c['runs']} = {pf(c['total'])} PFLOP; "
            f"≥ {hours:.2g} GPU h")


def _num(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _needs(cfg) -> str:
    parts = [DATASETS.get(cfg.data.dataset, cfg.data.dataset)]
    for spec in (cfg.features.audio, cfg.features.video):
        if needs_weights(spec.name):
            w = spec.params.get("weights") or get_extractor(spec.name, **spec.params).weights_name
            entry = WEIGHTS.get(w, None) if isinstance(w, str) else None
            parts.append(f"`{spec.name}` weights ({entry.filename}, {entry.where()})" if entry else
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
             "The paper rows need their dataset and backbone weights to run for real (\"needs\"). "
             "No GPU was lent to the sessions that built this table, so no row's GPU time is measured: "
             "\"compute\" counts each row's FLOPs on its real dataset (extraction once, then training, "
             "forward + backward = 3x forward, for at most max_epochs epochs x folds x repetitions; end-to-end rows "
             "train their backbones on every frame of every window) and turns them into a lower bound on GPU hours "
             f"at an assumed {ASSUMED_FLOPS_PER_S / 1e12:.0f} TFLOP/s sustained. Dataset sizes: "
             + "; ".join(f"{DATASETS[k]}: {v[3]}" for k, v in SIZES.items()) + ". PFLOP = 1e15 floating-point "
             "operations (a multiply-add counts 2).", ""]
    for folder, title in SECTIONS.items():
        names = [n for n in paper_config_names() if n.split("/")[0] == folder]
        if not names:
            continue
        lines += [f"### {title}", "",
                  "| table | row | config | paper: CCC V / A / mean | synthetic: CCC V / A / P_VA | needs | "
                  "compute (counted, not measured) |",
                  "|---|---|---|---|---|---|---|"]
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
                         f"{_num(ours.get('p_va'))} | {_needs(cfg)} | {_compute_cell(compute(cfg))} |")
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
    p.add_argument("--results", type=Path, default=REPO / "docs" / "benchmarks" / "paper_rows.json",
                   help="the per-row results (read, extended, rewritten)")
    p.add_argument("--report-only", action="store_true", help="rewrite the doc from --results only")
    args = p.parse_args(argv)
    quiet_third_party_logs()
    args.work.mkdir(parents=True, exist_ok=True)
    results = (json.loads(args.results.read_text()) if args.report_only else run_rows(args))
    doc = DOC.read_text()
    a, b = doc.index(BEGIN), doc.index(END) + len(END)
    atomic_write_text(DOC, doc[:a] + render(results, machine(), args) + doc[b:])
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
