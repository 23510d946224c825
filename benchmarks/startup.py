"""How long a command takes to start: ``avaffect --help`` and friends, this checkout against an older one.

    git worktree add /tmp/avaffect-before <commit>
    python benchmarks/startup.py --before-src /tmp/avaffect-before/src [--runs 7]

Each command runs as ``python -c "from avaffect.cli.main import main; main([...])"`` with ``PYTHONPATH`` set to
this checkout's ``src`` (and, for the "before" column, to the older checkout's), alternating A B A B; the table
gives the median wall seconds and the ratio before / now. Written to ``docs/benchmarks/startup.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pages import publish

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {"avaffect --help": ["--help"], "avaffect predict --help": ["predict", "--help"],
            "avaffect config list": ["config", "list"]}


def _run(src: Path, argv: list[str]) -> float:
    code = f"import sys; from avaffect.cli.main import main; sys.argv[0] = 'avaffect'; main({argv!r})"
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before-src", type=Path, default=None, help="the src/ folder of an older checkout")
    p.add_argument("--before-label", default="before")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "startup.md")
    args = p.parse_args(argv)
    srcs = {"now": REPO / "src"} | ({args.before_label: args.before_src} if args.before_src else {})
    times = {(c, k): [] for c in COMMANDS for k in srcs}
    for name, cmd in COMMANDS.items():
        for src in srcs.values():
            _run(src, cmd)  # warm-up (file cache)
        for _ in range(args.runs):
            for k, src in srcs.items():
                times[(name, k)].append(_run(src, cmd))
        print(name, {k: round(statistics.median(times[(name, k)]), 3) for k in srcs}, flush=True)
    from avaffect.workflows.bench import machine

    info = machine()
    head = "| command | now: median s |" + (f" {args.before_label}: median s | {args.before_label} / now |"
                                            if args.before_src else "")
    lines = ["# Start-up time of the command line", "",
             f"`python benchmarks/startup.py --runs {args.runs}` on {info['cpu']} ({info['cores']} cores, Python "
             f"{info['python']}): wall seconds of a whole process, {args.runs} alternating runs after a warm-up, "
             "median." + (f" \"{args.before_label}\": `{args.before_src}`." if args.before_src else ""), "",
             head, "|---|---:|" + ("---:|---:|" if args.before_src else "")]
    for name in COMMANDS:
        now = statistics.median(times[(name, "now")])
        row = f"| `{name}` | {now:.2f} |"
        if args.before_src:
            before = statistics.median(times[(name, args.before_label)])
            row += f" {before:.2f} | {before / now:.1f}x |"
        lines.append(row)
    return publish(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
