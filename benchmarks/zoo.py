"""Weak-complementarity benchmark of the model zoo (issue 2 of 5).

Trains every preset on the synthetic dataset at several weak-complementarity rates (default: none and
high) and seeds, and writes ``OUT/results.csv`` (one row per run), ``OUT/summary.csv`` (P_VA mean ± std
per model and rate), ``OUT/report.md`` and, for the gated models, plots of the gate weights over time
on a validation recording with the weak segments of each modality shaded — the ground truth the synthetic
set knows.

    python benchmarks/zoo.py --out docs/benchmarks/zoo --seeds 3 --rates 0.0 0.5

Every run is resumable (finished runs are reused). Presets whose default is one model per target
(ABAW8) are trained here jointly on valence and arousal (K = 2) so every row is comparable.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from avaffect.config import make_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.synth import SynthConfig, write_synthetic_dataset
from avaffect.data.windows import cut_window, window_mask
from avaffect.files import atomic_write_text
from avaffect.logs import quiet_third_party_logs
from avaffect.models import list_models
from avaffect.models.checkpoint import load_checkpoint, read_checkpoint_meta
from avaffect.training.run import train
from avaffect.workflows.bench import machine
from avaffect.workflows.demo import demo_config_dict


def gate_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The gate weights of the last forward, first batch item: ``last_gate_weights`` of the outermost module
    that exposes a non-empty one (inner modules expose the same tensors again)."""
    for mod in model.modules():
        weights = getattr(mod, "last_gate_weights", None)
        if isinstance(weights, dict) and weights:
            return {k: w[0].detach().cpu().numpy() for k, w in weights.items()}
    return {}


def plot_run_gates(run_dir: Path, root: Path, out: Path, name: str) -> bool:
    """Plot the gates of a finished run's best model on the first window of the first validation recording."""
    model, meta = load_checkpoint(run_dir / "model.safetensors")
    cfg = make_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
    recs = load_affwild2(root, splits=("validation",))
    rec = recs[0]
    f = cfg.feature_pipeline().load_all([rec], progress=False)[0]
    n = cfg.training.window
    with torch.no_grad():
        model(torch.as_tensor(cut_window(f.audio, 0, n)[None]), torch.as_tensor(cut_window(f.video, 0, n)[None]),
              torch.as_tensor(window_mask(rec.num_frames, 0, n)[None]),
              torch.as_tensor(cut_window(f.face_mask, 0, n, False)[None]))
    gates = gate_weights(model)
    if gates:
        latent = dict(np.load(root / "latent" / f"{rec.name}.npz"))
        plot_gates(out / f"gates_{name}.png", name, gates, rec.times, latent)
    return bool(gates)


