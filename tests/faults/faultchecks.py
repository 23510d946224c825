"""What the fault cases verify after a command (prediction CSVs, a feature store, a finished run, an evaluation,
files that must survive) and the steps they are built from (predict, train, prepare over the shared inputs)."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from faultkit import EITHER, ERROR, Found, Ran, Shared, Step
from mediafiles import ANN, decoded_times

# =================================================================================================== checks


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV file."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return (rows[0], rows[1:]) if rows else ([], [])


def finite_json(obj) -> bool:
    """No NaN or infinity anywhere in a JSON value."""
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite_json(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_json(v) for v in obj)
    return True


def _column(rows: list[list[str]], k: int) -> list[float]:
    out = []
    for r in rows:
        try:
            out.append(float(r[k]))
        except (ValueError, IndexError):
            out.append(math.nan)
    return out


def check_prediction_csv(path: Path, video: Path | None = None, frames: int | None = None,
                         spacing_from_video: bool = False) -> Found:
    """A per-frame predictions CSV: one row per decoded frame of ``video`` (or ``frames`` rows), finite valence and
    arousal, increasing times (spaced like the video's timestamps with ``spacing_from_video``)."""
    if not path.is_file():
        return Found(wrong=[f"{path.name} not written"])
    found = Found()
    header, rows = read_csv_rows(path)
    decoded = decoded_times(video) if video is not None else None
    want = len(decoded) if decoded is not None else frames
    if want is not None and len(rows) != want:
        found.wrong.append(f"{path.name}: {len(rows)} rows but {want} decoded frames")
    for col in ("valence", "arousal"):
        if col not in header:
            found.wrong.append(f"{path.name}: no {col} column")
        elif not all(math.isfinite(v) for v in _column(rows, header.index(col))):
            found.wrong.append(f"{path.name}: NaN/non-numeric {col}")
    t = np.array(_column(rows, header.index("time"))) if "time" in header else np.zeros(0)
    if len(t) > 1 and not (np.diff(t) > 0).all():
        found.wrong.append(f"{path.name}: times do not increase")
    if spacing_from_video and decoded is not None and len(decoded) == len(t) > 1:
        if not np.allclose(np.diff(t), np.diff(np.array(decoded)), atol=2e-3):
            found.wrong.append(f"{path.name}: frame spacing differs from the decoded timestamps")
    found.note = f"rows {len(rows)}={want}" if want is not None else f"rows {len(rows)}"
    return found


def check_predict_out(out: Path, items: list[tuple[str, Path]], spacing_from_video: bool = False) -> Found:
    """``predict`` outputs: ``<name>.csv`` and ``<name>.json`` per (output name, video), names percent-encoded."""
    found, notes = Found(), []
    stems = {unquote(p.stem): p.stem for p in out.glob("*.csv")} if out.is_dir() else {}
    for name, video in items:
        stem = stems.get(name, name)
        csv_found = check_prediction_csv(out / f"{stem}.csv", video, spacing_from_video=spacing_from_video)
        found.wrong += csv_found.wrong
        notes.append(csv_found.note)
        found.wrong += _summary_problems(out / f"{stem}.json", video)
    found.note = ", ".join(notes)
    return found


def _summary_problems(path: Path, video: Path) -> list[str]:
    """What is wrong with a prediction's JSON summary: missing, NaN, or another frame count than decoded."""
    if not path.is_file():
        return [f"{path.name} not written"]
    summary = json.loads(path.read_text())
    problems = [] if finite_json(summary) else [f"{path.name}: NaN/Inf in the summary"]
    decoded = decoded_times(video)
    if decoded is not None and summary.get("frames") != len(decoded):
        problems.append(f"{path.name}: frames {summary.get('frames')} but {len(decoded)} decoded")
    return problems


def store_entries(store: Path) -> dict[str, dict[str, dict]]:
    """``{extractor folder: {recording: its status sidecar}}`` of a feature store."""
    out: dict[str, dict[str, dict]] = {}
    for ex in sorted(p for p in store.iterdir() if p.is_dir()) if store.is_dir() else []:
        entries = {}
        for s in sorted((ex / "_status").glob("*.json")):
            try:
                e = json.loads(s.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            entries[e.get("recording", s.stem)] = e
        if (ex / "_status").is_dir():
            out[ex.name] = entries
    return out


def check_store(store: Path, frames: dict[str, int], extractors: int = 2) -> Found:
    """Every recording of ``frames`` is done under each extractor: its .npy lies in its extractor folder, has
    ``frames[name]`` rows and finite values."""
    found = Found()
    entries = store_entries(store)
    if len(entries) < extractors:
        found.wrong.append(f"{len(entries)} extractor folders in the store, expected {extractors}")
    for eid, recs in entries.items():
        for name, n in frames.items():
            problem = _entry_problem(store / eid, recs.get(name), n)
            if problem:
                found.wrong.append(f"{eid}/{name}: {problem}")
    found.note = f"store: {sum(len(v) for v in entries.values())} entries checked"
    return found


def _entry_problem(folder: Path, entry: dict | None, n: int) -> str:
    """What is wrong with one store entry (empty: nothing)."""
    if not entry or entry.get("status") != "done":
        return "no entry" if not entry else str(entry.get("status"))
    npy = folder / entry.get("file", "")
    if npy.parent.resolve() != folder.resolve() or not npy.is_file():
        return f"file {entry.get('file')!r} missing or outside the store"
    try:
        arr = np.load(npy, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - whatever makes it unreadable
        return f"unreadable ({exc})"
    if arr.ndim != 2 or arr.shape[0] != n:
        return f"shape {arr.shape}, expected {n} rows"
    return "" if np.isfinite(arr).all() else "NaN/Inf in the stored features"


def check_run(run: Path, split: str = "validation", frames: dict[str, int] | None = None) -> Found:
    """A finished run: metrics.json with finite scores, model.safetensors, prediction CSVs with finite values."""
    if not (run / "metrics.json").is_file() or not (run / "model.safetensors").is_file():
        return Found(wrong=["the run is not finished (metrics.json / model.safetensors missing)"])
    found = Found()
    if not finite_json(json.loads((run / "metrics.json").read_text()).get("overall", {})):
        found.wrong.append("NaN in metrics.json")
    preds = sorted((run / "predictions" / split).glob("*.csv"))
    if not preds:
        found.wrong.append("no prediction CSV")
    for p in preds:
        found.wrong += check_prediction_csv(p, frames=(frames or {}).get(unquote(p.stem))).wrong
    found.note = f"run finished, {len(preds)} prediction CSVs checked"
    return found


def check_eval(out_dir: Path, frames: dict[str, int], named: bool = False) -> Found:
    """An evaluation's folder: metrics.json with a finite overall score, one CSV per recording (rows = frames);
    ``named``: the CSVs are exactly the recordings, their names percent-encoded."""
    if not (out_dir / "metrics.json").is_file():
        return Found(wrong=[f"{out_dir.name}/metrics.json not written"])
    found = Found(note=f"eval: {len(frames)} CSVs, rows = frames")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    if not metrics.get("overall") or not finite_json(metrics["overall"]):
        found.wrong.append("NaN or no overall score in metrics.json")
    files = {unquote(p.stem): p for p in out_dir.glob("*.csv")}
    if named and sorted(files) != sorted(frames):
        found.wrong.append(f"eval CSVs name {sorted(files)}, expected {sorted(frames)}")
    for name, n in frames.items():
        found.wrong += check_prediction_csv(files.get(name, out_dir / f"{name}.csv"), frames=n).wrong
    return found


def fingerprint(paths: list[Path]) -> dict[Path, bytes | None]:
    """The bytes of files that must survive a case (None: absent)."""
    return {p: p.read_bytes() if p.is_file() else None for p in paths}


def kept(before: dict[Path, bytes | None], what: str) -> Found:
    """Each file of ``before`` is still there with the same bytes."""
    found = Found()
    for p, data in before.items():
        now = p.read_bytes() if p.is_file() else None
        if data is not None and now != data:
            found.lost.append(f"{p.name} is gone" if now is None else f"{p.name} was changed")
    found.note = "" if found.lost else f"{what} kept"
    return found


def only_if_ok(fn: Callable[[Ran], Found]) -> Callable[[Ran], Found]:
    """``fn`` after a command that succeeded; nothing to check after a refusal."""
    return lambda ran: fn(ran) if ran.rc == 0 else Found()


# =================================================================================================== steps


def link_shared(d: Path, s: Shared) -> None:
    """``d/ds`` links to the shared dataset (read only); ``d/tiny.yaml``: what the shared run was trained with."""
    if not (d / "ds").exists():
        os.symlink(os.path.relpath(s.ds, d), d / "ds")
    shutil.copy(s.tiny, d / "tiny.yaml")


def copy_run(d: Path, s: Shared, finished: bool = True) -> Path:
    """A private copy of the shared run as ``d/run`` (``finished=False``: as if interrupted after its last
    epoch), beside the shared dataset."""
    link_shared(d, s)
    run = d / "run"
    shutil.copytree(s.run, run)
    if not finished:
        for f in ("metrics.json", "model.safetensors", "metrics_per_epoch.csv"):
            (run / f).unlink(missing_ok=True)
        shutil.rmtree(run / "predictions", ignore_errors=True)
    return run


def copy_ds(d: Path, s: Shared, features: bool = True) -> Path:
    """A private copy of the shared dataset as ``d/ds`` (with or without its feature store)."""
    return Path(shutil.copytree(s.ds, d / "ds", ignore=None if features else shutil.ignore_patterns("features")))


def ds_frames(ds: Path, names: list[str] | None = None) -> dict[str, int]:
    """Decoded frames of the dataset's videos (of ``names`` only, when given)."""
    return {v.stem: len(decoded_times(v) or []) for v in sorted((ds / "videos").glob("*.mp4"))
            if names is None or v.stem in names}


def val_names(s: Shared) -> list[str]:
    """The shared dataset's validation recordings."""
    return sorted(p.stem for p in (s.ds / ANN / "Validation_Set").glob("*.txt"))


def val_frames(s: Shared) -> dict[str, int]:
    """Decoded frames of the shared dataset's validation recordings."""
    return ds_frames(s.ds, val_names(s))


def predict_step(d: Path, s: Shared, inputs: list[str], expect: str = ERROR, names: tuple[str, ...] = (),
                 items: list[tuple[str, Path]] | None = None, extra: list[str] | None = None,
                 checkpoint: Path | None = None, verify: Callable[[Ran], Found] | None = None) -> Step:
    """``avaffect predict`` with the shared model (or ``checkpoint``) into ``d/out``; ``items``: (output name,
    video) pairs whose outputs a success must have right."""
    if items is not None and verify is None:
        verify = only_if_ok(lambda ran: check_predict_out(d / "out", items))
    return Step(["predict", s.rel(checkpoint or s.model, d), *inputs, "--out", "out", *(extra or [])], expect,
                names, (d / "out",), verify=verify)


def train_step(d: Path, s: Shared, config: str | None = "tiny.yaml", extra: list[str] | None = None,
               expect: str = ERROR, names: tuple[str, ...] = (), root: str = "ds",
               verify: Callable[[Ran], Found] | None = None) -> Step:
    """``avaffect train`` on the shared dataset (linked as ``d/ds``) into ``d/run``."""
    link_shared(d, s)
    argv = ["train", root, *(["--config", config] if config else []), "--out", "run", "-q", *(extra or [])]
    return Step(argv, expect, names, (d / "run",), verify=verify)


def resumable_train(d: Path, s: Shared, run: Path, names: tuple[str, ...], advice: Callable[[], None]) -> Step:
    """Train again over a damaged run: a success must finish the run right; after a refusal, ``advice`` (what the
    message tells the user) and the same command must succeed."""
    frames = val_frames(s)
    step = train_step(d, s, expect=EITHER, names=names, verify=only_if_ok(lambda ran: check_run(run, frames=frames)))
    step.between = advice
    step.resume = train_step(d, s, expect="ok", verify=only_if_ok(lambda ran: check_run(run, frames=frames)))
    return step


def prepare_step(d: Path, kind: str, root: str, expect: str = ERROR, names: tuple[str, ...] = (),
                 extra: list[str] | None = None, summary: Callable[[dict], Found] | None = None) -> Step:
    """``avaffect prepare KIND ROOT``; with ``summary``, the JSON report of a success is checked by it."""
    argv = ["prepare", kind, root, *(extra or [])]
    if summary is None:
        return Step(argv, expect, names, (d / "report.json",))

    def verify(ran: Ran) -> Found:
        report = d / "report.json"
        return summary(json.loads(report.read_text())) if report.is_file() else Found(wrong=["no JSON report"])
    return Step(argv + ["--json", "report.json"], expect, names, (d / "report.json",), verify=only_if_ok(verify))


def expect_summary(split: str, frames: int | None = None, annotated: float | None = None,
                   recordings: int | None = None) -> Callable[[dict], Found]:
    """A ``prepare`` report check: ``split``'s frames, annotated fraction and recordings are these."""
    def check(report: dict) -> Found:
        sm = report.get("summary", {}).get(split)
        if sm is None:
            return Found(wrong=[f"no {split} recordings in the summary"])
        found = Found(note=f"{split}: {sm['recordings']} rec, {sm['frames']} frames, "
                           f"{sm['annotated_fraction']:.1%} annotated")
        if frames is not None and sm["frames"] != frames:
            found.wrong.append(f"{split}: {sm['frames']} frames, expected {frames}")
        if annotated is not None and abs(sm["annotated_fraction"] - annotated) > 1e-6:
            found.wrong.append(f"{split}: annotated {sm['annotated_fraction']:.4f}, expected {annotated:.4f}")
        if recordings is not None and sm["recordings"] != recordings:
            found.wrong.append(f"{split}: {sm['recordings']} recordings, expected {recordings}")
        return found
    return check
