"""``avaffect`` command line: one sub-command per step of the research flow (docs/design.md §1).

Each ``avaffect.cli.*_cmds`` module registers its sub-commands; add a module to ``COMMAND_MODULES``.

Sub-command functions import what they need when they run (``import lightning`` alone costs seconds),
so that ``avaffect --help`` and the light commands start fast; those imports only go downward.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import time

from avaffect._version import __version__
from avaffect.errors import AvaffectError
from avaffect.logs import quiet_third_party_logs

COMMAND_MODULES = ("train_cmds", "config_cmds", "synth_cmds", "dataset_cmds", "features_cmds", "models_cmds",
                   "eval_cmds", "predict_cmds", "live_cmds", "calibrate_cmds", "bench_cmds",
                   "weights_cmds")
DESCRIPTION = ("avaffect: per-frame valence and arousal from a video's face and voice. One sub-command per step: "
               "prepare a dataset, extract features, train, evaluate, submit, or predict on any video.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avaffect", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"avaffect {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"avaffect.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()  # what a command reports as "since the command started"
    args = build_parser().parse_args(argv)
    args.started = started
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        quiet_third_party_logs()
    try:
        return int(args.func(args) or 0)
    except AvaffectError as e:
        if args.verbose:
            raise
        print(f"avaffect: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `avaffect ... | head`: the reader left; stop quietly, as other CLI tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 1
    except KeyboardInterrupt:
        print("avaffect: interrupted; finished work is kept and the next run resumes", file=sys.stderr)
        return 130
    except OSError as e:  # a folder that is a file, no permission, a full disk: say which path and what to do
        if args.verbose:
            raise
        where = e.filename or "a file"
        fix = ("free some disk space and run the command again (finished work is kept)" if e.errno == errno.ENOSPC
               else "check the path (an output folder must be a folder you can write to)")
        print(f"avaffect: error: {where}: {e.strerror or e} — {fix}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