def plot_gates(path: Path, model_name: str, gates: dict[str, np.ndarray], times: np.ndarray,
               latent: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(gates), 1, figsize=(10, 1.8 * len(gates)), squeeze=False, sharex=True)
    for ax, (name, w) in zip(axes[:, 0], gates.items(), strict=True):
        t = times[: len(w)]
        for j in range(w.shape[-1]):
            ax.plot(t, w[:, j], lw=1, label=f"candidate {j}")
        for key, color in (("face_weak", "tab:blue"), ("voice_weak", "tab:orange")):
            weak = latent[key][: len(w)] > 0
            ax.fill_between(t, 0, 1, where=weak, color=color, alpha=0.12, step="mid",
                            label=f"{key.split('_')[0]} weak" if ax is axes[0, 0] else None)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(name, fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{model_name}: gate weights over time (shaded: weak segments)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


GATED_VS_UNGATED = (("dca", "rjca"), ("grjca", "rjca"), ("hgrjca", "rjca"), ("grjca_abaw8", "rjca_abaw8"),
                    ("hgrjca_abaw8", "rjca_abaw8"))


def collect_runs(runs_root: Path) -> pd.DataFrame:
    """One row per finished run under ``runs_root/weak<rate>/<model>/seed<k>/`` (whatever invocation made it)."""
    rows = []
    for metrics_path in sorted(runs_root.glob("weak*/*/seed*/metrics.json")):
        run = metrics_path.parent
        m = json.loads(metrics_path.read_text())["overall"]
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        epochs = read_checkpoint_meta(run / "model.safetensors")["extra"].get("epochs_trained")
        rows.append({"model": run.parent.name, "weak_rate": float(run.parent.parent.name[len("weak"):]),
                     "seed": int(run.name[len("seed"):]), "max_epochs": cfg["training"]["max_epochs"],
                     "epochs": epochs, **{k: m[k] for k in ("ccc_valence", "ccc_arousal", "p_va")}})
    return pd.DataFrame(rows)


def gating_comparison(summary: pd.DataFrame, rates: list[float]) -> list[str]:
    """Mean P_VA of each gated model minus its ungated counterpart, per rate, with a verdict: the difference
    counts only when it exceeds the larger of the two seed standard deviations."""
    idx = summary.set_index(["model", "weak_rate"])
    out = []
    for gated, plain in GATED_VS_UNGATED:
        parts = []
        for r in rates:
            if (gated, r) in idx.index and (plain, r) in idx.index:
                g, u = idx.loc[(gated, r)], idx.loc[(plain, r)]
                diff, noise = g["mean"] - u["mean"], max(g["std"], u["std"])
                verdict = "helps" if diff > noise else "hurts" if diff < -noise else "within seed noise"
                parts.append(f"weak={r:g}: {diff:+.3f} ({verdict}; seed std up to {noise:.3f})")
        if parts:
            out.append(f"- `{gated}` − `{plain}`: " + "; ".join(parts))
    return out or ["- no gated/ungated pair was run"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks/zoo"))
    p.add_argument("--work", type=Path, default=None, help="data + runs folder (default OUT/work, not committed)")
    p.add_argument("--models", nargs="+", default=None, help="default: every registered preset")
    p.add_argument("--rates", nargs="+", type=float, default=[0.0, 0.5])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--n-train", type=int, default=16)
    p.add_argument("--n-val", type=int, default=6)
    p.add_argument("--report-only", action="store_true", help="train nothing: rebuild the report from the runs "
                   "already in --work (e.g. after several invocations with different --models/--seeds)")
    args = p.parse_args(argv)
    quiet_third_party_logs()
    models = args.models or list_models()
    work = args.work or args.out / "work"
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for rate in [] if args.report_only else args.rates:
        root = write_synthetic_dataset(work / f"data-weak{rate:g}",
                                       SynthConfig(weak_rate=rate, n_train=args.n_train, n_val=args.n_val),
                                       progress=False)
        recs = load_affwild2(root, splits=("train", "validation"))
        base = make_config(demo_config_dict(), {"data": {"root": str(root)},
                                                "training": {"max_epochs": args.max_epochs}})
        base.feature_pipeline().ensure(recs, progress=False)  # extract once for every model
        for name in models:
            for seed in range(args.seeds):
                cfg = make_config(base.model_dump(mode="json"), {"model": {"name": name, "params": {}},
                                                                 "training": {"seed": seed}})
                res = train(cfg, work / "runs" / f"weak{rate:g}" / name / f"seed{seed}", recs, progress=False)
                print(f"weak={rate:g} {name:<18} seed={seed} P_VA={res.metrics['p_va']:.3f}", flush=True)
    top = max(args.rates)
    for run in sorted((work / "runs" / f"weak{top:g}").glob("*/seed0")):
        if (run / "model.safetensors").is_file():
            plot_run_gates(run, work / f"data-weak{top:g}", args.out, run.parent.name)
    df = collect_runs(work / "runs")
    df.to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    summary = df.groupby(["model", "weak_rate"]).agg(
        mean=("p_va", "mean"), std=("p_va", lambda x: float(np.std(x))), seeds=("p_va", "count"),
        max_epochs=("max_epochs", "max"), mean_epochs=("epochs", "mean")).reset_index()
    summary.to_csv(args.out / "summary.csv", index=False, float_format="%.4f")
    rates = sorted(df["weak_rate"].unique())
    lines = ["# Model zoo on the synthetic set: weak-complementarity benchmark", "",
             f"Machine: {platform.machine()} CPU ({machine()['cpu']}), {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}; {args.n_train} train / {args.n_val} validation recordings of the default "
             "synthetic set per rate; demo training settings (window 150, hop 50, early stopping on validation "
             "P_VA). P_VA on the validation split, global protocol, mean ± std (population) over seeds.",
             "Every preset runs with its own default parameters and is trained end to end (the DLSTM presets "
             "too: their pre-train → freeze → fuse recipe is exercised by `benchmarks/paper_rows.py`); "
             "the `max epochs` column gives each row's cap.",
             f"Produced by `python benchmarks/zoo.py` (this invocation: {time.perf_counter() - t0:.0f} s).", "",
             "| model | " + " | ".join(f"P_VA weak={r:g}" for r in rates) + " | seeds | max epochs |",
             "|---|" + "---:|" * len(rates) + "---:|---:|"]
    for name, g in summary.groupby("model"):
        by_rate = {row.weak_rate: row for row in g.itertuples()}
        cells = [f"{by_rate[r].mean:.3f} ± {by_rate[r].std:.3f}" if r in by_rate else "—" for r in rates]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {int(g.seeds.min())} | {int(g.max_epochs.max())} |")
    lines += ["", "## Does gating help? (computed from the table)", ""] + gating_comparison(summary, rates)
    for path in sorted(args.out.glob("gates_*.png")):
        name = path.stem[len("gates_"):]
        lines += ["", f"## Gates of {name} (weak={max(rates):g}, seed 0, first validation window)", "",
                  f"![{name}]({path.name})"]
    atomic_write_text(args.out / "report.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
