"""Dataset commands: ``synth``."""

from __future__ import annotations

from avaffect.cli.common import add_synth_args, synth_config


def cmd_synth(args) -> int:
    from avaffect.data.synth import write_synthetic_dataset

    root = write_synthetic_dataset(args.out, synth_config(args), progress=not args.quiet)
    print(f"synthetic dataset ready at {root}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic dataset (Aff-Wild2 layout)")
    p.add_argument("--out", required=True, help="dataset root to write")
    p.add_argument("-q", "--quiet", action="store_true")
    add_synth_args(p)
    p.set_defaults(func=cmd_synth)
