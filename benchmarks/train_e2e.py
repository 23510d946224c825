"""End-to-end training speed (issue 12): the crop data path alone, and full training steps.

    python benchmarks/train_e2e.py [--work DIR] [--recordings 8] [--seconds 20] [--step-batch 12 --step-window 300]

1. **Data path**: crops/s that :class:`~avaffect.training.e2e.CropWindowDataset` delivers from the packed,
   memory-mapped cache (JPEG decoding already done once), through a DataLoader with 0 and 2 worker processes,
   batch 12 windows of L=300, 48x48 crops cut to 40x40 with the training augmentation, plus the spectrogram
   segments. Peak resident memory is measured in a fresh process for 4 and for all recordings, and the private
   (anonymous) part of it at the end: the data path memory-maps the cache, so private memory should not grow
   with the number of recordings (mapped pages it touched count in RSS but belong to the page cache).
2. **Training step**: seconds per optimisation step of ResNet-50 (40x40) + spectrogram ResNet-18 + RJCA at
   B x L frames (forward, backward, Adam), every layer trainable; with ``--device cuda`` also bf16 autocast and
   ``torch.compile`` variants, and peak GPU memory.

Prints a Markdown table; figures belong in docs/benchmarks/train_e2e.md with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from avaffect.config import AugmentConfig, EndToEndConfig
from avaffect.data.datasets import load_dataset
from avaffect.data.synth import SynthConfig, write_synthetic_dataset
from avaffect.features.e2e_inputs import InputCache
from avaffect.features.extractors import get_extractor
from avaffect.models.wrapper import AVRegressor
from avaffect.training.e2e import CropGeometry, CropWindowDataset, build_end_to_end

VIDEO = {"crop_size": 48, "input_size": 40, "resize": "center_crop", "allow_random": True,
         "missing_face": "black_frame", "device": "cpu"}
AUDIO = {"allow_random": True, "device": "cpu", "sample_rate": 16000}


def extractors():
    return get_extractor("resnet50_face", **VIDEO), get_extractor("spec_resnet18", **AUDIO)


def dataset(root: Path, n: int | None, window: int, hop: int) -> CropWindowDataset:
    recs = [r for r in load_dataset("synthetic", root) if r.has_labels][:n]
    video, audio = extractors()
    cache = InputCache(root / "features" / "inputs", video, audio)
    cache.ensure(recs)
    return CropWindowDataset([cache.load(r) for r in recs], [r.labels for r in recs], [r.face_mask for r in recs],
                             window, hop, CropGeometry.of(video), AugmentConfig())


def data_path(root: Path, n: int | None, workers: int, batches: int, batch: int, window: int) -> dict:
    data = dataset(root, n, window, window // 2)
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                        drop_last=True)  # every batch the same shape, whatever the number of recordings
    it = iter(loader)
    next(it)  # start-up (worker processes) not counted
    t0, crops = time.perf_counter(), 0
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        crops += int(b["crops"].shape[0] * b["crops"].shape[1])
    dt = time.perf_counter() - t0
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    anon = float(status.get("RssAnon", "0 kB").split()[0]) / 1024  # private memory (not the mapped cache pages)
    return {"workers": workers, "recordings": len(data.inputs), "windows": len(data), "crops_per_s": crops / dt,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "anon_mb": anon}


def train_step(device: str, batch: int, window: int, steps: int, amp: bool, compile_: bool) -> dict:
    video, audio = extractors()
    e2e = EndToEndConfig(enabled=True, video={"unfreeze": dict.fromkeys(("stem", "layer1", "layer2", "layer3",
                                                                          "layer4"), 0)},
                         audio={"unfreeze": dict.fromkeys(("stem", "layer1", "layer2", "layer3", "layer4"), 0)},
                         channels_last=device == "cuda", compile=compile_)
    head = AVRegressor("rjca", audio.dim, video.dim, {"num_outputs": 2})
    model = build_end_to_end(e2e, video, audio, head).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    crops = torch.randint(0, 255, (batch, window, 40, 40, 3), dtype=torch.uint8, device=device)
    seg = torch.randn(batch, window, 1, 64, 107, device=device)
    mask = torch.ones(batch, window, dtype=torch.bool, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 1):  # the first step (allocation, compilation) is not counted
        t0 = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            loss = model(crops, seg, mask, mask).float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    s = float(np.median(times[1:]))
    out = {"device": device, "batch": batch, "window": window, "amp_bf16": amp, "compile": compile_,
           "s_per_step": s, "frames_per_s": batch * window / s}
    if device == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--recordings", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--step-batch", type=int, default=12)
    ap.add_argument("--step-window", type=int, default=300)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=["data", "step"], default=None)
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)  # root n workers: one data-path measurement
    a = ap.parse_args()
    if a._child:
        root, n, workers = Path(a._child[0]), int(a._child[1]), int(a._child[2])
        print(json.dumps(data_path(root, n or None, workers, a.batches, 12, 300)))
        return
    work = a.work or Path(tempfile.mkdtemp(prefix="avaffect-e2e-bench-"))
    root = work / "ds"
    if not (root / "synth_config.json").is_file():
        write_synthetic_dataset(root, SynthConfig(n_train=a.recordings, n_val=2, n_test=0, duration_s=a.seconds,
                                                  seed=0), progress=False)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    if a.only in (None, "data"):
        dataset(root, None, 300, 150)  # pack once (not timed)
        print("\n| data path | recordings | windows | crops/s | peak RSS (MB) | private RSS at end (MB) |\n"
              "|---|---|---|---|---|---|")
        for n, workers in ((4, 0), (0, 0), (0, 2)):
            res = json.loads(subprocess.run([sys.executable, __file__, "--_child", str(root), str(n), str(workers),
                                             "--batches", str(a.batches)], capture_output=True, text=True,
                                            check=True).stdout.strip().splitlines()[-1])
            print(f"| {res['workers']} workers | {res['recordings']} | {res['windows']} | "
                  f"{res['crops_per_s']:.0f} | {res['peak_rss_mb']:.0f} | {res['anon_mb']:.0f} |")
    if a.only in (None, "step"):
        print("\n| training step | B x L | bf16 | compile | s/step | frames/s | peak GPU GB |\n"
              "|---|---|---|---|---|---|---|")
        variants = [(False, False)] + ([(True, False), (False, True), (True, True)] if a.device == "cuda" else [])
        for amp, comp in variants:
            r = train_step(a.device, a.step_batch, a.step_window, a.steps, amp, comp)
            print(f"| {r['device']} | {r['batch']} x {r['window']} | {amp} | {comp} | {r['s_per_step']:.2f} | "
                  f"{r['frames_per_s']:.0f} | {r.get('peak_gpu_gb', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
