"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from avaffect.errors import AvaffectError, ConfigError


def add_synth_args(p: argparse.ArgumentParser) -> None:
    from avaffect.data.synth import SynthConfig

    g = p.add_argument_group("synthetic dataset")
    for name, field in SynthConfig.model_fields.items():
        flag, help_ = f"--{name.replace('_', '-')}", f"{field.description or name} (default {field.default})"
        if field.annotation is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, dest=f"synth_{name}", help=help_)
            continue
        kind = next((t for t in (int, float, str) if field.annotation in (t, t | None)), None)
        if kind is not None:
            g.add_argument(flag, type=kind, default=None, dest=f"synth_{name}", help=help_)


def synth_config(args):
    from avaffect.data.synth import SynthConfig

    given = {k[len("synth_"):]: v for k, v in vars(args).items() if k.startswith("synth_") and v is not None}
    try:
        return SynthConfig(**given)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) + ': ' if err['loc'] else ''}"
                             f"{err['msg'].removeprefix('Value error, ')}" for err in e.errors())
        raise ConfigError(f"synthetic dataset options: {problems} (see --help)") from None


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
