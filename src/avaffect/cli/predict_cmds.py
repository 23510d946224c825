"""``predict``: per-frame valence/arousal, plots and an overlay for any video."""

from __future__ import annotations

import time
from pathlib import Path

from avaffect.cli.common import no_video_error
from avaffect.data.folder import list_videos
from avaffect.errors import AvaffectError


def expand_inputs(items: list[Path]) -> list[Path]:
    """Files as given; folders expanded to the videos they hold (recursively, sorted)."""
    return [video for video, _ in named_inputs(items)]


def named_inputs(items: list[Path]) -> list[tuple[Path, str]]:
    """``(video, output name)``: a file given by itself is named by its stem, a video found in a folder by its
    path inside that folder (``sub/clip``), so no two inputs share an output file; a clash that remains (two
    files of the same name given one by one) is refused before any work."""
    out: list[tuple[Path, str]] = []
    for item in items:
        if item.is_dir():
            out += [(v, v.relative_to(item).with_suffix("").as_posix()) for v in list_videos(item)]
        else:
            out.append((item, item.stem))
    seen: dict[str, Path] = {}
    for video, name in out:
        if name in seen and seen[name] != video:
            raise AvaffectError(f"{seen[name]} and {video} would both write {name}.csv: predict them into different "
                                "--out folders, or pass the folder that holds them (outputs are then named by "
                                "their path inside it)")
        seen[name] = video
    return out


def _is_model(item: Path) -> bool:
    """After the first model: one more member of an ensemble (a checkpoint file, or a folder written by ``export
    --out``), as opposed to a video or a folder of videos (which may hold a checkpoint of its own)."""
    from avaffect.deploy.formats import DEPLOY_FILE

    return item.suffix == ".safetensors" or (item.is_dir() and (item / DEPLOY_FILE).is_file())


