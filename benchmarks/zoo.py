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
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from avaffect.cli.main import quiet_third_party_logs
from avaffect.config import make_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.synth import SynthConfig, write_synthetic_dataset
from avaffect.data.windows import cut_window, window_mask
from avaffect.demo import demo_config_dict
from avaffect.evaluation.reports import atomic_write_text
from avaffect.models import list_models
from avaffect.models.checkpoint import load_checkpoint
from avaffect.training.run import ensure_features, load_features, train


def gate_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The gate weights the last forward left on any submodule (``last_gate_weights``), first batch item."""
    out = {}
    for name, mod in model.named_modules():
        weights = getattr(mod, "last_gate_weights", None)
        if isinstance(weights, dict):
            for k, w in weights.items():
                out[f"{name}.{k}" if name else k] = w[0].detach().cpu().numpy()
    return out


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
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{model_name}: gate weights over time (shaded: weak segments)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


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
    args = p.parse_args(argv)
    quiet_third_party_logs()
    models = args.models or list_models()
    work = args.work or args.out / "work"
    args.out.mkdir(parents=True, exist_ok=True)
    rows, t0 = [], time.perf_counter()
    gated_plots: dict[str, Path] = {}
    for rate in args.rates:
        root = write_synthetic_dataset(work / f"data-weak{rate:g}",
                                       SynthConfig(weak_rate=rate, n_train=args.n_train, n_val=args.n_val),
                                       progress=False)
        recs = load_affwild2(root, splits=("train", "validation"))
        base = make_config(demo_config_dict(), {"data": {"root": str(root)},
                                                "training": {"max_epochs": args.max_epochs}})
        store, audio_ex, video_ex = ensure_features(base, recs, progress=False)
        for name in models:
            for seed in range(args.seeds):
                cfg = make_config(base.model_dump(mode="json"), {"model": {"name": name, "params": {}},
                                                                 "training": {"seed": seed}})
                t = time.perf_counter()
                res = train(cfg, work / "runs" / f"weak{rate:g}" / name / f"seed{seed}", recs, progress=False)
                rows.append({"model": name, "weak_rate": rate, "seed": seed, "seconds": time.perf_counter() - t,
                             **{k: res.metrics[k] for k in ("ccc_valence", "ccc_arousal", "p_va")}})
                print(f"weak={rate:g} {name:<18} seed={seed} P_VA={res.metrics['p_va']:.3f}", flush=True)
                if seed == 0 and rate == max(args.rates):
                    model, _ = load_checkpoint(res.checkpoint)
                    rec = next(r for r in recs if r.split == "validation")
                    f = load_features(store, audio_ex, video_ex, rec)
                    n = cfg.training.window  # one window from the start of the recording
                    with torch.no_grad():
                        model(torch.as_tensor(cut_window(f.audio, 0, n)[None]),
                              torch.as_tensor(cut_window(f.video, 0, n)[None]),
                              torch.as_tensor(window_mask(rec.num_frames, 0, n)[None]),
                              torch.as_tensor(cut_window(f.face_mask, 0, n, False)[None]))
                    gates = gate_weights(model)
                    if gates:
                        latent = dict(np.load(root / "latent" / f"{rec.name}.npz"))
                        gated_plots[name] = args.out / f"gates_{name}.png"
                        plot_gates(gated_plots[name], name, gates, rec.times, latent)
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    summary = df.groupby(["model", "weak_rate"])["p_va"].agg(["mean", "std", "count"]).reset_index()
    summary.to_csv(args.out / "summary.csv", index=False, float_format="%.4f")
    table = summary.pivot(index="model", columns="weak_rate", values=["mean", "std"])
    lines = ["# Model zoo on the synthetic set: weak-complementarity benchmark", "",
             f"Machine: {platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; "
             f"{args.seeds} seeds, max {args.max_epochs} epochs, {args.n_train} train / {args.n_val} validation "
             f"recordings; wall time {time.perf_counter() - t0:.0f} s.", "",
             "| model | " + " | ".join(f"P_VA weak={r:g}" for r in args.rates) + " |",
             "|---|" + "---:|" * len(args.rates)]
    for name in models:
        cells = [f"{table.loc[name, ('mean', r)]:.3f} ± {np.nan_to_num(table.loc[name, ('std', r)]):.3f}"
                 for r in args.rates]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, path in gated_plots.items():
        lines += ["", f"## Gates of {name}", "", f"![{name}]({path.name})"]
    atomic_write_text(args.out / "report.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
