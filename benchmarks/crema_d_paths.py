"""What each prediction path says about the CREMA-D clips, beside what the clips are and what people saw.

    python benchmarks/crema_d_paths.py --checkpoint demo_out/runs/rjca/model.safetensors [--face-model enet_b0_8_va_mtl]

Per clip (``../shared/data/crema_d/*.flv``, ODbL: see its LICENSE.txt): the acted category (from the file name),
the crowd's face-only, voice-only and audio-visual votes with their agreement levels
(``perception_votes.csv``), and each path's mean valence / arousal over the clip. Paths: a trained avaffect
checkpoint (``--checkpoint``; the demo's is trained on the synthetic set, so its numbers mean nothing about real
emotions) and a face model's own zero-shot V/A (``--face-model``; needs the file, which is never downloaded). A
path that cannot run here is listed with the reason. Reported, not gated: six clips of one actor say nothing
statistically; the page shows what a user would see. Written to ``docs/benchmarks/crema_d_paths.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from pages import publish

from avaffect.errors import AvaffectError
from avaffect.logs import quiet_third_party_logs
from avaffect.workflows.predict import FaceModelPredictor, Predictor

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "crema_d"
CATEGORIES = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--face-model", default="enet_b0_8_va_mtl")
    p.add_argument("--clips", type=Path, default=CLIPS)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "crema_d_paths.md")
    args = p.parse_args(argv)
    quiet_third_party_logs()
    votes = pd.read_csv(args.clips / "perception_votes.csv").set_index("FileName")
    clips = sorted(args.clips.glob("*.flv"))
    paths: dict[str, object] = {}
    missing: dict[str, str] = {}
    if args.checkpoint is not None:
        paths[f"checkpoint `{args.checkpoint.parent.name}`"] = Predictor(args.checkpoint)
    try:
        paths[f"face model `{args.face_model}`"] = FaceModelPredictor(args.face_model)
    except AvaffectError as e:
        first = str(e).splitlines()[0]
        missing[f"face model `{args.face_model}`"] = ("its file is not in this machine's weights cache (user-supplied: "
                                                      "see the README)" if "is not at" in first else first[:200])
    lines = ["# CREMA-D clips: each path's valence / arousal beside the category and the crowd's votes", "",
             f"`python benchmarks/crema_d_paths.py{' --checkpoint ' + str(args.checkpoint) if args.checkpoint else ''}"
             f" --face-model {args.face_model}`: {len(clips)} clips of actor "
             f"{clips[0].name.split('_')[0] if clips else '?'} (CREMA-D, ODbL). Votes: the crowd's category (A anger, "
             "D disgust, F fear, H happy, N neutral, S sad) with its agreement level in %, from the face alone, "
             "the voice alone and both. Mean V / A: each path's mean over the clip's frames (face frames only "
             "for a face model). Reported, not gated. A checkpoint trained on the synthetic set (the demo's) has "
             "never seen a real face or voice: its numbers mean nothing about these clips, and the table shows it.",
             ""]
    head = "| clip | category | face vote | voice vote | A-V vote |" + "".join(f" {n}: V / A |" for n in paths)
    lines += [head, "|---|---|---|---|---|" + "---:|" * len(paths)]
    for clip in clips:
        v = votes.loc[clip.stem] if clip.stem in votes.index else None
        cells = [f"`{clip.stem}`", CATEGORIES.get(clip.stem.split("_")[2], "?")]
        for kind in ("Face", "Voice", "MultiModal"):
            cells.append(f"{v[kind + 'Vote']} ({float(v[kind + 'Level']):.0f} %)" if v is not None else "–")
        for predictor in paths.values():
            s = predictor(clip).summary
            va, ar = s.valence_mean, s.arousal_mean
            cells.append("–" if va is None else f"{va:+.3f} / {ar:+.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name, why in missing.items():
        lines.append(f"- {name}: not run here — {why}.")
    return publish(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
