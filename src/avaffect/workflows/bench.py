"""Speed measurements (``avaffect bench``, ``benchmarks/``): decode, face detection, every extractor,
and end-to-end prediction. Figures are measured on the machine that runs them and reported with it."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from avaffect.data.folder import recording_from_video
from avaffect.features.extractors import get_extractor, list_extractors
from avaffect.features.faces import FacePipeline, track_faces
from avaffect.media import iter_video_frames, read_audio
from avaffect.progress import stage
from avaffect.workflows.predict import Predictor, PredictorOptions


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version()}


def _timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_media(videos: list[Path], extractors: list[str] | None = None, device: str = "auto",
                repeat: int = 2) -> list[dict]:
    """Frames per second of decoding, audio decoding, face detection+tracking+cropping and each extractor
    (networks with random weights when none are installed: speed does not depend on the values)."""
    recs = [recording_from_video(v) for v in videos]
    frames = sum(r.num_steps for r in recs)
    seconds = sum(float(r.times[-1] + 1 / r.fps) for r in recs)
    rows = []

    def add(name: str, secs: float, unit_count: float, unit: str = "frames/s", note: str = "") -> None:
        rows.append({"stage": name, "seconds": round(secs, 3), "rate": round(unit_count / secs, 1), "unit": unit,
                     "note": note})
        stage(f"bench media: {name}: {unit_count / secs:,.1f} {unit} ({secs:.1f} s)")  # a long run says where it is

    add("decode video (PyAV, RGB)", _timed(lambda: [None for v in videos for _ in iter_video_frames(v)], repeat),
        frames)
    add("decode audio (16 kHz mono)", _timed(lambda: [read_audio(v) for v in videos], repeat), seconds,
        "audio s/s")
    add("faces: haar detect + track + align + crop 112",
        _timed(lambda: [track_faces(v, FacePipeline()) for v in videos], repeat), frames)
    names = extractors or list_extractors()
    for name in names:
        params: dict = {}
        probe_ex = get_extractor(name)
        if "allow_random" in probe_ex.params:
            params = {"allow_random": True, "device": device}
        try:
            ex = get_extractor(name, **params)
            ex.extract(recs[0])  # warm-up (network build, caches)
            secs = _timed(lambda ex=ex: [ex.extract(recording_from_video(r.video_path)) for r in recs], repeat)
        except Exception as e:  # an optional extra that is not installed
            rows.append({"stage": f"extractor {name}", "seconds": None, "rate": None, "unit": "frames/s",
                         "note": f"skipped: {str(e).splitlines()[0][:80]}"})
            continue
        add(f"extractor {name} (dim {ex.dim})", secs, frames,
            note="random weights; includes decoding and face crops" if params else "includes decoding (and face crops)")
    return rows


def bench_predict(checkpoint: Path, videos: list[Path], device: str = "cpu") -> list[dict]:
    """Real-time factor (video seconds per wall second) of ``predict`` end to end, the streaming path and the
    whole-video path side by side (alternating per video), with the streaming path's seconds per stage."""
    paths = {"streaming": Predictor(checkpoint, PredictorOptions(device=device, stream=True)),
             "whole video": Predictor(checkpoint, PredictorOptions(device=device, stream=False))}
    for predictor in paths.values():
        predictor(videos[0])  # warm-up
    rows = []
    for v in videos:
        for label, predictor in paths.items():
            s = predictor(v).summary
            stages = s.timings_s.stages or {}
            note = f"{s.frames} frames; " + ", ".join(f"{k} {val:.2f} s" for k, val in stages.items())
            rows.append({"stage": f"predict {Path(v).name} ({label})", "seconds": s.timings_s.total,
                         "rate": s.realtime_factor, "unit": "x real time",
                         "note": note + f", model {s.timings_s.model:.2f} s"})
    return rows


def format_table(rows: list[dict], info: dict) -> str:
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
             f"({info['torch_threads']} threads), GPU: {info['gpu'] or 'none'}", "",
             "| stage | rate | unit | seconds | note |", "|---|---:|---|---:|---|"]
    for r in rows:
        rate = "—" if r["rate"] is None else f"{r['rate']:,}"
        secs = "—" if r["seconds"] is None else f"{r['seconds']}"
        lines.append(f"| {r['stage']} | {rate} | {r['unit']} | {secs} | {r['note']} |")
    return "\n".join(lines)
