"""``live``: valence/arousal from a camera, a network stream, a pipe or a file read at its own pace, as it happens."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from avaffect.errors import AvaffectError

SOURCES_HELP = (
    "SOURCE: '-' (a container on stdin, e.g. `ffmpeg ... -f matroska -`), a URL (rtsp://, rtmp://, srt://, "
    "udp://, rtp://, http(s)://), a capture device as FORMAT:DEVICE (Linux: v4l2:/dev/video0; macOS: "
    "avfoundation:0:0; Windows: dshow:video=NAME; a camera with a separate microphone: mux both with ffmpeg into "
    "one container on stdin, see avaffect.livemedia) or a file (with --realtime: read at its own frame rate)")


def cmd_live(args) -> int:
    from avaffect.livemedia import LiveSource
    from avaffect.workflows.live import CsvSink, JsonLinesSink, LiveRun, LiveServer, SummarySink, install_stop
    from avaffect.workflows.predict import PredictorOptions, load_predictor

    items = list(args.items)
    if len(items) != (1 if args.face_model else 2):
        raise AvaffectError("give a checkpoint (model.safetensors of a run) and a SOURCE, or --face-model "
                            "NAME_OR_FILE and a SOURCE")
    for name in ("max_latency", "max_lag", "stall_timeout", "linger"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise AvaffectError(f"--{name.replace('_', '-')} must be 0 or more seconds, got {value}")
    source_arg = items.pop()
    predictor = load_predictor(None if args.face_model else items[0], face_model=args.face_model,
                               options=PredictorOptions(detect_every=args.detect_every, runtime=args.runtime))
    audio_ex = getattr(predictor, "audio_ex", None)  # a face model has none: its source's audio goes unused
    sample_rate = int(audio_ex.params.get("sample_rate", 16000)) if audio_ex is not None else 16000
    source = LiveSource(source_arg, realtime=args.realtime, sample_rate=sample_rate,
                        stall_timeout=args.stall_timeout).open()
    info = predictor.info
    targets = list(info.targets)
    sinks = []
    if not args.quiet:
        sinks.append(JsonLinesSink(sys.stdout, targets))
    if args.csv is not None:
        sinks.append(CsvSink(args.csv, targets, info.trained_on, people=args.faces == "all"))
    if args.summary is not None:
        sinks.append(SummarySink(args.summary, {"checkpoint": str(info.checkpoint), "trained_on": info.trained_on}))
    server = None
    if args.serve is not None:
        server = LiveServer(args.serve, source.label, info.model, targets)
        sinks.append(server)
        print(f"avaffect live: the page is at {server.url}", file=sys.stderr, flush=True)
    restore = install_stop(source)
    try:
        max_lag = args.max_lag if args.max_lag is not None else None if source.paced_by_consumer else 2.0
        run = LiveRun(predictor, source, sinks, max_latency=args.max_latency, max_lag=max_lag or None,
                      chunk=args.chunk, faces=args.faces)
        summary = run.run()
    finally:
        restore()
        source.close()
    print(f"avaffect {summary.line()}", file=sys.stderr, flush=True)
    for w in summary.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    if server is not None:
        if args.linger:
            time.sleep(args.linger)
        server.shutdown()
    return 0


def register(sub) -> None:
    p = sub.add_parser("live", help="valence/arousal from a camera, a stream, a pipe or a file, as it happens "
                       "(JSON Lines on stdout)", description="JSON Lines on stdout, one object per emitted step: "
                       "frame, time, valence, arousal, face_detected, provisional, dropped, latency_s; a last line "
                       "{\"summary\": ...}. " + SOURCES_HELP)
    p.add_argument("items", nargs="+", metavar="[CHECKPOINT] SOURCE",
                   help="model.safetensors of a run, then the SOURCE (with --face-model: the SOURCE only)")
    p.add_argument("--face-model", metavar="NAME_OR_FILE", help="a face model's own values (see predict "
                   "--face-model): final as soon as each frame is described")
    p.add_argument("--faces", choices=["largest", "all"], default="largest", help="largest (default): one trace, "
                   "every step a line; all: every person (the tracker of predict --faces all), a line per person "
                   "and step on screen with its \"person\" (numbered as first seen: live cannot renumber or drop "
                   "the short ones afterwards, as predict does)")
    p.add_argument("--realtime", action="store_true", help="read a file at its own frame rate, as if it were live")
    p.add_argument("--max-latency", type=float, default=None, metavar="SECONDS", help="also send a provisional "
                   "value for a step that is not final this many seconds after its frame arrived (flagged "
                   "provisional; its final value follows; docs/benchmarks/live_latency.md gives the CCC against "
                   "the final values). Default: final values only (about the model's window after the frame)")
    p.add_argument("--max-lag", type=float, default=None, metavar="SECONDS", help="drop a frame that is more than "
                   "this many seconds old when the face pipeline would take it (its step: no face, dropped: true), "
                   "so the lag stays bounded when the machine cannot keep up; 0: never drop. Default: 2 for a live "
                   "source (a device, a URL, stdin, --realtime); never for a file read as fast as it goes")
    p.add_argument("--csv", type=Path, help="also write predict's CSV as it goes (final values, flushed as they "
                   "come: nothing is lost on a kill); the file must not exist")
    p.add_argument("--summary", type=Path, help="write the run's summary (latencies, dropped frames, why the "
                   "stream ended) as JSON at the end")
    p.add_argument("--serve", type=int, metavar="PORT", help="serve a page on http://127.0.0.1:PORT with the rolling "
                   "chart and the current frame, updated by Server-Sent Events (0: a free port, printed)")
    p.add_argument("--linger", type=float, default=0.0, metavar="SECONDS", help="with --serve: keep the page up "
                   "this long after the stream ends")
    p.add_argument("--stall-timeout", type=float, default=10.0, metavar="SECONDS", help="end the stream when the "
                   "source sends nothing for this long (default 10)")
    p.add_argument("--chunk", type=int, default=5, help="face crops described per batch (fewer: lower latency; "
                   "default 5)")
    p.add_argument("--detect-every", type=int, default=None, metavar="K", help="as for predict (default: the "
                   "checkpoint's)")
    p.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"], help="as for predict")
    p.add_argument("-q", "--quiet", action="store_true", help="no JSON Lines on stdout (with --csv / --serve)")
    p.set_defaults(func=cmd_live)
