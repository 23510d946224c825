"""Weak-complementarity benchmarks of the model zoo: can the gates be shown to work?

Two modes, both training every model with the toolkit's own ``train`` (Lightning) on the synthetic dataset,
every run resumable (finished runs are reused):

* ``--condition NAME`` (the gating benchmark, ``docs/benchmarks/zoo/report.md``): a synthetic plan built so the
  question has an answer (:data:`CONDITIONS`; ``one_weak``: at every frame at least one modality is reliable, the
  other is noisy or conflicting in long runs, and both modalities carry both dimensions so a conflict is
  detectable). Models are preset names with optional variants, ``dca+oracle`` (:data:`VARIANTS`): the **oracle
  gate** reads the plan's true weak state instead of the features (``oracle_gate_channels``), which bounds what a
  gate that detected the weak segments perfectly could gain. Paired seeds (the same seed gives every model the
  same data order); per run: P_VA on all validation frames and on the frames where exactly one modality is weak,
  each gate's AUROC against the plan's weak codes, the fraction of collapsed gate frames (> 0.99 on one
  candidate) and a ridge probe on each modality's half of the fused features; per model: ΔCCC against the
  ungated baseline with a 95 % Student-t interval over seeds. ``--init-collapse`` adds the collapsed fraction at
  initialisation for every gated preset and gate initialisation. Writes ``OUT/report.md``, ``OUT/condition_runs.csv``,
  ``OUT/gate_auroc.csv``, ``OUT/init_collapse.csv`` and ``OUT/gates_<condition>_<model>.png``.

      python benchmarks/zoo.py --condition one_weak --seeds 5 --init-collapse

* ``--rates`` (the earlier benchmark, ``OUT/rates_report.md``): every preset at the default plan's shared weak rates.

      python benchmarks/zoo.py --rates 0.0 0.5 --seeds 3

Presets whose default is one model per target (ABAW8) are trained here jointly on valence and arousal (K = 2) so
every row is comparable.
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
from avaffect.data.synth import WEAK_NONE, SynthConfig, write_synthetic_dataset
from avaffect.data.windows import cut_window, window_mask
from avaffect.evaluation.gates import collapsed_fraction, paired_difference, ridge_probe, separation
from avaffect.evaluation.metrics import ccc
from avaffect.features.extractors.imported import ImportedAudio
from avaffect.features.run_features import TrainingStatistics
from avaffect.features.store import FeatureStore
from avaffect.files import atomic_write_text, write_json
from avaffect.logs import quiet_third_party_logs
from avaffect.models import list_models
from avaffect.models.checkpoint import load_checkpoint, read_checkpoint_meta
from avaffect.models.wrapper import AVRegressor
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
              torch.as_tensor(window_mask(rec.num_steps, 0, n)[None]),
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



# ------------------------------------------------------------------------------------------- the gating condition

ORACLE_STATE = ("face_weak", "voice_weak", "both_weak")  # the oracle gates' input: one 0/1 channel each

CONDITIONS: dict[str, dict] = {
    "one_weak": {
        "description": "At every frame at least one modality is reliable: the face and the voice are each weak 30 % "
                       "of the time, never at the same time, in 3-8 s runs that are noisy or conflicting (no missing "
                       "face: the face mask already tells the model); both modalities carry both dimensions "
                       "(face arousal and voice valence strength 0.7 instead of 0.25), so a conflict is detectable "
                       "as a disagreement",
        "synth": {"face_weak_rate": 0.3, "voice_weak_rate": 0.3, "weak_overlap": False,
                  "face_weak_kinds": "noisy,conflicting", "voice_weak_kinds": "noisy,conflicting",
                  "face_weak_min_s": 3.0, "face_weak_max_s": 8.0, "voice_weak_min_s": 3.0, "voice_weak_max_s": 8.0,
                  "face_arousal_strength": 0.7, "voice_valence_strength": 0.7},
    },
}
VARIANTS: dict[str, dict] = {
    "oracle": {"oracle_gate_channels": len(ORACLE_STATE)},  # gates read the true weak state, not the features
    "paper_init": {"gate_init": "xavier", "init_residual_scale": 1.0, "gate_bias": False},  # as the configs/papers
}
CONDITION_MODELS = ("rjca", "dca", "grjca", "hgrjca", "dca+oracle", "grjca+oracle", "hgrjca+oracle",
                    "rjca_abaw8", "grjca_abaw8", "hgrjca_abaw8", "hgrjca_abaw8+oracle",
                    "rjca_abaw8+paper_init", "grjca_abaw8+paper_init", "hgrjca_abaw8+paper_init", "hgrjca+paper_init")
UNGATED = {"dca": "rjca", "grjca": "rjca", "hgrjca": "rjca", "grjca_abaw8": "rjca_abaw8", "hgrjca_abaw8": "rjca_abaw8"}
GATED_PRESETS = ("dca", "grjca", "hgrjca", "hgrjca_abaw6", "grjca_abaw8", "hgrjca_abaw8")
INITS = {"toolkit default (nn.Linear init, W_h x 0.1)": {"gate_init": "pytorch", "init_residual_scale": 0.1},
         "papers (Xavier, W_h plain Xavier, no bias)": {"gate_init": "xavier", "init_residual_scale": 1.0,
                                                        "gate_bias": False},
         "Xavier x T (W_h x 0.1)": {"gate_init": "xavier_temperature", "init_residual_scale": 0.1}}


def ungated_counterpart(spec: str) -> str | None:
    """The model a gated ``spec`` is compared with: its preset's ungated counterpart, with the same initialisation
    (``+paper_init`` carries over; the oracle is compared with the plain counterpart)."""
    preset, *variants = spec.split("+")
    base = UNGATED.get(preset)
    return base + "+paper_init" if base and "paper_init" in variants else base


def parse_model(spec: str) -> tuple[str, dict]:
    """``"dca+oracle"`` → ``("dca", {...the oracle's params})``."""
    preset, *variants = spec.split("+")
    params: dict = {}
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown model variant {v!r} in {spec!r}; use one of {sorted(VARIANTS)}")
        params.update(VARIANTS[v])
    return preset, params


def oracle_state(latent: dict) -> np.ndarray:
    """``[T, 3]`` float32: face weak, voice weak, both weak (the plan's codes, 0/1)."""
    face, voice = latent["face_weak"] != WEAK_NONE, latent["voice_weak"] != WEAK_NONE
    return np.stack([face, voice, face & voice], axis=1).astype(np.float32)


def write_oracle_features(pipeline, recs, root: Path) -> dict:
    """Store ``[audio features ; oracle state]`` for every recording as ``imported_audio`` features; returns the
    extractor spec a run names to train on them."""
    base = pipeline.audio
    ex = ImportedAudio(dim=base.dim + len(ORACLE_STATE), tag=f"{base.id}+oracle-state")
    store: FeatureStore = pipeline.store
    for rec in recs:
        if store.is_done(ex, rec.name):
            continue
        stored = store.open(base, rec.name)
        state = oracle_state(np.load(root / "latent" / f"{rec.name}.npz"))
        store.save(ex, rec, np.concatenate([stored[0:len(stored)], state], axis=1), update_manifest=False)
    store.write_manifest(ex)
    return {"name": ex.name, "params": {"dim": ex.dim, "tag": ex.params["tag"]}}


def _fusion_forward(model, feats, window: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fused features ``[T, F]`` and gate weights ``{key: [T, n]}`` of one recording, from non-overlapping windows
    (the last one padded; padded steps dropped)."""
    captured: list[torch.Tensor] = []
    hook = model.net.fusion.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    fused, gates = [], {}
    n = len(feats)
    try:
        with torch.no_grad():
            for start in range(0, n, window):
                model(torch.as_tensor(cut_window(feats.audio, start, window)[None]),
                      torch.as_tensor(cut_window(feats.video, start, window)[None]),
                      torch.as_tensor(window_mask(n, start, window)[None]),
                      torch.as_tensor(cut_window(feats.face_mask, start, window, False)[None]))
                keep = min(window, n - start)
                fused.append(captured.pop()[0, :keep].numpy())
                for k, w in getattr(model.net, "last_gate_weights", {}).items():
                    gates.setdefault(k, []).append(w[0, :keep].numpy())
    finally:
        hook.remove()
    return np.concatenate(fused), {k: np.concatenate(v) for k, v in gates.items()}


def _p_va(pred: np.ndarray, label: np.ndarray, rows: np.ndarray) -> float:
    ok = rows & np.isfinite(label).all(1)
    if ok.sum() < 3:
        return float("nan")
    return float(np.mean([ccc(pred[ok, k], label[ok, k]) for k in range(2)]))


def analyse_run(run_dir: Path, root: Path, recs: list, window: int) -> dict:
    """The gate benchmark's measurements of one finished run (cached in ``RUN/gate_analysis.json``)."""
    cache = run_dir / "gate_analysis.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    model, _ = load_checkpoint(run_dir / "model.safetensors")
    cfg = make_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
    pipeline = cfg.feature_pipeline()
    parts: dict[str, dict[str, list]] = {"train": {}, "validation": {}}
    for rec, feats in zip(recs, pipeline.load_all(recs, progress=False), strict=True):
        state = oracle_state(np.load(root / "latent" / f"{rec.name}.npz")) > 0
        fused, gates = _fusion_forward(model, feats, window)
        face, voice = state[:, 0], state[:, 1]
        part = parts[rec.split]
        for key, value in (("fused", fused), ("label", feats.labels), ("face", face), ("voice", voice)):
            part.setdefault(key, []).append(value)
        if rec.split == "validation":
            csv = pd.read_csv(run_dir / "predictions" / "validation" / f"{rec.name}.csv")
            if len(csv) != len(feats):
                raise RuntimeError(f"{rec.name}: {len(csv)} prediction rows for {len(feats)} steps")
            part.setdefault("pred", []).append(csv[["valence", "arousal"]].to_numpy())
            for k, w in gates.items():
                part.setdefault(f"gate:{k}", []).append(w)
    tr = {k: np.concatenate(v) for k, v in parts["train"].items()}
    va = {k: np.concatenate(v) for k, v in parts["validation"].items()}
    one_weak = va["face"] ^ va["voice"]
    out = {"p_va": _p_va(va["pred"], va["label"], np.ones(len(one_weak), bool)),
           "p_va_one_weak": _p_va(va["pred"], va["label"], one_weak),
           "p_va_face_weak": _p_va(va["pred"], va["label"], va["face"] & ~va["voice"]),
           "p_va_voice_weak": _p_va(va["pred"], va["label"], va["voice"] & ~va["face"]),
           "p_va_clean": _p_va(va["pred"], va["label"], ~va["face"] & ~va["voice"]), "gates": {}}
    half = tr["fused"].shape[1] // 2
    fit = np.isfinite(tr["label"]).all(1)
    for name, cols in (("audio", slice(0, half)), ("video", slice(half, None))):
        pred = ridge_probe(tr["fused"][fit, cols], tr["label"][fit], va["fused"][:, cols], alpha=10.0)
        out[f"probe_{name}"] = _p_va(pred, va["label"], np.ones(len(pred), bool))
        out[f"probe_{name}_one_weak"] = _p_va(pred, va["label"], one_weak)
    for key in sorted(k for k in va if k.startswith("gate:")):
        w = va[key]
        out["gates"][key[len("gate:"):]] = {
            "collapsed": collapsed_fraction(w) if w.shape[1] > 1 else None,
            "auroc_face": [separation(w[:, j], va["face"]) for j in range(w.shape[1])] if w.shape[1] > 1 else None,
            "auroc_voice": [separation(w[:, j], va["voice"]) for j in range(w.shape[1])] if w.shape[1] > 1 else None,
        }
    write_json(cache, out)
    return out


def init_collapse(root: Path, base, seeds: int, window: int) -> pd.DataFrame:
    """Fraction of collapsed gate frames (> 0.99 on one candidate) at initialisation, per gated preset and
    initialisation, on the validation windows of ``root``. The models are :class:`AVRegressor` with the training
    split's statistics, as ``train`` builds them, so the gates see the inputs training starts from."""
    recs = load_affwild2(root, splits=("train", "validation"))
    pipeline = base.feature_pipeline()
    pipeline.ensure(recs, progress=False)
    statistics = TrainingStatistics.of(pipeline)
    statistics.finish([pipeline.load(r, statistics=statistics) for r in recs if r.split == "train"])
    val = [pipeline.load(r) for r in recs if r.split == "validation"]
    wins = [(f, s) for f in val for s in range(0, len(f) - window + 1, window)]
    audio, video, face = (torch.as_tensor(np.stack([cut_window(getattr(f, key), s, window, *extra) for f, s in wins]))
                          for key, extra in (("audio", ()), ("video", ()), ("face_mask", (False,))))
    mask = torch.ones(audio.shape[:2], dtype=torch.bool)
    rows = []
    for name in GATED_PRESETS:
        for label, params in INITS.items():
            for seed in range(seeds):
                torch.manual_seed(seed)
                model = AVRegressor(name, audio.shape[-1], video.shape[-1], {"window_length": window, **params})
                for modality, moments in (("audio", statistics.audio), ("video", statistics.video)):
                    model.set_moments(modality, moments.mean, moments.std())
                with torch.no_grad():
                    model.eval()(audio, video, mask, face)
                fr = [collapsed_fraction(w.numpy()) for w in model.net.last_gate_weights.values() if w.shape[-1] > 1]
                rows.append({"model": name, "init": label, "seed": seed, "collapsed_mean": float(np.mean(fr)),
                             "collapsed_max": float(np.max(fr))})
    return pd.DataFrame(rows)


def _ci(mean: float, lo: float, hi: float) -> str:
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else f"{mean:+.3f}"


def _paired(df: pd.DataFrame, name: str, base: str, metric: str) -> tuple[float, float, float]:
    """``paired_difference`` of ``metric`` between two models' runs, paired by seed (the seeds both have)."""
    a = df[df["model"] == name].set_index("seed")[metric]
    b = df[df["model"] == base].set_index("seed")[metric]
    common = [s for s in a.index if s in b.index]
    return paired_difference(a.loc[common].to_numpy(), b.loc[common].to_numpy())


def _gate_summary(gates: dict) -> tuple[float, float, float]:
    """Best separation over every gate column of a run (face, voice) and the mean collapsed fraction."""
    face = [a for g in gates.values() if g["auroc_face"] for a in g["auroc_face"]]
    voice = [a for g in gates.values() if g["auroc_voice"] for a in g["auroc_voice"]]
    coll = [g["collapsed"] for g in gates.values() if g["collapsed"] is not None]
    return _nanmax(face), _nanmax(voice), float(np.mean(coll)) if coll else float("nan")


def _nanmax(values: list[float]) -> float:
    return float(np.nanmax(values)) if values else float("nan")


def run_condition(args) -> int:
    spec = CONDITIONS[args.condition]
    work = args.work or args.out / "work"
    models = args.models or list(CONDITION_MODELS)
    t0 = time.perf_counter()
    synth = SynthConfig(n_train=args.n_train, n_val=args.n_val, duration_s=args.duration, **spec["synth"])
    root = write_synthetic_dataset(work / f"data-{args.condition}", synth, progress=False)
    recs = load_affwild2(root, splits=("train", "validation"))
    base = make_config(demo_config_dict(), {"data": {"root": str(root)},
                                            "training": {"max_epochs": args.max_epochs}})
    pipeline = base.feature_pipeline()
    pipeline.ensure(recs, progress=False)
    oracle_audio = write_oracle_features(pipeline, recs, root)
    window = base.training.window
    rows, auroc_rows = [], []
    for seed in range(args.seeds):  # seed-major: an interrupted invocation leaves every model with a few seeds
        for spec_name in models:
            preset, params = parse_model(spec_name)
            over = {"model": {"name": preset, "params": params}, "training": {"seed": seed}}
            if params.get("oracle_gate_channels"):
                over["features"] = {"audio": oracle_audio}
            cfg = make_config(base.model_dump(mode="json"), over)
            run_dir = work / "runs" / args.condition / spec_name / f"seed{seed}"
            if args.report_only and not (run_dir / "metrics.json").is_file():
                continue
            res = train(cfg, run_dir, recs, progress=False)
            a = analyse_run(run_dir, root, recs, window)
            face, voice, coll = _gate_summary(a["gates"])
            epochs = read_checkpoint_meta(run_dir / "model.safetensors")["extra"].get("epochs_trained")
            fit_s = json.loads((run_dir / "timings.json").read_text()).get("fit_s")
            rows.append({"model": spec_name, "seed": seed, "epochs": epochs, "fit_s": fit_s,
                         "p_va_trainer": res.metrics["p_va"],
                         **{k: v for k, v in a.items() if k != "gates"}, "gate_sep_face": face,
                         "gate_sep_voice": voice, "collapsed": coll})
            for key, g in a["gates"].items():
                auroc_rows.append({"model": spec_name, "seed": seed, "gate": key, "collapsed": g["collapsed"],
                                   "sep_face": json.dumps(g["auroc_face"]), "sep_voice": json.dumps(g["auroc_voice"])})
            print(f"{args.condition} {spec_name:<16} seed={seed} P_VA={a['p_va']:.3f} one-weak={a['p_va_one_weak']:.3f}"
                  f" gate sep face/voice={face:.2f}/{voice:.2f}", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "condition_runs.csv", index=False, float_format="%.4f")
    pd.DataFrame(auroc_rows).to_csv(args.out / "gate_auroc.csv", index=False, float_format="%.4f")
    for spec_name in models:
        run = work / "runs" / args.condition / spec_name / "seed0"
        if parse_model(spec_name)[0] in GATED_PRESETS and (run / "model.safetensors").is_file():
            plot_run_gates(run, root, args.out, f"{args.condition}_{spec_name}")
    init = None
    if args.init_collapse:
        init = init_collapse(root, base, args.seeds, window)
        init.to_csv(args.out / "init_collapse.csv", index=False, float_format="%.4f")
    elif (args.out / "init_collapse.csv").is_file():
        init = pd.read_csv(args.out / "init_collapse.csv")
    lines = condition_report(args, spec, df, init, time.perf_counter() - t0)
    atomic_write_text(args.out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(line for line in lines if line.startswith("|")))
    print(f"wrote {args.out / 'report.md'}")
    return 0


def verdicts(df: pd.DataFrame) -> list[str]:
    """One line per gated model with a counterpart: does its gate help on the one-weak frames (the 95 % interval of
    the paired ΔP_VA excludes 0), and how far is it from the oracle gate of the same preset."""
    out = []
    for name in dict.fromkeys(df["model"]):
        base = ungated_counterpart(name)
        if base is None or base not in set(df["model"]) or "oracle" in name.split("+"):
            continue
        mean, lo, hi = _paired(df, name, base, "p_va_one_weak")
        verdict = "helps" if lo > 0 else "hurts" if hi < 0 else "not shown (the interval includes 0)"
        line = f"- `{name}` vs `{base}` on one-weak frames: {_ci(mean, lo, hi)} — {verdict}"
        oracle = f"{name.split('+')[0]}+oracle"
        if oracle in set(df["model"]) and name == name.split("+")[0]:
            line += f"; the oracle gate of the same preset: {_ci(*_paired(df, oracle, base, 'p_va_one_weak'))}"
        out.append(line + ".")
    return out or ["- no gated model was run with its ungated counterpart"]


def condition_report(args, spec: dict, df: pd.DataFrame, init: pd.DataFrame | None, seconds: float) -> list[str]:
    metric = {"p_va": "P_VA all frames", "p_va_one_weak": "P_VA one-weak frames"}
    lines = [f"# Can the gates be shown to work? Condition `{args.condition}`", "",
             f"Machine: {platform.machine()} CPU ({machine()['cpu']}), {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}. Produced by `python benchmarks/zoo.py --condition {args.condition} --seeds "
             f"{args.seeds}{' --init-collapse' if init is not None else ''}` ({len(df)} runs, "
             f"{df['fit_s'].sum() / 60:.0f} min of training in all; finished runs are reused, this invocation took "
             f"{seconds:.0f} s).", "",
             f"**Condition.** {spec['description']}. {args.n_train} train / {args.n_val} validation recordings of "
             f"about {args.duration:g} s; demo training settings (window 150, hop 50, batch 8, Adam 2e-3, early "
             f"stopping on validation P_VA, at most {args.max_epochs} epochs), each preset with its own defaults.", "",
             "**Oracle gate** (`+oracle`): the same preset whose gates read the plan's true per-frame weak state "
             "(face weak, voice weak, both) instead of the attended features; it learns one weighting per state. "
             "It shows what a gate of that form gains when it detects the weak segments perfectly.", "",
             "**Metrics** (validation split, global CCC pooled over recordings, P_VA = mean of the valence and "
             "arousal CCC of the trainer's stitched predictions): all frames; the frames where exactly one "
             "modality is weak; ΔP_VA = model − its ungated counterpart (`rjca` for the generic presets, "
             "`rjca_abaw8` for ABAW8; `+paper_init` rows against the counterpart with the same initialisation), "
             "paired by seed (same data order), mean and 95 % Student-t interval over "
             "seeds; gate separation = max(AUROC, 1 − AUROC) of a gate column's weight against the plan's face "
             "(voice) weak codes, best column over all of the model's gates (0.5: the gates do not see the weak "
             "segments; per-gate values in `gate_auroc.csv`); collapsed = fraction of validation frames where a "
             "gate puts > 0.99 on one candidate (mean over the model's gates); probe = P_VA of a ridge regression "
             "(fitted on the training frames) from one modality's half of the fused features alone.", "",
             "| model | seeds | " + " | ".join(f"{m} (mean ± std)" for m in metric.values())
             + " | ΔP_VA all [95 % CI] | ΔP_VA one-weak [95 % CI] | gate sep. face / voice | collapsed | "
             "probe audio / video |",
             "|---|---:|" + "---:|" * (len(metric) + 5)]
    for name in dict.fromkeys(df["model"]):
        g = df[df["model"] == name].sort_values("seed")
        cells = [f"{g[m].mean():.3f} ± {g[m].std(ddof=0):.3f}" for m in metric]
        base = ungated_counterpart(name)
        deltas = ["—", "—"]
        if base is not None and base in set(df["model"]):
            deltas = [_ci(*_paired(df, name, base, m)) for m in metric]
        gates = (f"{g['gate_sep_face'].mean():.2f} / {g['gate_sep_voice'].mean():.2f}"
                 if np.isfinite(g["gate_sep_face"]).any() else "—")
        coll = f"{g['collapsed'].mean():.2f}" if np.isfinite(g["collapsed"]).any() else "—"
        lines.append(f"| {name} | {len(g)} | " + " | ".join(cells) + " | " + " | ".join(deltas) + f" | {gates} | "
                     f"{coll} | {g['probe_audio'].mean():.3f} / {g['probe_video'].mean():.3f} |")
    lines += ["", "Per-condition P_VA of each model on the frames where only the face / only the voice is weak and on "
              "clean frames: `condition_runs.csv`.", "", "## What it shows (computed from the table)", ""]
    lines += verdicts(df)
    if init is not None:
        lines += ["", "## Gates at initialisation: collapsed frames", "",
                  "Fraction of validation frames (standardised features, 150-step windows) where a gate puts > 0.99 "
                  "on one candidate, before any training, mean over the model's gates (max over its gates in "
                  "brackets), mean over init seeds. T = 0.1 multiplies the logits by 10.", "",
                  "| preset | " + " | ".join(INITS) + " |", "|---|" + "---:|" * len(INITS)]
        for name in GATED_PRESETS:
            g = init[init["model"] == name]
            cells = []
            for label in INITS:
                r = g[g["init"] == label]
                cells.append(f"{r['collapsed_mean'].mean():.2f} ({r['collapsed_max'].mean():.2f})" if len(r) else "—")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for path in sorted(args.out.glob(f"gates_{args.condition}_*.png")):
        name = path.stem[len(f"gates_{args.condition}_"):]
        lines += ["", f"### Gates of {name} (seed 0, first validation window; shaded: weak segments)", "",
                  f"![{name}]({path.name})"]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks/zoo"))
    p.add_argument("--work", type=Path, default=None, help="data + runs folder (default OUT/work, not committed)")
    p.add_argument("--condition", choices=sorted(CONDITIONS), default=None,
                   help="run the gating benchmark on this synthetic condition (otherwise: --rates)")
    p.add_argument("--models", nargs="+", default=None, help="presets, with +oracle / +paper_init variants for "
                   f"--condition (default: {' '.join(CONDITION_MODELS)}; for --rates every registered preset)")
    p.add_argument("--rates", nargs="+", type=float, default=[0.0, 0.5])
    p.add_argument("--seeds", type=int, default=None, help="paired seeds (default 5 with --condition, else 3)")
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--n-train", type=int, default=16)
    p.add_argument("--n-val", type=int, default=None, help="validation recordings (default 12 with --condition, "
                   "else 6)")
    p.add_argument("--duration", type=float, default=20.0, help="--condition: seconds per recording (+-25 %%)")
    p.add_argument("--init-collapse", action="store_true", help="--condition: also measure collapsed gates at "
                   "initialisation for every gated preset and gate initialisation")
    p.add_argument("--report-only", action="store_true", help="train nothing: rebuild the report from the runs "
                   "already in --work (e.g. after several invocations with different --models/--seeds)")
    args = p.parse_args(argv)
    quiet_third_party_logs()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.condition:
        args.seeds = 5 if args.seeds is None else args.seeds
        args.n_val = 12 if args.n_val is None else args.n_val
        return run_condition(args)
    args.seeds = 3 if args.seeds is None else args.seeds
    args.n_val = 6 if args.n_val is None else args.n_val
    models = args.models or list_models()
    work = args.work or args.out / "work"
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
        if name.split("_")[0] in CONDITIONS or name.startswith(tuple(f"{c}_" for c in CONDITIONS)):
            continue  # a --condition plot
        lines += ["", f"## Gates of {name} (weak={max(rates):g}, seed 0, first validation window)", "",
                  f"![{name}]({path.name})"]
    atomic_write_text(args.out / "rates_report.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'rates_report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
