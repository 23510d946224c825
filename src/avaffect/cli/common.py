"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from avaffect.errors import AvaffectError


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


def no_video_error(inputs: list[Path], fix: str = "pass video files, or folders that hold some") -> AvaffectError:
    """The one "no video found" message of ``predict``, ``bench`` and ``extract`` (a folder of videos): the inputs,
    the audio-only files found there (skipped: a recording needs a video track) and the extensions looked for."""
    from avaffect.data.folder import AUDIO_ONLY_FIX
    from avaffect.data.layout import AUDIO_EXTS, VIDEO_EXTS

    audio = [p for item in inputs if item.is_dir() for p in sorted(item.rglob("*")) if p.suffix.lower() in AUDIO_EXTS]
    skipped = (f"; skipped audio-only file(s) {', '.join(p.name for p in audio[:5])}"
               f"{' ...' if len(audio) > 5 else ''} — {AUDIO_ONLY_FIX}") if audio else ""
    return AvaffectError(f"no video found in {', '.join(map(str, inputs))}{skipped} — {fix} "
                         f"({', '.join(VIDEO_EXTS)})")
