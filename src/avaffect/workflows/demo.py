"""The main job: synthetic data → features → four models → evaluation → report (issue 1 of 5)."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from importlib import resources
from pathlib import Path

import yaml

from avaffect.config import RunConfig, make_config
from avaffect.data.affwild2 import load_affwild2
from avaffect.data.recording import TARGETS, Recording
from avaffect.data.synth import SynthConfig, write_synthetic_dataset
from avaffect.errors import AvaffectError, ConfigError
from avaffect.evaluation.reports import plot_recordings
from avaffect.files import atomic_write_text, write_json
from avaffect.pools import spawn_pool
from avaffect.progress import format_seconds, stage
from avaffect.threads import resolve_threads, usable_cores
from avaffect.training.run import RunResult, finished_run, train

DEMO_MODELS = ("audio_only", "video_only", "concat", "rjca")


def demo_config_dict() -> dict:
    return yaml.safe_load(resources.files("avaffect").joinpath("configs", "demo.yaml").read_text())


def demo_jobs(cfg: RunConfig, runs: int, jobs: int | str = "auto") -> int:
    """How many models train at once: ``auto`` = as many as the usable cores hold at the training's CPU thread
    count (``training.cpu_threads``: 1 thread each on 2 cores, so 2 at once), 1 where that count is not known
    (``OMP_NUM_THREADS`` set) or training runs on an accelerator; never more than ``runs``."""
    if jobs != "auto":
        if not isinstance(jobs, int) or jobs < 1:
            raise ConfigError(f"--jobs must be a whole number >= 1 or auto, got {jobs!r}")
        return max(1, min(jobs, runs))
    threads = resolve_threads(cfg.training.cpu_threads)
    if cfg.training.accelerator != "cpu" or threads is None:
        return 1
    return max(1, min(runs, usable_cores() // threads))


def _scores(res: RunResult) -> dict:
    """What the demo reports of a run: its validation CCCs and P_VA."""
    return {k: res.metrics[k] for k in ("ccc_valence", "ccc_arousal", "p_va")}


def _train_one(cfg: RunConfig, run_dir: Path, recordings: list[Recording]) -> tuple[dict, float]:
    """One model in a worker process: its metrics and training seconds."""
    t = time.perf_counter()
    res = train(cfg, run_dir, recordings, progress=False)
    return _scores(res), round(time.perf_counter() - t, 1)


def run_demo(out: str | Path = "demo_out", synth: SynthConfig | None = None, models=DEMO_MODELS,
             overrides: dict | None = None, progress: bool = True, num_plots: int = 3,
             jobs: int | str = "auto") -> dict:
    """Run the demo into ``out``; returns ``{model: {ccc_valence, ccc_arousal, p_va}}``.

    Every step is resumable: the synthetic set, the features and finished runs are reused. ``jobs``: models
    trained at once, each in its own process (:func:`demo_jobs`); every run is the same as when trained alone
    (its own seed, its own thread count).
    """
    out = Path(out)
    t0 = time.perf_counter()
    data_root = out / "data"
    say = stage if progress else (lambda text: None)
    say(f"demo 1/3: the synthetic dataset in {data_root}")
    write_synthetic_dataset(data_root, synth or SynthConfig(), progress=progress)
    recordings = load_affwild2(data_root, splits=("train", "validation"))
    base = make_config(demo_config_dict(), {"data": {"root": str(data_root)}, **(overrides or {})})
    say(f"demo 2/3: features of {len(recordings)} recordings")
    base.feature_pipeline().ensure(recordings, progress)
    configs = {name: base.model_copy(update={"model": base.model.model_copy(update={"name": name})})
               for name in models}
    todo = [n for n in models if finished_run(out / "runs" / n) is None]
    n_jobs = demo_jobs(base, len(todo), jobs)
    if n_jobs > 1:
        say(f"demo 3/3: {len(models)} models, {n_jobs} at once (a process each)")
        trained = _train_parallel(configs, todo, out, recordings, n_jobs, say)
    else:
        trained = {}
    results, timings = {}, {}
    for i, name in enumerate(models):
        if name in trained:
            results[name], timings[name] = trained[name]
            continue
        eta = (f", ETA {format_seconds(sum(timings.values()) / len(timings) * (len(models) - i))}" if timings
               else "")
        say(f"demo 3/3: model {i + 1}/{len(models)} {name}{eta}")
        t = time.perf_counter()
        res = train(configs[name], out / "runs" / name, recordings, progress)
        timings[name] = round(time.perf_counter() - t, 1)
        results[name] = _scores(res)
    write_json(out / "metrics.json", results)
    val = sorted([r for r in recordings if r.split == "validation" and r.has_labels], key=lambda r: r.name)
    plots = {}
    for name in models:
        import pandas as pd

        items = []
        for rec in val[:num_plots]:
            df = pd.read_csv(out / "runs" / name / "predictions" / "validation" / f"{rec.name}.csv")
            items.append((rec.name, df["time"].to_numpy(), df[list(TARGETS)].to_numpy(),
                          df[[f"label_{t}" for t in TARGETS]].to_numpy()))
        plots[name] = plot_recordings(out / "plots" / f"{name}.png", items, title=name)
    atomic_write_text(out / "report.md", render_report(results, plots, out, time.perf_counter() - t0, timings))
    return results


def _train_parallel(configs: dict[str, RunConfig], todo: list[str], out: Path, recordings: list[Recording],
                    jobs: int, say) -> dict[str, tuple[dict, float]]:
    """Train ``todo`` in ``jobs`` worker processes; ``{model: (metrics, seconds)}``. A run that fails stops the
    demo with its own message; the runs that finished stay finished (a second ``avaffect demo`` reuses them)."""
    done: dict[str, tuple[dict, float]] = {}
    with spawn_pool(jobs) as pool:
        futures = {pool.submit(_train_one, configs[n], out / "runs" / n, recordings): n for n in todo}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    name = futures[fut]
                    try:
                        done[name] = fut.result()
                    except BrokenProcessPool:
                        raise AvaffectError(f"{out / 'runs' / name}: its training process died (out of memory, or "
                                            "killed); run the demo again with --jobs 1 (finished models are "
                                            "kept)") from None
                    metrics, secs = done[name]
                    say(f"demo 3/3: {name} trained in {format_seconds(secs)} (P_VA {metrics['p_va']:.3f}), "
                        f"{len(done)}/{len(todo)}")
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return done


def render_report(results: dict, plots: dict, out: Path, seconds: float, timings: dict) -> str:
    lines = ["# avaffect demo report", "",
             "Validation split of the built-in synthetic dataset, global protocol (all frames of all "
             "recordings concatenated, the ABAW rule).", "",
             "| model | CCC valence | CCC arousal | P_VA | train time (s) |", "|---|---:|---:|---:|---:|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['ccc_valence']:.3f} | {m['ccc_arousal']:.3f} | {m['p_va']:.3f} | "
                     f"{timings.get(name, float('nan'))} |")
    best = max(results, key=lambda k: results[k]["p_va"])
    lines += ["", f"Best P_VA: **{best}**. Total wall time {seconds:.0f} s.", "",
              "The synthetic face carries valence strongly and arousal weakly, the voice the reverse, so a "
              "fused model should beat both unimodal ones.", ""]
    for name, p in plots.items():
        lines += [f"## {name}", "", f"![{name}]({Path(p).relative_to(out).as_posix()})", ""]
    return "\n".join(lines)
