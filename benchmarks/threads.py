"""Torch threads, OpenMP's wait policy and glibc's allocator settings for a demo-size training step, idle and
with the cores busy, side by side in one run.

    python benchmarks/threads.py [--workload demo|paper] [--rounds 3] [--steps 12] [--load 4] [--report-only]

Each setting runs in its own child process (OpenMP and malloc read their environment once, at start-up); the
child builds the workload's model, warms up, and times ``--steps`` Adam steps; its median step time is one
sample. Workloads: ``demo`` (``configs/demo.yaml``: ``rjca`` on 132-d ``logmel_stats`` + 640-d ``face_hog``
features, batch 8, window 150), ``paper`` (the ``rjca`` preset on the papers' 512 + 512 features, window 300,
batch 12; its encoders project to 64 features first) and ``jca_block`` (one time-major JCA block on the raw
512 + 512 features, window 300, batch 12: its ``[B, 512, 1024]`` attention maps are the large tensors the
allocator settings are about). Results of
every workload are kept in ``docs/benchmarks/threads.json`` and the Markdown table is rebuilt from all of them.
Settings are interleaved round by round, so slow phases of a shared machine hit all of them alike. "Loaded" runs
``--load`` busy-looping processes beside the child (on a 2-core machine, 4 keep both cores saturated, as another
job's test suite or a parallel extraction would).

Compared: torch's default 2 threads with OpenMP's default wait policy (spin, then sleep: what avaffect's training
did before), 1 thread (training's ``cpu_threads: auto`` on a 2-core machine), 2 threads with
``OMP_WAIT_POLICY=PASSIVE`` (what ``make test`` set before), and PASSIVE plus ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` raised so that large tensors are reused from the heap instead of being mapped and
unmapped (fresh pages fault in) at every step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pages import publish

SETTINGS = {
    "2 threads, OpenMP default (before)": {"threads": 2, "env": {}},
    "1 thread (now: cpu_threads auto)": {"threads": 1, "env": {}},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "2 threads, PASSIVE + malloc thresholds": {
        "threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE", "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
                              "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}},
}
BASE = next(iter(SETTINGS))
WORKLOADS = {"demo": {"d": (132, 640), "batch": 8, "window": 150},
             "paper": {"d": (512, 512), "batch": 12, "window": 300},
             "jca_block": {"d": (512, 512), "batch": 12, "window": 300}}


def child(threads: int, steps: int, workload: str) -> None:
    import torch

    from avaffect.config import make_config
    from avaffect.training.run import build_model
    from avaffect.workflows.demo import demo_config_dict

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = WORKLOADS[workload]
    (d_a, d_v), b, w = spec["d"], spec["batch"], spec["window"]
    cfg = make_config(demo_config_dict(), {"data": {"root": "/nonexistent"},
                                           "training": {"batch_size": b, "window": w}})
    if workload == "jca_block":  # one time-major JCA block on the raw 512-d features: its maps are [B, 512, 1024]
        from avaffect.models.blocks.jca import TimeMajorJCA

        block = TimeMajorJCA(d_a, d_v, w)

        def model(a, v, mask):
            return torch.cat(block(a, v, mask), -1)[..., :2]

        params = list(block.parameters())
    else:
        model = build_model(cfg, d_a, d_v)
        params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    a, v = torch.randn(b, w, d_a), torch.randn(b, w, d_v)
    mask, y = torch.ones(b, w, dtype=torch.bool), torch.randn(b, w, 2)
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        opt.zero_grad()
        loss = ((model(a, v, mask) - y) ** 2).mean()
        loss.backward()
        opt.step()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t)
    print(json.dumps({"median_s": statistics.median(times)}))


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def run(args) -> dict:
    results: dict[str, dict[str, list[float]]] = {"idle": {}, "loaded": {}}
    for load in ("idle", "loaded"):
        hogs = _busy(args.load) if load == "loaded" else []
        try:
            for r in range(args.rounds):
                for name, s in SETTINGS.items():
                    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
                    env.update(s["env"])
                    out = subprocess.run([sys.executable, __file__, "--child", str(s["threads"]), "--steps",
                                          str(args.steps), "--workload", args.workload], env=env,
                                         capture_output=True, text=True, check=True)
                    sec = json.loads(out.stdout.strip().splitlines()[-1])["median_s"]
                    results[load].setdefault(name, []).append(sec)
                    print(f"{load} round {r}: {name}: {sec * 1000:.1f} ms", flush=True)
        finally:
            for h in hogs:
                h.kill()
    return results


def render(all_results: dict) -> str:
    from avaffect.workflows.bench import machine

    info = machine()
    lines = ["# Threads, OpenMP wait policy and allocator: a training step", "",
             f"`python benchmarks/threads.py` on {info['cpu']} ({info['cores']} cores, torch {info['torch']}). Each "
             "cell: the median over interleaved rounds of a child process's median step time (Adam steps); the "
             "ratio is to the first row of the same column (lower is faster). Loaded: busy-looping processes "
             "beside the child (4 on this 2-core machine).", ""]
    for workload, entry in all_results.items():
        spec, results, run = WORKLOADS[workload], entry["results"], entry["args"]
        what = "one TimeMajorJCA block" if workload == "jca_block" else "rjca"
        lines += [f"## {workload}: {what}, {spec['d'][0]} + {spec['d'][1]} features, batch {spec['batch']}, window "
                  f"{spec['window']} ({run['rounds']} rounds x {run['steps']} steps, load {run['load']})", "",
                  "| setting | idle: ms / step | idle: ratio | loaded: ms / step | loaded: ratio |",
                  "|---|---:|---:|---:|---:|"]
        med = {load: {k: statistics.median(v) for k, v in d.items()} for load, d in results.items()}
        for name in SETTINGS:
            i, lo = med["idle"][name], med["loaded"][name]
            lines.append(f"| {name} | {i * 1000:.1f} | {i / med['idle'][BASE]:.2f} | {lo * 1000:.1f} | "
                         f"{lo / med['loaded'][BASE]:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="demo")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--load", type=int, default=4, help="busy processes in the loaded runs")
    p.add_argument("--report-only", action="store_true", help="rebuild the Markdown from the JSON")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
                   / "threads.md")
    args = p.parse_args(argv)
    if args.child is not None:
        child(args.child, args.steps, args.workload)
        return 0
    store = args.out.with_suffix(".json")
    all_results = json.loads(store.read_text()) if store.is_file() else {}
    if not args.report_only:
        all_results[args.workload] = {"results": run(args), "args": {"rounds": args.rounds, "steps": args.steps,
                                                                     "load": args.load}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(all_results, indent=1) + "\n")
    text = render(all_results)
    return publish(args.out, text)


if __name__ == "__main__":
    raise SystemExit(main())