def cmd_predict(args) -> int:
    from avaffect.progress import progress_bar
    from avaffect.workflows.predict import (
        OutputRequest,
        PredictorOptions,
        expand_checkpoints,
        load_predictor,
        predict_many,
    )

    if args.workers < 1:
        raise AvaffectError(f"--workers must be at least 1, got {args.workers}")
    if args.detect_every is not None and args.detect_every < 1:
        raise AvaffectError(f"--detect-every must be 1 or more (1: the face detector on every frame), got "
                            f"{args.detect_every}")
    items = list(args.items)
    if not args.face_model and len(items) < 2:  # with --face-model every positional is an input
        raise AvaffectError("give a checkpoint (model.safetensors of a run) and at least one video or folder, "
                            "or --face-model NAME_OR_FILE and the videos")
    checkpoints: list[Path] = []
    if not args.face_model:  # the first item is a model; so is each next one that is a checkpoint or a run folder
        checkpoints += expand_checkpoints(items.pop(0))  # a checkpoint, or a run folder of folds / seeds
        while items and _is_model(items[0]):
            checkpoints += expand_checkpoints(items.pop(0))
        if not items:
            raise AvaffectError("give the videos or folders to predict after the checkpoint(s)")
    options = PredictorOptions(device=args.device, stream=not args.no_stream, detect_every=args.detect_every,
                               runtime=args.runtime, explain=args.explain, face_quality=args.face_quality,
                               min_face_quality=args.min_face_quality)
    predictor = load_predictor(None if args.face_model else checkpoints, face_model=args.face_model,
                               options=options)
    args.inputs = items
    inputs = named_inputs(args.inputs)
    videos = [v for v, _ in inputs]
    if not videos:
        raise no_video_error(args.inputs)
    if args.crops is not None and len(videos) != 1:
        raise AvaffectError("--crops gives the face crops of one video: pass exactly one video with it")
    failed = 0
    bar = progress_bar(total=len(videos), desc="predict", unit="video", disable=len(videos) < 2)
    pages = []
    if args.faces == "all" and args.crops is not None:
        raise AvaffectError("--crops gives one face per frame (the dataset's crops): use it with --faces largest; "
                            "--faces all detects every face on the video")
    segments = None
    if args.segments is not None:
        from avaffect.evaluation.segments import read_segments

        if len(videos) != 1 or args.faces == "all":
            raise AvaffectError("--segments gives the intervals of one video: pass exactly one video with it (and "
                                "--faces largest)")
        segments = tuple(read_segments(args.segments))
    request = OutputRequest(args.out, overlay=args.overlay, html=args.html, faces=args.faces, segments=segments)
    for item in predict_many(predictor, inputs, request, workers=args.workers, crops_dir=args.crops):
        bar.update(1)
        if "error" in item:  # one bad video does not stop the others
            print(f"FAILED {item['video']}: {item['error']}")
            failed += 1
            continue
        s = item["summary"]
        who = f"{item['people']} people, " if "people" in item else ""
        started = getattr(args, "started", None)  # set by cli.main; absent when called another way
        since = time.perf_counter() - started if started is not None else 0.0
        whole = f", {s['duration_s'] / since:.1f}x counting the start-up ({since:.1f} s since the command started)" \
            if len(videos) == 1 and since > 0 else ""
        faces = f"face in {s['face_fraction']:.0%}" + (f" ({s['face_source']})" if s.get("face_source") else "")
        print(f"{item['video']}: {s['frames']} frames, {who}{faces}, audio {s['audio']}, "
              f"{s['realtime_factor']}x real time{whole} → {item['paths']['csv']}")
        for w in s["warnings"]:
            print(f"  warning: {w}")
        if "html" in item["paths"]:
            pages.append((Path(item["video"]).name, Path(item["paths"]["html"]), s))
    bar.close()
    if len(pages) > 1:
        from avaffect.evaluation.page import write_index

        print(f"index of the pages → {write_index(args.out / 'index.html', sorted(pages, key=lambda p: p[0]))}")
    if failed:
        print(f"{failed} of {len(videos)} videos failed")
    return 1 if failed else 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="per-frame valence/arousal of videos with a trained checkpoint (or a face "
                       "model's own, --face-model)")
    p.add_argument("items", type=Path, nargs="+", metavar="[CHECKPOINT...] VIDEO_OR_FOLDER",
                   help="model.safetensors of a run (or a run folder), then videos or folders of videos (with "
                   "--face-model: the videos only). Several checkpoints, or a run folder of folds / seeds (`train "
                   "--folds all`, `--seeds N`), predict as an ensemble: per frame the members' mean and their "
                   "spread (<target>_spread, the std across members; a band on the plot and the page)")
    p.add_argument("--face-model", metavar="NAME_OR_FILE", help="per-frame valence/arousal from a face model alone, "
                   "no avaffect training: a registered ONNX file (enet_b0_8_va_mtl, mbf_va_mtl; see the README) or "
                   "the path of one in their layout")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default predictions)")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.mp4 with the face box "
                   "and a valence/arousal indicator, audio kept")
    p.add_argument("--html", action="store_true", help="also write <name>.html: one self-contained page with the "
                   "overlay video, the valence/arousal chart (its cursor follows playback; click to seek), the "
                   "frames without a face shaded and the summary; index.html links them for several videos")
    p.add_argument("--faces", choices=["largest", "all"], default="largest", help="largest (default): one trace, "
                   "the single-face tracker on the largest face (a new track after a shot cut or a lost face, "
                   "counted in the JSON); all: every person their own trace, identities kept across cuts (one "
                   "CSV with a person column and the face box; the JSON lists the people; the overlay draws each "
                   "person's box, number and values, the page one trace per person)")
    p.add_argument("--segments", type=Path, metavar="FILE", help="a CSV of intervals start,end[,label] (seconds; "
                   "e.g. a transcript's utterances or a diarisation's turns) of the one video given: the JSON gains a "
                   "'segments' list, per row the mean, std and slope of each target and the fraction of frames with "
                   "a face (every JSON has 'minutes', the same per minute)")
    p.add_argument("--explain", action="store_true", help="also what drove each value: columns voicing (the "
                   "voice's periodicity, 0-1) and <target>_voice / <target>_face, how far each modality moved the "
                   "value (the value minus the value with it replaced by its missing input: the training mean of "
                   "the audio features, the missing-face input), plotted under the traces; three model runs per "
                   "window (the model is about 1 %% of predict's time)")
    p.add_argument("--face-quality", action="store_true", help="also each frame's face quality: columns face_size "
                   "(px), sharpness (variance of the Laplacian of the grey crop), roll (the eye line's angle), yaw "
                   "(from the eyes and the nose tip, where the detector gives them; approximate), detector_score and "
                   "face_quality in [0, 1] (the rule: avaffect.features.faces.quality, also in the JSON; the "
                   "streaming path)")
    p.add_argument("--min-face-quality", type=float, metavar="Q", help="treat frames whose face_quality is below Q "
                   "(0-1; e.g. 0.5) as frames without a face: the model's missing-face input, face_detected false "
                   "(implies --face-quality)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"], help="what runs the model: auto "
                   "(default) its ONNX export (model.onnx beside the checkpoint, written by train and `avaffect "
                   "export`) on the CPU when there is a matching one, without importing torch; torch: always the "
                   "torch model; onnx: the export or an error")
    p.add_argument("--crops", type=Path, help="the video's own face crops (a cropped_aligned/<video>/ folder of "
                   "00001.jpg ...): use them instead of detecting faces (one video only)")
    p.add_argument("--workers", type=int, default=1, help="videos predicted at once, in that many processes of "
                   "one thread each (a folder of videos: about the number of cores)")
    p.add_argument("--detect-every", type=int, default=None, metavar="K", help="run the face detector on every "
                   "K-th frame only, tracking in between (faster; slightly different crops than the checkpoint's "
                   "recorded pipeline, measured in docs/benchmarks/face_tracking.md); default: the checkpoint's")
    p.add_argument("--no-stream", action="store_true", help="hold the whole video's face crops and features in "
                   "memory before running the model (the older path; same values): by default a video streams "
                   "through decoding, faces, features and the model in chunks, in memory that does not grow with "
                   "its length")
    p.set_defaults(func=cmd_predict)
