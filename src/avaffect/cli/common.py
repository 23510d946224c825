"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse


def add_synth_args(p: argparse.ArgumentParser) -> None:
    from avaffect.data.synth import SynthConfig

    g = p.add_argument_group("synthetic dataset")
    for name, field in SynthConfig.model_fields.items():
        kind = field.annotation if field.annotation in (int, float) else None
        if kind is None:
            continue
        g.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, dest=f"synth_{name}",
                       help=f"{field.description or name} (default {field.default})")


def synth_config(args):
    from avaffect.data.synth import SynthConfig

    given = {k[len("synth_"):]: v for k, v in vars(args).items() if k.startswith("synth_") and v is not None}
    return SynthConfig(**given)
