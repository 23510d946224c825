"""Training-step time of our fusion blocks and presets against the reference-compatible ports (``models/official``),
side by side in one run, at the papers' sizes.

    python benchmarks/fusion_step.py [--rounds 3] [--steps 5] [--device cpu|cuda] [--out docs/benchmarks/fusion_step.md]

Each row times forward + backward + an Adam step on random inputs (MSE to random targets); rows alternate round
by round and the table gives the median step and the ratio to the reference row of its group. Groups:

* **JCA block** at 512 + 512 features, L = 300, B = 12 (ABAW6's time-major JCA): our :class:`TimeMajorJCA` as it
  is, the same block as it was before the 1/sqrt(d) scale moved from the ``d_m x d`` attention map onto the small
  ``L x L`` weight (kept here as the "before" row), and the authors' ``DCNLayer`` port (query projection,
  dropout 0.6 on the map).
* **RJA model** at D = 512, 49 regions, L = 16, B = 64 (ICASSP 2023): our ``rja_blstm`` preset with the
  authors' sizes against the ``rja_icassp23`` port.

On a GPU (``--device cuda``) every row is also run with bf16 autocast and with ``torch.compile``. CPU rows are fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from pages import publish

from avaffect.models.blocks.jca import TimeMajorJCA
from avaffect.models.official.modules import CAMSizes, DCNLayer, OfficialCAM
from avaffect.models.registry import create_model

REPO = Path(__file__).resolve().parents[1]


class TimeMajorJCABefore(TimeMajorJCA):
    """The block's forward before the change: the scale multiplies the big ``d_m x d`` map (same values)."""

    def forward(self, x_a, x_v, mask=None):
        joint = torch.cat([x_a, x_v], dim=-1)
        outs = []
        for i, x in enumerate((x_a, x_v)):
            corr = torch.tanh(x.transpose(1, 2) @ self.w_j[i] @ joint * self.scale)
            h = torch.relu(x @ self.w_c[i] @ corr)
            outs.append(self.dropout(h) @ self.w_h[i] + x)
        return outs[0], outs[1]


def _rows(device: torch.device) -> dict[str, dict]:
    """name → (group, module, inputs, forward returning one tensor, is_reference)."""
    g = torch.Generator().manual_seed(0)
    b, length, d = 12, 300, 512
    a300 = torch.randn(b, length, d, generator=g)
    v300 = torch.randn(b, length, d, generator=g)
    rows = {
        "ours: TimeMajorJCA (scale on the L x L weight)": ("JCA block 512+512, L=300, B=12", TimeMajorJCA(d, d, length),
                                                          (a300, v300), lambda m, x: torch.cat(m(*x), -1), False),
        "ours before: scale on the d_m x d map": ("JCA block 512+512, L=300, B=12", TimeMajorJCABefore(d, d, length),
                                                  (a300, v300), lambda m, x: torch.cat(m(*x), -1), False),
        "reference port: DCNLayer": ("JCA block 512+512, L=300, B=12", DCNLayer((d, d), length, True, 0.6),
                                     (v300, a300), lambda m, x: torch.cat(m(list(x)), -1), True),
    }
    b, length, regions = 64, 16, 49
    a16 = torch.randn(b, length, d, generator=g)
    v16 = torch.randn(b, length, regions * d, generator=g)
    ours = create_model("rja_blstm", d, regions * d, {"hidden": d, "head_hidden": 128, "window_length": length,
                                                      "num_iterations": 2, "spatial_attention": True,
                                                      "spatial_regions": regions})
    mask = torch.ones(b, length, dtype=torch.bool)
    rows["ours: rja_blstm preset (D=512)"] = ("RJA model D=512, 49 regions, L=16, B=64", ours, (a16, v16, mask),
                                             lambda m, x: m(*x), False)
    ref = OfficialCAM(CAMSizes(dim=d, head_hidden=128, length=length, iterations=2, lstm_layers=2, regions=regions))
    rows["reference port: rja_icassp23"] = ("RJA model D=512, 49 regions, L=16, B=64", ref, (a16, v16),
                                           lambda m, x: m(*x), True)
    return {k: {"group": grp, "module": mod.to(device).train(), "inputs": tuple(t.to(device) for t in x),
                "forward": f, "reference": r} for k, (grp, mod, x, f, r) in rows.items()}


def _step(row: dict, mode: str, device: torch.device):
    module = row["module"]
    fwd = row["forward"]
    if mode == "compile":
        fwd_c = torch.compile(lambda x: fwd(module, x))
        run = fwd_c
    else:
        def run(x):
            return fwd(module, x)
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    target = None

    def step():
        nonlocal target
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=(mode == "bf16")):
            y = run(row["inputs"])
        if target is None:
            target = torch.randn_like(y, dtype=torch.float32)
        loss = torch.nn.functional.mse_loss(y.float(), target)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "fusion_step.md")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = _rows(device)
    modes = ["fp32"] + (["bf16", "compile"] if device.type == "cuda" else [])
    steps = {(name, mode): _step(row, mode, device) for name, row in rows.items() for mode in modes}
    for fn in steps.values():  # warm-up (and compilation)
        fn()
        fn()
    times: dict[tuple[str, str], list[float]] = {k: [] for k in steps}
    peak: dict[tuple[str, str], float] = {}
    for r in range(args.rounds):
        for key, fn in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            per = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                fn()
                per.append(time.perf_counter() - t0)
            times[key].append(statistics.median(per))
            if device.type == "cuda":
                peak[key] = torch.cuda.max_memory_allocated() / 2**20
            print(f"round {r}: {key[0]} [{key[1]}]: {times[key][-1] * 1000:.1f} ms", flush=True)
    from avaffect.workflows.bench import machine

    info = machine()
    lines = ["# Fusion training step: our blocks and presets vs the reference-compatible ports", "",
             f"`python benchmarks/fusion_step.py --rounds {args.rounds} --steps {args.steps} --device {args.device}` "
             f"on {info['cpu']} ({info['cores']} cores, torch {info['torch']}, {torch.get_num_threads()} threads)"
             f"{', GPU ' + info['gpu'] if device.type == 'cuda' else ''}. Forward + backward + Adam step on random "
             "inputs; median over rounds of the median step; ratio = reference step / this step (higher is "
             "faster), within the group.", ""]
    for group in dict.fromkeys(r["group"] for r in rows.values()):
        lines += [f"## {group}", "", "| model | mode | ms / step | speed vs reference |"
                  + (" peak MiB |" if peak else ""), "|---|---|---:|---:|" + ("---:|" if peak else "")]
        ref = next(n for n, r in rows.items() if r["group"] == group and r["reference"])
        for name, row in rows.items():
            if row["group"] != group:
                continue
            for mode in modes:
                t = statistics.median(times[(name, mode)])
                base = statistics.median(times[(ref, "fp32")])
                lines.append(f"| {name} | {mode} | {t * 1000:.1f} | {base / t:.2f}x |"
                             + (f" {peak[(name, mode)]:.0f} |" if peak else ""))
        lines.append("")
    if device.type != "cuda":
        lines.append("No GPU was available to this run: the bf16 autocast and torch.compile rows, and the GPU target "
                     "(3x the reference port's step), are not measured. Run `python benchmarks/fusion_step.py "
                     "--device cuda` on a GPU machine.")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out if device.type == "cpu" else args.out.with_name(args.out.stem + "_cuda.md")
    return publish(out, text, {f"{k[0]} [{k[1]}]": v for k, v in times.items()})


if __name__ == "__main__":
    raise SystemExit(main())
