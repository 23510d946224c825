"""``predict --explain`` against the synthetic set's own plan: does the voice's contribution fall where the voice is
missing or noise, and the face's where the face is?

    python benchmarks/explain_synthetic.py --checkpoint demo_out/runs/rjca/model.safetensors \\
        demo_out/runs/concat/model.safetensors [more fusion runs] [--data demo_out/data]

``--data`` may be another synthetic set than the models were trained on (e.g. ``avaffect synth --out evalset
--seed 7 --n-train 0 --n-val 24``: 24 unseen validation videos, ~1,000 frames of each weak kind instead of the
demo's 114 to 448).

The synthetic recordings carry, per frame, the plan of their weak segments (``latent/<name>.npz``: ``voice_weak``
and ``face_weak``, codes none / missing / noisy / conflicting, ``avaffect.data.synth.plan``). Every validation video
is predicted with ``--explain`` (the demo model, its own face pipeline on the video), and the mean absolute
contribution of each modality (valence and arousal together) is reported per kind of segment of that modality;
and, per kind of voice segment, the signed contribution, the prediction and the latent value the labels follow
(what the voice did there: e.g. silence read as low arousal). Each model is labelled with its
``training.modality_dropout`` (from the checkpoint) and its validation P_VA (its run's ``metrics.json``).
Written to ``docs/benchmarks/explain.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from pages import publish

REPO = Path(__file__).resolve().parents[1]


def measure(checkpoint: Path, data: Path, names: list[str]) -> tuple[list[dict], dict[str, float], list[dict]]:
    """Per modality and kind of segment, the contribution's statistics on the validation videos ``names``; the
    share of frames with a face found per kind of face segment; per kind of voice segment and target, the mean
    signed voice contribution, prediction and latent value."""
    from avaffect.data.synth.plan import WEAK_CODES
    from avaffect.workflows.predict import PredictorOptions, load_predictor

    pred = load_predictor(checkpoint, options=PredictorOptions(explain=True))
    kinds = {v: k for k, v in WEAK_CODES.items()}
    sums: dict[tuple[str, str], list[np.ndarray]] = {}
    face_found: dict[str, list[np.ndarray]] = {}
    with_face: dict[tuple[str, str], list[np.ndarray]] = {}
    signed: dict[tuple[str, str], list[np.ndarray]] = {}
    for name in names:
        video = next((data / "videos").glob(f"{name}.*"))
        run = pred(video)
        latent = np.load(data / "latent" / f"{name}.npz")
        n = min(len(run.columns["time"]), len(latent["voice_weak"]))
        found = np.asarray(run.columns["face_detected"][:n], bool)
        for m in ("voice", "face"):
            c = np.abs(run.values([f"valence_{m}", f"arousal_{m}"])[:n]).mean(axis=1)
            plan = latent[f"{m}_weak"][:n]
            for code in np.unique(plan):
                sums.setdefault((m, kinds[int(code)]), []).append(c[plan == code])
                with_face.setdefault((m, kinds[int(code)]), []).append(c[(plan == code) & found])
        plan = latent["voice_weak"][:n]
        for code in np.unique(plan):
            for t in ("valence", "arousal"):
                sel = plan == code
                signed.setdefault((kinds[int(code)], t), []).append(np.stack(
                    [run.values([f"{t}_voice"])[:n, 0][sel], run.values([t])[:n, 0][sel], latent[t][:n][sel]], 1))
        for code in np.unique(latent["face_weak"][:n]):
            face_found.setdefault(kinds[int(code)], []).append(found[latent["face_weak"][:n] == code])
    rows = []
    for (m, kind), parts in sorted(sums.items()):
        v = np.concatenate(parts)
        w = np.concatenate(with_face[(m, kind)])
        rows.append({"modality": m, "segment": kind, "frames": int(len(v)), "mean_abs": float(v.mean()),
                     "median_abs": float(np.median(v)), "frames_with_face": int(len(w)),
                     "mean_abs_with_face": float(w.mean()) if len(w) else None})
    voice = []
    for (kind, t), parts in sorted(signed.items()):
        v = np.concatenate(parts)
        voice.append({"segment": kind, "target": t, "frames": int(len(v)), "contribution": float(v[:, 0].mean()),
                      "prediction": float(v[:, 1].mean()), "latent": float(v[:, 2].mean())})
    return rows, {k: float(np.concatenate(v).mean()) for k, v in face_found.items()}, voice


def training_set(run_dir: Path) -> str | None:
    """The synthetic set a run was trained on, in words: its voice and face plans where they are not the
    defaults (``synth_config.json`` beside the set's data, found through the run's ``config.yaml``)."""
    import yaml

    from avaffect.data.synth import SynthConfig

    try:
        root = Path(yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["root"])
        cfg = json.loads((root / "synth_config.json").read_text())
    except (OSError, KeyError, TypeError, ValueError):
        return None
    default = SynthConfig().model_dump()
    changed = [f"{k} {v}" for k, v in cfg.items() if k.startswith(("voice_weak", "face_weak", "weak_"))
               and v != default.get(k)]
    return f"the synthetic set ({', '.join(changed)})" if changed else "the default synthetic set (the demo's)"


def evaluated_on(data: Path) -> str:
    """The evaluated synthetic set in words: its seed and plan (``synth_config.json``)."""
    try:
        cfg = json.loads((data / "synth_config.json").read_text())
    except (OSError, ValueError):
        return "a synthetic set"
    return (f"synthetic, seed {cfg.get('seed')}, voice weak rate {cfg.get('voice_weak_rate') or cfg.get('weak_rate')}"
            f" of kinds {cfg.get('voice_weak_kinds')}")


def label(checkpoint: Path, name: str | None = None) -> dict:
    """``name`` (default: the run folder's name), the checkpoint's ``training.modality_dropout`` and its run's
    validation P_VA."""
    from avaffect.deploy.formats import read_checkpoint_meta

    dropout = read_checkpoint_meta(checkpoint)["extra"].get("modality_dropout") or {}
    metrics = checkpoint.parent / "metrics.json"
    p_va = json.loads(metrics.read_text())["overall"].get("p_va") if metrics.is_file() else None
    md = (f"modality dropout voice {dropout.get('voice', 0):g} / face {dropout.get('face', 0):g}"
          if any(dropout.get(k, 0) for k in ("voice", "face")) else "no modality dropout")
    name = name or checkpoint.parent.name
    trained = training_set(checkpoint.parent)
    if trained:
        md = f"{md}; trained on {trained}"
    return {"model": name, "modality_dropout": dropout, "p_va": p_va,
            "label": f"{name} ({md}{'' if p_va is None else f'; its own val P_VA {p_va:.3f}'})"}


def ratios(rows: list[dict], modality: str) -> dict[str, float]:
    """A modality's mean contribution in each kind of its weak segments over its ``none`` segments'."""
    by = {r["segment"]: r["mean_abs"] for r in rows if r["modality"] == modality}
    base = by.get("none")
    return {k: by[k] / base for k in ("missing", "noisy", "conflicting") if k in by and base}


def conclusion(models: dict[str, dict]) -> list[str]:
    """What the table shows, read from the numbers: per weak kind of the voice, which models it falls for; where
    it does not fall in silence, what the model predicts there against the latent value."""
    out = []
    for kind, words in (("noisy", "drowns it in noise (`noisy`)"), ("missing", "silences it (`missing`)")):
        falls = [m["label"] for m in models.values() if m["voice"].get(kind, 1.0) < 1.0]
        rest = [m["label"] for m in models.values() if m["voice"].get(kind, 1.0) >= 1.0]
        out.append(f"- Where the plan {words}, the voice moves the values less than in its `none` segments for "
                   f"{len(falls)} of {len(models)} models" + (f"; not for {', '.join(rest)}" if rest else "") + ".")
    for m in models.values():
        by = {(r["segment"], r["target"]): r for r in m["voice_signed"]}
        if m["voice"].get("missing", 0.0) >= 1.0 and ("missing", "arousal") in by and ("none", "arousal") in by:
            sil, none = by[("missing", "arousal")], by[("none", "arousal")]
            out.append(f"- {m['label']}, in silence: mean predicted arousal {sil['prediction']:+.2f} against a "
                       f"latent {sil['latent']:+.2f} (in `none` segments {none['prediction']:+.2f} against "
                       f"{none['latent']:+.2f}); the voice's signed contribution to arousal there is "
                       f"{sil['contribution']:+.2f}.")
    out += ["", "Occlusion replaces a frame's audio features by their training mean (an average voice; the face: "
            "the mask off). A contribution is faithful to the model — how far this input moved the value from what "
            "the model gives without it — not a measure of how much information the input holds. The synthetic "
            "voice pauses between phrases for longer at low arousal (`avaffect.data.synth.voice`: a pause lasts "
            "0.2-0.8 s x 2^(-0.8 a)), so in its training data silence is itself evidence of low arousal; a model "
            "that reads a silenced stretch as low arousal gives the voice a large contribution there, and the "
            "table of what the voice did shows it (a prediction below the latent). `training.modality_dropout` "
            "teaches a model that the occluded inputs mean 'no information'; it does not teach it that a long "
            "silence is not a long pause: training data where a silenced voice is common does (`avaffect synth "
            "--voice-weak-rate 0.3 --voice-weak-kinds missing,noisy`: about 15 % of the frames silent instead of "
            "about 7 %), and the two together give the clearest reading (the rows above). The face's contribution "
            "is 0 wherever no face was found in a window "
            "(Haar misses many of the cartoon faces, more so in their weak segments)."]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, nargs="+", required=True, help="one or more fusion checkpoints "
                    "trained on the synthetic set (e.g. the demo's rjca and concat runs)")
    ap.add_argument("--labels", nargs="+", help="a name per checkpoint for the tables (default: run folder names)")
    ap.add_argument("--data", type=Path, help="the synthetic dataset (default: data/ beside the first run folder)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "explain.md")
    args = ap.parse_args()
    if args.labels and len(args.labels) != len(args.checkpoint):
        ap.error(f"--labels: {len(args.labels)} names for {len(args.checkpoint)} checkpoints")
    data = args.data or args.checkpoint[0].resolve().parents[2] / "data"
    names = sorted(p.stem for p in (data / "annotations" / "VA_Estimation_Challenge" / "Validation_Set").glob("*.txt"))
    models = {}
    for i, ckpt in enumerate(args.checkpoint):
        rows, found_rows, voice_rows = measure(ckpt, data, names)
        models[str(ckpt)] = {**label(ckpt, args.labels[i] if args.labels else None), "rows": rows,
                             "face_found": found_rows, "voice_signed": voice_rows,
                             "voice": ratios(rows, "voice"), "face": ratios(rows, "face")}
    res = {"checkpoints": [str(c) for c in args.checkpoint], "data": str(data), "videos": names, "models": models,
           "date": time.strftime("%Y-%m-%d")}
    lines = ["# `predict --explain` on the synthetic validation set: where each modality moves the values", "",
             f"Generated by `python benchmarks/explain_synthetic.py` ({res['date']}), "
             f"{len(models)} fusion models trained with the demo's configuration (`training.modality_dropout` "
             f"and the synthetic set each was trained on are in its label), {len(names)} validation videos of "
             f"`{data.name}` ({evaluated_on(data)}), the model's own "
             "face pipeline (Haar) on the videos. Contribution: |value − value with that modality replaced by its "
             "missing input (the audio features' training mean; the face mask off)|, valence and arousal averaged, "
             "per frame; grouped by the synthetic plan's segments of that modality.", "",
             "Each modality's mean contribution in its weak segments over its `none` segments:", "",
             "| model | voice missing | voice noisy | voice conflicting | face missing | face noisy | "
             "face conflicting |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for m in models.values():
        cells = [f"{m[mod].get(k, float('nan')):.2f}x" for mod in ("voice", "face")
                 for k in ("missing", "noisy", "conflicting")]
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    lines += ["", *conclusion(models)]
    for m in models.values():
        lines += ["", f"## {m['label']}", "",
                  "| modality | its segments | frames | mean abs contribution | median | frames with a face found | "
                  "mean abs there |", "|---|---|---:|---:|---:|---:|---:|"]
        for r in m["rows"]:
            there = "–" if r["mean_abs_with_face"] is None else f"{r['mean_abs_with_face']:.3f}"
            lines.append(f"| {r['modality']} | {r['segment']} | {r['frames']} | {r['mean_abs']:.3f} | "
                         f"{r['median_abs']:.3f} | {r['frames_with_face']} | {there} |")
        lines += ["", "Face found by the detector, by the plan's face segments: " +
                  ", ".join(f"{k} {v:.0%}" for k, v in sorted(m["face_found"].items())) + ".", "",
                  "What the voice did, per kind of voice segment (means over its frames): the signed voice "
                  "contribution, the prediction, and the latent value the labels follow.", "",
                  "| voice segments | target | frames | voice contribution | prediction | latent |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['segment']} | {r['target']} | {r['frames']} | {r['contribution']:+.3f} | "
                  f"{r['prediction']:+.3f} | {r['latent']:+.3f} |" for r in m["voice_signed"]]
    publish(args.out, "\n".join(lines) + "\n", res)


if __name__ == "__main__":
    main()
