"""``predict``: per-frame valence/arousal, plots and an overlay for any video."""

from __future__ import annotations

from pathlib import Path

from avaffect.data.folder import list_videos


def expand_inputs(items: list[Path]) -> list[Path]:
    """Files as given; folders expanded to the videos they hold (recursively, sorted)."""
    out = []
    for item in items:
        out += list_videos(item) if item.is_dir() else [item]
    return out


def cmd_predict(args) -> int:
    from avaffect.errors import AvaffectError
    from avaffect.workflows.predict import Predictor, write_outputs

    predictor = Predictor(args.checkpoint, device=args.device)
    videos = expand_inputs(args.inputs)
    if not videos:
        raise AvaffectError(f"no video found in {', '.join(map(str, args.inputs))}")
    if args.crops is not None and len(videos) != 1:
        raise AvaffectError("--crops gives the face crops of one video: pass exactly one video with it")
    failed = 0
    for video in videos:
        try:
            result = predictor(video, args.crops)
        except AvaffectError as e:  # one bad video does not stop the others
            print(f"FAILED {video}: {e}")
            failed += 1
            continue
        paths = write_outputs(result, args.out, video.stem, overlay=args.overlay)
        s = result.summary
        print(f"{video}: {s['frames']} frames, face in {s['face_fraction']:.0%}, audio {s['audio']}, "
              f"{s['realtime_factor']}x real time → {paths['csv']}")
    if failed:
        print(f"{failed} of {len(videos)} videos failed")
    return 1 if failed else 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="per-frame valence/arousal of videos with a trained checkpoint")
    p.add_argument("checkpoint", type=Path, help="model.safetensors of a run")
    p.add_argument("inputs", type=Path, nargs="+", metavar="VIDEO_OR_FOLDER")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default predictions)")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.mp4 with the face box "
                   "and a valence/arousal indicator, audio kept")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--crops", type=Path, help="the video's own face crops (a cropped_aligned/<video>/ folder of "
                   "00001.jpg ...): use them instead of detecting faces (one video only)")
    p.set_defaults(func=cmd_predict)
