#!/usr/bin/env python
"""Fault suite: the command line tried as a hostile or careless user would (issue "Trust nothing it did not verify").

    python benchmarks/faults.py [--work DIR] [--only GROUP|ID[,...]] [--jobs N] [--extended] [--keep]
                                [--out docs/benchmarks/faults.md]

Builds its own small inputs in a work folder (a tiny synthetic dataset, tiny videos, label files, manifests,
configs, and one tiny model trained once with ``avaffect train``), then runs every case as a subprocess call of
the ``avaffect`` command (a timeout per case) and records: the exit code, whether a Python traceback was printed,
the first line of the message, and the check that matters for the case:

- **outside writes** — the work folder (and its parent, shallowly) is snapshotted before and after each case; a
  file created, changed or removed anywhere but the case's ``--out`` / run / store folder is a failure;
- **silent wrong result** — exit 0 with a wrong result (NaN in a CSV or JSON, a row count that differs from the
  frames PyAV decodes, stale features kept as done, a bad input accepted);
- **data lost** — a finished run, a feature entry or another output that must survive the case is gone;
- **resume** — for interruption cases, running the same command again must succeed and give a complete result.

A case **passes** when nothing was printed as a traceback, nothing was written outside its folders, no data was
lost, a resume (if any) worked, and either the exit code is 0 with a verified result, or it is non-zero with a
message that names the file or value at fault and says what to do.

Each case runs in its own folder ``WORK/cases/<id>/`` (inputs are built there or copied from ``WORK/shared``,
which no case may change). ``--jobs`` cases run at once (default 2); the cases whose names try to escape a folder
run alone. The table (markdown) and a summary line are printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import pickle
import platform
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SR = 16000
TRACEBACK = "Traceback (most recent call last)"
FIX_WORDS = re.compile(
    r"(—|\b(use|pass|check|fix|set|run|give|expected|delete|remove|re-?run|re-?encode|re-?download|re-?export|must|"
    r"should|try|put|choose|write|add|provide|train|convert|install|rename|fill|lower|free|download|need|needs|"
    r"one of|available|allowed|predict|either|see|shows?)\b|\bare: |`avaffect [^`]+`|\b\d+\.\.\d+\b)",
    re.IGNORECASE)
TINY_YAML = """\
model: {name: concat, params: {hidden: 8, head_hidden: 8}}
training: {window: 60, hop: 30, max_epochs: 1, accelerator: cpu}
"""
SYNTH_ARGS = ["--n-train", "4", "--n-val", "2", "--n-test", "1", "--duration-s", "6.0", "--weak-rate", "0.2",
              "--gap-rate", "0.05", "--seed", "3"]


def avaffect_command() -> list[str]:
    exe = REPO / ".venv" / "bin" / "avaffect"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("avaffect")
    return [found] if found else [sys.executable, "-m", "avaffect.cli.main"]


# =================================================================================================== media writers


def _mux_tone(container, stream, seconds: float, level: float = 0.3, hz: float = 440.0) -> None:
    n = int(round(seconds * SR))
    x = (level * np.sin(2 * np.pi * hz * np.arange(n) / SR)).astype(np.float32)
    for s in range(0, n, 1024):
        frame = av.AudioFrame.from_ndarray(x[None, s:s + 1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SR, s, Fraction(1, SR)
        for p in stream.encode(frame):
            container.mux(p)
    for p in stream.encode(None):
        container.mux(p)


def write_video(path: Path, n: int, fps: int = 25, audio: bool = True, size: tuple[int, int] = (64, 48),
                codec: str = "mpeg4", pix_fmt: str = "yuv420p", pts_ms: list[int] | None = None,
                audio_seconds: float | None = None, audio_level: float = 0.3, static: bool = False,
                audio_bit_rate: int | None = None) -> Path:
    """``n`` grey frames (level steps with the index, unless ``static``) and, with ``audio``, a mono AAC sine.
    ``pts_ms``: frame times in milliseconds (a variable frame rate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if pts_ms is not None:
            vs.codec_context.time_base = vs.time_base = Fraction(1, 1000)
        astream = c.add_stream("aac", rate=SR, layout="mono") if audio else None
        if astream is not None and audio_bit_rate:
            astream.bit_rate = audio_bit_rate
        for i in range(n):
            img = np.full((h, w, 3), 100 if static else (i * 8) % 256, np.uint8)
            img[: h // 4, : w // 4] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            else:
                frame.pts = i
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if astream is not None:
            secs = audio_seconds if audio_seconds is not None else (
                (pts_ms[-1] / 1000 + 1 / fps) if pts_ms is not None else n / fps)
            _mux_tone(c, astream, secs, audio_level)
    return path


def write_primed(path: Path, shown: int, primed: int = 3, fps: int = 24) -> Path:
    """An H.264 mp4 with B-frames whose first ``primed`` frames have negative timestamps: the muxer writes an
    edit list that cuts them (a player shows ``shown`` frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tb = Fraction(1, fps)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.codec_context.options = {"bf": "2", "g": "12"}
        astream = c.add_stream("aac", rate=SR, layout="mono")
        for i in range(-primed, shown):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (8 * (i + primed)) % 256, np.uint8),
                                               format="rgb24")
            frame.pts, frame.time_base = i, tb
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        _mux_tone(c, astream, shown / fps)
    return path


def rotate_mp4(src: Path, dst: Path) -> Path:
    """``src`` with the video track header's display matrix set to a 90 degree rotation (a phone in portrait)."""
    data = bytearray(src.read_bytes())
    turned = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    at = 0
    patched = False
    while True:
        at = data.find(b"tkhd", at + 1)
        if at < 0:
            break
        box = at - 4  # the box starts with its 4-byte size
        version = data[at + 4]
        matrix = box + (52 if version == 1 else 40) + 8  # after the header fields up to volume + reserved
        width, height = struct.unpack(">II", data[matrix + 36: matrix + 44])
        if width and height:  # the video track (audio tracks have 0 x 0)
            data[matrix: matrix + 36] = turned
            patched = True
    if not patched:
        raise RuntimeError(f"{src}: no video track header found")
    dst.write_bytes(bytes(data))
    return dst


def write_wav(path: Path, seconds: float, silent: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * SR)
    x = np.zeros(n) if silent else 0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / SR)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


def write_mp3(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mp3", rate=SR, layout="mono")
        n = int(seconds * SR)
        x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / SR)).astype(np.float32)
        fmt = s.codec_context.format.name if s.codec_context.format else "fltp"
        for k in range(0, n, 1152):
            chunk = x[None, k:k + 1152]
            if fmt.startswith("s16"):
                chunk = (chunk * 32767).astype(np.int16)
                fmt_use = "s16p" if fmt.endswith("p") else "s16"
            else:
                fmt_use = "fltp"
            frame = av.AudioFrame.from_ndarray(chunk, format=fmt_use, layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SR, k, Fraction(1, SR)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def write_jpgs(folder: Path, indices) -> None:
    """Face-crop files ``00001.jpg`` ... for the 0-based ``indices``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.full((32, 32, 3), 128, np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    for i in indices:
        (folder / f"{i + 1:05d}.jpg").write_bytes(buf.getvalue())


_DECODED: dict[tuple[str, int, int], list[float]] = {}
_DECODED_LOCK = threading.Lock()


def decoded_times(path: Path) -> list[float] | None:
    """Times of the frames PyAV decodes from the first video stream (None when it cannot be decoded)."""
    st = path.stat()
    key = (path.name, st.st_size, st.st_mtime_ns)  # copies keep their mtime
    with _DECODED_LOCK:
        if key in _DECODED:
            return _DECODED[key]
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            times = [float(f.pts * f.time_base) if f.pts is not None else math.nan for f in c.decode(stream)]
    except Exception:  # noqa: BLE001 - anything undecodable
        return None
    with _DECODED_LOCK:
        _DECODED[key] = times
    return times


# =================================================================================================== case model


@dataclass
class Check:
    """What a case's verification found: a wrong result, lost data, and a note for the table."""

    wrong: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    note: str = ""

    def add(self, other: Check) -> Check:
        self.wrong += other.wrong
        self.lost += other.lost
        self.note = "; ".join(x for x in (self.note, other.note) if x)
        return self


@dataclass
class Result:
    rc: int | None
    out: str
    err: str
    seconds: float
    timed_out: bool = False


@dataclass
class Plan:
    """One command of a case and how to judge it."""

    argv: list[str]
    expect: str = "error"  # "error", "ok" or "either"
    names: tuple[str, ...] = ()  # the message must contain one of these (case-insensitive)
    allowed: tuple[Path, ...] = ()  # writes are fine under these
    cwd: Path | None = None
    verify: Callable[[Result], Check] | None = None  # after the command, whatever its exit code
    label: str = ""  # the check that matters, for the table
    timeout: float = 150.0
    interrupt: tuple[int, Callable[[], bool], float] | None = None  # (signal, when(), at most this many s)
    resume: Plan | None = None  # the same command again after an interruption (must succeed)
    then: Plan | None = None  # a further step judged like the first
    between: Callable[[], None] | None = None  # run before `resume` / `then`
    marker: Path | None = None  # must not exist afterwards (planted code must never run)
    escapes: tuple[Path, ...] = ()  # where an unencoded hostile name would land: must not exist afterwards
    skip: str | None = None


@dataclass
class CaseDef:
    id: str
    group: str
    what: str
    build: Callable[[Path, Shared], Plan]
    serial: bool = False
    cost: float = 6.0  # estimated seconds, to start the long ones first
    extended: bool = False  # only with --extended (variants of a default case; keeps the default run short)


@dataclass
class Outcome:
    case: CaseDef
    status: str  # "pass", "FAIL", "skip"
    rc: str
    traceback: bool
    message: str
    check: str
    problems: list[str]
    wrong: bool
    lost: bool
    resume_failed: bool
    outside: bool
    seconds: float
    unclear: bool = False  # failed on the message alone (no traceback, no wrong result): names or fix missing


CASES: list[CaseDef] = []


EXTENDED = {"M02", "M13", "M21", "M22", "M25", "M27", "L05", "L07", "L12", "L14", "L15", "L16", "L18", "L23", "L24",
            "L25", "L35", "L38", "L39", "H05", "R03", "R06", "R08", "R09", "C10", "C11", "C12", "C14", "C17", "C18",
            "C19", "C20", "C21", "C28", "C29", "C34", "K06", "K09", "K10", "K11", "K18", "K20", "K24", "K26", "K29",
            "S05", "S11", "S12", "S15", "S16", "U07", "U09", "U10"}


def case(cid: str, group: str, what: str, serial: bool = False, cost: float = 6.0):
    def deco(fn: Callable[[Path, Shared], Plan]):
        CASES.append(CaseDef(cid, group, what, fn, serial, cost, cid in EXTENDED))
        return fn
    return deco


@dataclass
class Shared:
    """The inputs every case may read (never change): WORK/shared/."""

    work: Path
    root: Path  # WORK/shared
    ds: Path  # the tiny synthetic dataset, features extracted
    run: Path  # the tiny trained run (trained with cwd = root, so its paths are relative: ds, run)
    model: Path
    tiny: Path
    home: Path  # AVAFFECT_HOME: an empty cache (no weights)
    video: Path  # a 30-frame 64x48 mp4 with audio
    cuda: bool = False
    env: dict = field(default_factory=dict)  # the environment every command runs with

    def rel(self, p: Path, d: Path) -> str:
        return os.path.relpath(p, d)


# =================================================================================================== running


def run_cli(argv: list[str], cwd: Path, env: dict, timeout: float,
            interrupt: tuple[int, Callable[[], bool], float] | None = None) -> Result:
    t0 = time.perf_counter()
    cmd = avaffect_command() + argv
    if interrupt is None:
        try:
            p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
            return Result(p.returncode, p.stdout, p.stderr, time.perf_counter() - t0)
        except subprocess.TimeoutExpired as e:
            return Result(None, _text(e.stdout), _text(e.stderr), time.perf_counter() - t0, timed_out=True)
    sig, when, limit = interrupt
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        # the default Ctrl-C action in the child: a suite started in the background by a non-interactive shell
        # (`python benchmarks/faults.py &`) ignores SIGINT, children inherit that, and Python then installs no
        # KeyboardInterrupt handler — the case would test the harness's shell, not avaffect
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe, text=True, stdin=subprocess.DEVNULL,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        sent = False
        while p.poll() is None and time.perf_counter() - t0 < timeout:
            if not sent and (when() or time.perf_counter() - t0 > limit):
                p.send_signal(sig)
                sent = True
            time.sleep(0.05)
        timed_out = p.poll() is None
        if timed_out:
            p.kill()
        p.wait()
        fo.seek(0)
        fe.seek(0)
        return Result(p.returncode, fo.read(), fe.read() + ("" if sent else "\n[benchmark: the signal was never "
                                                          "sent: the command ended first]"),
                      time.perf_counter() - t0, timed_out=timed_out)


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


def snapshot(work: Path, case_dir: Path) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of every file under the work folder (other cases' folders left out) and of the
    entries directly in its parent; folders as ``path/``; symbolic links are not followed."""
    cases_root = work / "cases"
    out: dict[str, tuple[int, int]] = {}
    stack = [work]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            p = Path(e.path)
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if e.is_dir(follow_symlinks=False):
                if d == cases_root and p != case_dir:
                    continue  # another case's folder
                out[e.path + "/"] = (0, 0)
                stack.append(p)
            else:
                out[e.path] = (st.st_size, st.st_mtime_ns)
    try:
        for e in os.scandir(work.parent):
            if Path(e.path) != work:
                st = e.stat(follow_symlinks=False)
                out[e.path] = (st.st_size, 0 if e.is_dir(follow_symlinks=False) else st.st_mtime_ns)
    except OSError:
        pass
    return out


def diff_outside(before: dict, after: dict, allowed: tuple[Path, ...]) -> tuple[list[str], list[str]]:
    """(written or changed outside ``allowed``, removed outside ``allowed``)."""
    roots = [str(Path(a).resolve()) for a in allowed]

    def inside(path: str) -> bool:
        p = str(Path(path.rstrip("/")).resolve()) if not os.path.islink(path.rstrip("/")) else path.rstrip("/")
        return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)

    written = [p for p, v in after.items() if before.get(p) != v and not p.endswith("/") and not inside(p)]
    written += [p for p in after if p.endswith("/") and p not in before and not inside(p)]
    removed = [p for p in before if p not in after and not inside(p)]
    return sorted(written), sorted(removed)


MESSAGE_PROBLEMS = ("the message", "no message", "Ctrl-C ended it", "step 2: the message", "step 2: no message")
PY_WARNING = re.compile(r"^\S+\.py:\d+: ")
MESSAGE_START = re.compile(r"^avaffect( [\w-]+)?: (error|interrupted)")


def message_lines(out: str, err: str) -> list[str]:
    """The lines that carry the command's message: from ``avaffect: error:`` on, else the FAILED / error /
    problem lines of the report it printed, else the last lines of stderr."""
    elines = err.splitlines()
    for i, line in enumerate(elines):
        if MESSAGE_START.match(line):
            return [ln for ln in elines[i:] if ln.strip()]
    olines = out.splitlines()
    picked: list[str] = []
    for i, line in enumerate(olines):
        s = line.strip()
        if re.match(r"^(FAILED|error\b)", s):
            picked.append(s)
        elif "problem(s)" in s and s.endswith(":"):
            picked.append(s)
            picked += [ln.strip() for ln in olines[i + 1:] if ln.startswith("  ")]
            break
    if picked:
        return picked
    rest = [ln for ln in elines if ln.strip() and not ln.startswith(("WARNING", "INFO", "DEBUG"))
            and not PY_WARNING.match(ln) and "warnings.warn" not in ln]
    return rest[-3:] if rest else [ln for ln in olines if ln.strip()][-2:]


def log_entry(argv: list[str], res: Result) -> str:
    return f"$ avaffect {' '.join(argv)}\n[exit {res.rc}]\n--- stdout\n{res.out}\n--- stderr\n{res.err}\n"


def judge(cdef: CaseDef, plan: Plan, res: Result, env: dict, shared: Shared, case_dir: Path,
          log: list[str]) -> Outcome:
    problems: list[str] = []
    tb = TRACEBACK in res.out or TRACEBACK in res.err
    if tb:
        problems.append("traceback")
    msg_lines = message_lines(res.out, res.err)
    text = "\n".join(msg_lines)
    wrong = lost = resume_failed = False
    checks: list[str] = []
    rc = res.rc
    rc_text = "timeout" if res.timed_out else str(rc)
    if res.timed_out:
        problems.append(f"timed out after {plan.timeout:.0f} s")
    chk = plan.verify(res) if plan.verify else Check()
    if plan.interrupt is not None:
        if "the signal was never sent" in res.err:
            problems.append("the command ended before it could be interrupted (the case did not test anything)")
        elif plan.interrupt[0] == signal.SIGINT and not res.timed_out:  # Ctrl-C: the user must be told
            if rc == 0:
                problems.append("exit 0 after Ctrl-C")
            elif not text.strip() or not any(n.lower() in text.lower() for n in plan.names or ("interrupt",)):
                problems.append(f"Ctrl-C ended it with exit {rc} and no message saying it was interrupted "
                                "(and whether work was kept)")
    elif rc == 0:
        if plan.expect == "error":
            wrong = True
            problems.append("exit 0 on an input it should refuse")
        if chk.wrong:
            wrong = True
    elif not res.timed_out:
        if plan.expect == "ok":
            problems.append(f"refused a valid input (exit {rc})")
        if not text.strip():
            problems.append("no message")
        else:
            if plan.names and not any(n.lower() in text.lower() for n in plan.names):
                problems.append(f"the message names none of {', '.join(map(repr, plan.names[:3]))}")
            if not FIX_WORDS.search(text):
                problems.append("the message does not say what to do")
    problems += [f"wrong: {w}" for w in chk.wrong]
    if plan.resume is not None and not res.timed_out:
        if plan.between:
            plan.between()
        r2 = run_cli(plan.resume.argv, plan.resume.cwd or case_dir, env, plan.resume.timeout)
        log.append(log_entry(plan.resume.argv, r2))
        rc_text += f"→{'timeout' if r2.timed_out else r2.rc}"
        c2 = plan.resume.verify(r2) if plan.resume.verify else Check()
        if TRACEBACK in r2.out or TRACEBACK in r2.err:
            tb = True
            problems.append("traceback on resume")
        if r2.rc != 0 or c2.wrong or c2.lost:
            resume_failed = True
            why = "; ".join(c2.wrong + c2.lost) or "; ".join(message_lines(r2.out, r2.err))[:240]
            problems.append(f"resume failed (exit {r2.rc}): {why}")
            checks.append("resume FAILED")
        else:
            checks.append("resume ok")
        chk.note = "; ".join(x for x in (chk.note, c2.note) if x)
        chk.lost += c2.lost
        if not msg_lines or rc == 0:
            msg_lines = [ln.strip() for ln in r2.out.splitlines() if ln.strip()][:1] or message_lines(r2.out, r2.err)
    if chk.lost:
        lost = True
        problems += [f"lost: {x}" for x in chk.lost]
    if plan.marker is not None:
        if plan.marker.exists():
            problems.append(f"planted code RAN: {plan.marker.name} exists")
            wrong = True
            checks.append("marker PRESENT")
        else:
            checks.append("marker absent")
    escaped = [str(p) for p in plan.escapes if p.exists()]
    if escaped:
        problems.append(f"a hostile name escaped: {', '.join(escaped)}")
    if chk.note:
        checks.append(chk.note)
    if rc == 0 and plan.resume is None:
        msg_lines = [ln.strip() for ln in res.out.splitlines() if ln.strip()][:1] or msg_lines
    if plan.interrupt is not None and not msg_lines:
        msg_lines = [f"(after the signal: exit {rc}, no message)"]
    return Outcome(cdef, "pass" if not problems else "FAIL", rc_text, tb, (msg_lines[0] if msg_lines else ""),
                   "; ".join(checks), problems, wrong, lost, resume_failed, bool(escaped), res.seconds)


def run_case(cdef: CaseDef, shared: Shared, env: dict) -> Outcome:
    d = shared.work / "cases" / cdef.id
    if d.exists():
        _rmtree(d)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        plan = cdef.build(d, shared)
    except Exception as exc:  # noqa: BLE001 - a broken case set-up is the benchmark's fault: say so
        return Outcome(cdef, "FAIL", "-", False, f"benchmark set-up failed: {type(exc).__name__}: {exc}", "",
                       ["set-up failed"], False, False, False, False, time.perf_counter() - t0)
    if plan.skip:
        return Outcome(cdef, "skip", "-", False, plan.skip, "", [], False, False, False, False, 0.0)
    allowed = tuple(plan.allowed)
    for p in (plan.resume, plan.then):
        if p is not None:
            allowed += tuple(p.allowed)
    before = snapshot(shared.work, d)
    res = run_cli(plan.argv, plan.cwd or d, env, plan.timeout, plan.interrupt)
    log = [log_entry(plan.argv, res)]
    outcome = judge(cdef, plan, res, env, shared, d, log)
    if plan.then is not None and not res.timed_out:
        if plan.between and plan.resume is None:
            plan.between()
        r2 = run_cli(plan.then.argv, plan.then.cwd or d, env, plan.then.timeout)
        log.append(log_entry(plan.then.argv, r2))
        o2 = judge(cdef, plan.then, r2, env, shared, d, log)
        outcome.rc += f", then {o2.rc}"
        outcome.problems += [f"step 2: {p}" for p in o2.problems]
        outcome.traceback |= o2.traceback
        outcome.wrong |= o2.wrong
        outcome.lost |= o2.lost
        outcome.check = "; ".join(x for x in (outcome.check, o2.check) if x)
        if outcome.status == "pass" and o2.status != "pass":
            outcome.status = "FAIL"
        if not outcome.message:
            outcome.message = o2.message
    after = snapshot(shared.work, d)
    written, removed = diff_outside(before, after, allowed)
    rel = [os.path.relpath(p, shared.work) for p in written + removed]
    if written:
        outcome.outside = True
        outcome.problems.append(f"wrote outside its folders: {', '.join(rel[:4])}")
    if removed:
        outcome.lost = True
        outcome.problems.append(f"removed: {', '.join(os.path.relpath(p, shared.work) for p in removed[:4])}")
    outcome.check = "; ".join(x for x in (outcome.check, "no outside write" if not (written or removed) else
                                          "OUTSIDE WRITE") if x)
    if outcome.problems:
        outcome.status = "FAIL"
        outcome.unclear = all(p.startswith(MESSAGE_PROBLEMS) for p in outcome.problems)
    outcome.seconds = time.perf_counter() - t0
    (d / "benchmark-output.txt").write_text("\n".join(log))  # after the last snapshot: for reading a failure
    return outcome


def _rmtree(p: Path) -> None:
    for root, dirs, _ in os.walk(p):
        for x in dirs:
            try:
                os.chmod(os.path.join(root, x), 0o755)
            except OSError:
                pass
    shutil.rmtree(p, ignore_errors=True)


# =================================================================================================== verification


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return (rows[0], rows[1:]) if rows else ([], [])


def finite_json(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite_json(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_json(v) for v in obj)
    return True


def check_prediction_csv(path: Path, video: Path | None, cols=("valence", "arousal"), frames: int | None = None,
                         times_from_video: bool = False) -> Check:
    """A per-frame predictions CSV: one row per decoded frame, finite values, increasing times."""
    c = Check()
    if not path.is_file():
        c.wrong.append(f"{path.name} not written")
        return c
    header, rows = read_csv_rows(path)
    want = frames
    decoded = None
    if video is not None:
        decoded = decoded_times(video)
        want = len(decoded) if decoded is not None else want
    if want is not None and len(rows) != want:
        c.wrong.append(f"{path.name}: {len(rows)} rows but {want} decoded frames")
    for col in cols:
        if col not in header:
            c.wrong.append(f"{path.name}: no {col} column")
            continue
        k = header.index(col)
        vals = []
        for r in rows:
            try:
                vals.append(float(r[k]))
            except (ValueError, IndexError):
                vals.append(math.nan)
        if not all(math.isfinite(v) for v in vals):
            c.wrong.append(f"{path.name}: NaN/non-numeric {col}")
    if "time" in header:
        k = header.index("time")
        t = np.array([float(r[k]) for r in rows]) if rows else np.zeros(0)
        if len(t) > 1 and not (np.diff(t) > 0).all():
            c.wrong.append(f"{path.name}: times do not increase")
        if times_from_video and decoded is not None and len(decoded) == len(t) and len(t) > 1:
            dv = np.diff(np.array(decoded))
            if not np.allclose(np.diff(t), dv, atol=2e-3):
                c.wrong.append(f"{path.name}: frame spacing differs from the decoded timestamps")
    c.note = f"rows {len(rows)}={want}" if want is not None else f"rows {len(rows)}"
    return c


def check_predict_out(out: Path, items: list[tuple[str, Path]], times_from_video: bool = False) -> Check:
    """``predict`` outputs: ``<name>.csv`` and ``<name>.json`` per (output name, video)."""
    c = Check()
    notes = []
    by_name = {unquote(p.stem): p.stem for p in out.glob("*.csv")} if out.is_dir() else {}  # names are encoded
    for name, video in items:
        stem = by_name.get(name, name)
        r = check_prediction_csv(out / f"{stem}.csv", video, times_from_video=times_from_video)
        c.wrong += r.wrong
        notes.append(r.note)
        js = out / f"{stem}.json"
        if not js.is_file():
            c.wrong.append(f"{js.name} not written")
            continue
        summary = json.loads(js.read_text())
        if not finite_json(summary):
            c.wrong.append(f"{js.name}: NaN/Inf in the summary")
        decoded = decoded_times(video)
        if decoded is not None and summary.get("frames") != len(decoded):
            c.wrong.append(f"{js.name}: frames {summary.get('frames')} but {len(decoded)} decoded")
    c.note = ", ".join(notes)
    return c


def store_entries(store: Path) -> dict[str, dict[str, dict]]:
    """``{extractor id: {recording: sidecar entry}}`` of a feature store."""
    out: dict[str, dict[str, dict]] = {}
    if not store.is_dir():
        return out
    for ex in sorted(p for p in store.iterdir() if p.is_dir()):
        entries = {}
        for s in sorted((ex / "_status").glob("*.json")) if (ex / "_status").is_dir() else []:
            try:
                e = json.loads(s.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            entries[e.get("recording", s.stem)] = e | {"_sidecar": str(s)}
        out[ex.name] = entries
    return out


def check_store(store: Path, frames: dict[str, int], extractors: int = 2) -> Check:
    """Every recording of ``frames`` is done under each extractor: the .npy lies inside its extractor folder, has
    ``frames[name]`` rows and finite values."""
    c = Check()
    entries = store_entries(store)
    if len(entries) < extractors:
        c.wrong.append(f"{len(entries)} extractor folders in the store, expected {extractors}")
    for eid, recs in entries.items():
        for name, n in frames.items():
            e = recs.get(name)
            if not e or e.get("status") != "done":
                c.wrong.append(f"{eid}/{name}: {'no entry' if not e else e.get('status')}")
                continue
            npy = store / eid / e.get("file", "")
            if npy.parent.resolve() != (store / eid).resolve() or not npy.is_file():
                c.wrong.append(f"{eid}/{name}: file {e.get('file')!r} missing or outside the store")
                continue
            try:
                arr = np.load(npy, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001
                c.wrong.append(f"{eid}/{name}: unreadable ({exc})")
                continue
            if arr.ndim != 2 or arr.shape[0] != n:
                c.wrong.append(f"{eid}/{name}: shape {arr.shape}, expected {n} rows")
            elif not np.isfinite(arr).all():
                c.wrong.append(f"{eid}/{name}: NaN/Inf in the stored features")
    c.note = f"store: {sum(len(v) for v in entries.values())} entries checked"
    return c


def check_run(run: Path, split: str = "validation", frames: dict[str, int] | None = None) -> Check:
    """A finished run: metrics.json (finite scores) and model.safetensors, prediction CSVs with finite values."""
    c = Check()
    m = run / "metrics.json"
    if not m.is_file() or not (run / "model.safetensors").is_file():
        c.wrong.append("the run is not finished (metrics.json / model.safetensors missing)")
        return c
    metrics = json.loads(m.read_text())
    if not finite_json(metrics.get("overall", {})):
        c.wrong.append("NaN in metrics.json")
    preds = sorted((run / "predictions" / split).glob("*.csv"))
    if not preds:
        c.wrong.append("no prediction CSV")
    for p in preds:
        name = unquote(p.stem)
        r = check_prediction_csv(p, None, frames=(frames or {}).get(name))
        c.wrong += r.wrong
    c.note = f"run finished, {len(preds)} prediction CSVs checked"
    return c


def check_eval(out_dir: Path, frames: dict[str, int], labelled: bool = True) -> Check:
    c = Check()
    m = out_dir / "metrics.json"
    if not m.is_file():
        c.wrong.append(f"{out_dir.name}/metrics.json not written")
        return c
    metrics = json.loads(m.read_text())
    if labelled and (not metrics.get("overall") or not finite_json(metrics["overall"])):
        c.wrong.append("NaN or no overall score in metrics.json")
    for name, n in frames.items():
        r = check_prediction_csv(out_dir / f"{name}.csv", None, frames=n)
        c.wrong += r.wrong
    c.note = f"eval: {len(frames)} CSVs, rows = frames"
    return c


def unchanged(paths: list[Path]) -> Callable[[], dict]:
    """A fingerprint of files that must survive a case (content hash + presence)."""
    def fp() -> dict:
        out = {}
        for p in paths:
            out[str(p)] = p.read_bytes() if p.is_file() else None
        return out
    return fp


def kept(before: dict, what: str) -> Check:
    c = Check()
    for p, data in before.items():
        now = Path(p).read_bytes() if Path(p).is_file() else None
        if data is not None and now is None:
            c.lost.append(f"{Path(p).name} is gone")
        elif data is not None and now != data:
            c.lost.append(f"{Path(p).name} was changed")
    if not c.lost:
        c.note = f"{what} kept"
    return c


def combine(*fns: Callable[[Result], Check]) -> Callable[[Result], Check]:
    def run(res: Result) -> Check:
        out = Check()
        for f in fns:
            out.add(f(res))
        return out
    return run


def only_if_ok(fn: Callable[[Result], Check]) -> Callable[[Result], Check]:
    return lambda res: fn(res) if res.rc == 0 else Check()


# =================================================================================================== building blocks


def link_shared(d: Path, s: Shared) -> None:
    """``d/ds`` → the shared dataset (read-only use), ``d/tiny.yaml``: what the shared run was trained with."""
    os.symlink(os.path.relpath(s.ds, d), d / "ds")
    shutil.copy(s.tiny, d / "tiny.yaml")


def copy_run(d: Path, s: Shared, finished: bool = True) -> Path:
    """A private copy of the shared run as ``d/run`` (``finished=False``: as if interrupted after its last epoch)."""
    link_shared(d, s)
    run = d / "run"
    shutil.copytree(s.run, run)
    if not finished:
        for f in ("metrics.json", "model.safetensors", "metrics_per_epoch.csv"):
            (run / f).unlink(missing_ok=True)
        shutil.rmtree(run / "predictions", ignore_errors=True)
    return run


def copy_ds(d: Path, s: Shared, features: bool = True) -> Path:
    dst = d / "ds"
    shutil.copytree(s.ds, dst, ignore=None if features else shutil.ignore_patterns("features"))
    return dst


def ds_frames(ds: Path, names: list[str] | None = None) -> dict[str, int]:
    out = {}
    for v in sorted((ds / "videos").glob("*.mp4")):
        if names is None or v.stem in names:
            t = decoded_times(v)
            out[v.stem] = len(t) if t is not None else -1
    return out


def val_names(s: Shared) -> list[str]:
    return sorted(p.stem for p in (s.ds / "annotations" / "VA_Estimation_Challenge" / "Validation_Set").glob("*.txt"))


def predict_plan(d: Path, s: Shared, inputs: list[str], expect: str = "error", names: tuple[str, ...] = (),
                 items: list[tuple[str, Path]] | None = None, extra: list[str] | None = None, label: str = "",
                 checkpoint: Path | None = None, times: bool = False, verify=None, **kw) -> Plan:
    ckpt = s.rel(checkpoint or s.model, d)
    if items is not None and verify is None:
        verify = only_if_ok(lambda res: check_predict_out(d / "out", items, times))
    return Plan(["predict", ckpt, *inputs, "--out", "out", *(extra or [])], expect, names, (d / "out",),
                verify=verify, label=label, **kw)


def garbage(path: Path, n: int = 4096, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


# =================================================================================================== media


@case("M01", "media", "truncated mp4 (first 40% of its bytes)")
def _m01(d, s):
    v = write_video(d / "clip.mp4", 30)
    data = v.read_bytes()
    v.write_bytes(data[: int(len(data) * 0.4)])
    return predict_plan(d, s, ["clip.mp4"], "either", ("clip.mp4",), items=[("clip", v)])


@case("M02", "media", "truncated mp4 (last 10% cut: the moov index is gone)")
def _m02(d, s):
    v = write_video(d / "clip.mp4", 30)
    data = v.read_bytes()
    v.write_bytes(data[: int(len(data) * 0.9)])
    return predict_plan(d, s, ["clip.mp4"], "either", ("clip.mp4",), items=[("clip", v)])


@case("M03", "media", "random bytes named .mp4")
def _m03(d, s):
    garbage(d / "noise.mp4")
    return predict_plan(d, s, ["noise.mp4"], "error", ("noise.mp4",))


@case("M04", "media", "zero-byte .mp4")
def _m04(d, s):
    (d / "empty.mp4").write_bytes(b"")
    return predict_plan(d, s, ["empty.mp4"], "error", ("empty.mp4",))


@case("M28", "media", "an empty mp4 container (a header, no frame)")
def _m28(d, s):
    p = d / "hollow.mp4"
    with av.open(str(p), "w") as c:
        vs = c.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()  # the header is written although no frame ever is
    return predict_plan(d, s, ["hollow.mp4"], "either", ("hollow.mp4",), items=[("hollow", p)])


@case("M05", "media", "a directory named clip.mp4 given as the input")
def _m05(d, s):
    (d / "clip.mp4").mkdir()
    return predict_plan(d, s, ["clip.mp4"], "error", ("clip.mp4",))


@case("M06", "media", "a folder holding a good video and a sub-folder named x.mp4")
def _m06(d, s):
    v = write_video(d / "media" / "good.mp4", 30)
    (d / "media" / "x.mp4").mkdir()
    write_video(d / "media" / "x.mp4" / "inner.mkv", 12, codec="mpeg4")
    return predict_plan(d, s, ["media"], "ok", items=[("good", v)], label="rows = decoded frames")


@case("M07", "media", "a text file renamed .mp4")
def _m07(d, s):
    (d / "notes.mp4").write_text("these are my meeting notes, not a video\n" * 20)
    return predict_plan(d, s, ["notes.mp4"], "error", ("notes.mp4",))


@case("M08", "media", "a video without an audio track")
def _m08(d, s):
    v = write_video(d / "mute.mp4", 30, audio=False)

    def verify(res):
        c = check_predict_out(d / "out", [("mute", v)])
        js = d / "out" / "mute.json"
        if js.is_file() and json.loads(js.read_text()).get("audio") != "missing":
            c.wrong.append("the summary does not say the audio is missing")
        return c
    return predict_plan(d, s, ["mute.mp4"], "ok", verify=only_if_ok(verify))


@case("M09", "media", "an audio-only .wav given to predict")
def _m09(d, s):
    write_wav(d / "voice.wav", 1.5)
    return predict_plan(d, s, ["voice.wav"], "error", ("voice.wav",))


@case("M10", "media", "an audio-only .mp3 given to predict")
def _m10(d, s):
    write_mp3(d / "voice.mp3", 1.5)
    return predict_plan(d, s, ["voice.mp3"], "error", ("voice.mp3",))


@case("M11", "media", "predict on a folder holding only audio files (.wav, .mp3)")
def _m11(d, s):
    write_wav(d / "media" / "a.wav", 1.0)
    write_mp3(d / "media" / "b.mp3", 1.0)
    return predict_plan(d, s, ["media"], "error", ("media", "a.wav", "b.mp3"))


@case("M12", "media", "extract on a folder with an audio-only .wav beside a video")
def _m12(d, s):
    v = write_video(d / "media" / "clip.mp4", 30)
    write_wav(d / "media" / "voice.wav", 1.0)
    n = len(decoded_times(v))
    return Plan(["extract", "media", "--out", "store", "-q"], "error", ("voice.wav",), (d / "store",),
                verify=lambda res: check_store(d / "store", {"clip": n}), label="the video is still extracted")


@case("M13", "media", "predict on a folder with a .wav beside a video")
def _m13(d, s):
    v = write_video(d / "media" / "clip.mp4", 30)
    write_wav(d / "media" / "voice.wav", 1.0)
    return predict_plan(d, s, ["media"], "ok", items=[("clip", v)])


@case("M14", "media", "a video with a single frame")
def _m14(d, s):
    v = write_video(d / "one.mp4", 1)
    return predict_plan(d, s, ["one.mp4"], "either", ("one.mp4",), items=[("one", v)])


@case("M15", "media", "odd frame size 63x47 (H.264 4:4:4)")
def _m15(d, s):
    v = write_video(d / "odd.mp4", 30, size=(63, 47), codec="libx264", pix_fmt="yuv444p")
    return predict_plan(d, s, ["odd.mp4"], "ok", items=[("odd", v)])


@case("M16", "media", "variable frame rate (irregular timestamps)")
def _m16(d, s):
    pts = [0, 40, 100, 120, 200, 210, 330, 400, 440, 520, 600, 610, 700, 760, 800, 880, 960, 1000, 1100, 1120]
    v = write_video(d / "vfr.mp4", len(pts), codec="libx264", pts_ms=pts)
    return predict_plan(d, s, ["vfr.mp4"], "ok", items=[("vfr", v)], times=True,
                        label="rows = decoded frames, spacing = stream timestamps")


@case("M17", "media", "very short video (10 frames, window 60)")
def _m17(d, s):
    v = write_video(d / "short.mp4", 10)
    return predict_plan(d, s, ["short.mp4"], "ok", items=[("short", v)])


@case("M18", "media", "primed H.264 mp4 with an edit list (rows must equal decoded frames)")
def _m18(d, s):
    v = write_primed(d / "primed.mp4", 20, 3)

    def verify(res):
        c = check_predict_out(d / "out", [("primed", v)], times_from_video=True)
        p = d / "out" / "primed.csv"
        if p.is_file():
            header, rows = read_csv_rows(p)
            if rows and abs(float(rows[0][header.index("time")])) > 1e-6:
                c.wrong.append(f"the first frame is at {rows[0][header.index('time')]} s, not 0")
        return c
    return predict_plan(d, s, ["primed.mp4"], "ok", verify=only_if_ok(verify))


@case("M19", "media", "a rotated (portrait) phone video")
def _m19(d, s):
    flat = write_video(d / "src" / "flat.mp4", 30)
    v = rotate_mp4(flat, d / "portrait.mp4")
    shutil.rmtree(d / "src")
    return predict_plan(d, s, ["portrait.mp4"], "ok", items=[("portrait", v)])


@case("M20", "media", "a path that does not exist")
def _m20(d, s):
    return predict_plan(d, s, ["nowhere/clip.mp4"], "error", ("nowhere",))


@case("M21", "media", "a file name with spaces, accents and an upper-case .MP4 extension")
def _m21(d, s):
    v = write_video(d / "media" / "Réunion du lundi.MP4", 20)
    return predict_plan(d, s, ["media"], "ok", items=[("Réunion du lundi", v)])


@case("M22", "media", "--crops pointing to a folder that does not exist")
def _m22(d, s):
    write_video(d / "clip.mp4", 20)
    return predict_plan(d, s, ["clip.mp4"], "error", ("nocrops",), extra=["--crops", "nocrops"])


@case("M23", "media", "--crops with crops numbered past the video's frames")
def _m23(d, s):
    write_video(d / "clip.mp4", 20)
    write_jpgs(d / "crops", range(0, 60, 3))
    return predict_plan(d, s, ["clip.mp4"], "error", ("crops", "00058.jpg"), extra=["--crops", "crops"])


@case("M24", "media", "bytes overwritten in the middle of the video data")
def _m24(d, s):
    v = write_video(d / "damaged.mp4", 40)
    data = bytearray(v.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 600] = np.random.default_rng(1).integers(0, 256, 600, dtype=np.uint8).tobytes()
    v.write_bytes(bytes(data))
    return predict_plan(d, s, ["damaged.mp4"], "either", ("damaged.mp4",), items=[("damaged", v)])


@case("M25", "media", "audio track 5x longer than the video")
def _m25(d, s):
    v = write_video(d / "long_audio.mp4", 25, audio_seconds=5.0)
    return predict_plan(d, s, ["long_audio.mp4"], "ok", items=[("long_audio", v)])


@case("M26", "media", "a silent audio track (all zeros)")
def _m26(d, s):
    v = write_video(d / "silent.mp4", 30, audio_level=0.0)
    return predict_plan(d, s, ["silent.mp4"], "ok", items=[("silent", v)], label="no NaN from log(0)")


@case("M27", "media", "two frames, no audio")
def _m27(d, s):
    v = write_video(d / "two.mp4", 2, audio=False)
    return predict_plan(d, s, ["two.mp4"], "either", ("two.mp4",), items=[("two", v)])


# =================================================================================================== labels / datasets

ANN = Path("annotations") / "VA_Estimation_Challenge"


def ann_text(n: int, value: str | None = None) -> str:
    rows = [value or f"{0.5 * math.sin(i / 5):.3f},{0.4 * math.cos(i / 7):.3f}" for i in range(n)]
    return "valence,arousal\n" + "\n".join(rows) + "\n"


def aff_root(d: Path, frames: int = 30, a_text: str | None = None, b: bool = True, videos: bool = True) -> Path:
    """A tiny Aff-Wild2 layout: train recording ``a`` and validation recording ``b`` (30-frame videos)."""
    root = d / "aff"
    for folder in ("Train_Set", "Validation_Set"):
        (root / ANN / folder).mkdir(parents=True)
    (root / ANN / "Train_Set" / "a.txt").write_text(a_text if a_text is not None else ann_text(frames))
    if videos:
        write_video(root / "videos" / "a.mp4", frames)
    if b:
        (root / ANN / "Validation_Set" / "b.txt").write_text(ann_text(frames))
        if videos:
            write_video(root / "videos" / "b.mp4", frames)
    return root


def prepare_plan(d: Path, kind: str, root: str, expect: str = "error", names: tuple[str, ...] = (),
                 extra: list[str] | None = None, summary: Callable[[dict], Check] | None = None,
                 label: str = "") -> Plan:
    """``avaffect prepare``; with ``summary`` the JSON report is checked (the numbers must be the right ones)."""
    argv = ["prepare", kind, root, *(extra or [])]
    verify = None
    if summary is not None:
        argv += ["--json", "report.json"]

        def verify(res):
            if res.rc != 0:
                return Check()
            p = d / "report.json"
            if not p.is_file():
                return Check(wrong=["no JSON report"])
            return summary(json.loads(p.read_text()))
    return Plan(argv, expect, names, (d / "report.json",), verify=verify, label=label)


def expect_summary(split: str, frames: int | None = None, annotated: float | None = None,
                   recordings: int | None = None) -> Callable[[dict], Check]:
    def check(rep: dict) -> Check:
        c = Check()
        sm = rep.get("summary", {}).get(split)
        if sm is None:
            c.wrong.append(f"no {split} recordings in the summary")
            return c
        if frames is not None and sm["frames"] != frames:
            c.wrong.append(f"{split}: {sm['frames']} frames, expected {frames}")
        if annotated is not None and abs(sm["annotated_fraction"] - annotated) > 1e-6:
            c.wrong.append(f"{split}: annotated {sm['annotated_fraction']:.4f}, expected {annotated:.4f}")
        if recordings is not None and sm["recordings"] != recordings:
            c.wrong.append(f"{split}: {sm['recordings']} recordings, expected {recordings}")
        c.note = f"{split}: {sm['recordings']} rec, {sm['frames']} frames, {sm['annotated_fraction']:.1%} annotated"
        return c
    return check


def _ann_case(cid: str, what: str, text_fn: Callable[[int], str], expect: str, names=("a.txt",), extra=None,
              summary=None, frames: int = 30):
    @case(cid, "labels", what)
    def build(d, s):
        aff_root(d, frames, text_fn(frames))
        return prepare_plan(d, "affwild2", "aff", expect, names, extra, summary)
    return build


def _rows(n, fn):
    return "valence,arousal\n" + "".join(fn(i) + "\n" for i in range(n))


_ann_case("L01", "Aff-Wild2 annotation with a wrong header (val,aro)",
          lambda n: ann_text(n).replace("valence,arousal", "val,aro"), "error", ("a.txt",))
_ann_case("L02", "annotation with a non-numeric cell", lambda n: _rows(n, lambda i: "0.1,abc" if i == 7 else "0.1,0.2"),
          "error", ("a.txt",))
_ann_case("L03", "annotation value out of range (1.5)",
          lambda n: _rows(n, lambda i: "1.5,0.2" if i == 4 else "0.1,0.2"), "error", ("a.txt", "1.5"))
_ann_case("L04", "annotation with NaN", lambda n: _rows(n, lambda i: "nan,0.2" if i == 3 else "0.1,0.2"),
          "error", ("a.txt",))
_ann_case("L05", "annotation with inf", lambda n: _rows(n, lambda i: "0.1,inf" if i == 3 else "0.1,0.2"),
          "error", ("a.txt",))
_ann_case("L06", "annotation with -5 markers on 10 of 30 frames (→ unannotated)",
          lambda n: _rows(n, lambda i: "-5,-5" if i < 10 else "0.1,0.2"), "ok",
          summary=expect_summary("train", 30, 20 / 30))
_ann_case("L07", "-5 in the valence column only (the frame is unannotated for both)",
          lambda n: _rows(n, lambda i: "-5,0.3" if i % 3 == 0 else "0.1,0.2"), "ok",
          summary=expect_summary("train", 30, 20 / 30))
_ann_case("L08", "one annotation row too many (no tolerance)", lambda n: ann_text(n + 1), "error", ("a.txt", "31"))
_ann_case("L09", "one annotation row too few (no tolerance)", lambda n: ann_text(n - 1), "error", ("a.txt", "29"))
_ann_case("L10", "one row too many with --length-tolerance 1", lambda n: ann_text(n + 1), "ok",
          extra=["--length-tolerance", "1"], summary=expect_summary("train", 30, 1.0))
_ann_case("L11", "one row too few with --length-tolerance 1", lambda n: ann_text(n - 1), "ok",
          extra=["--length-tolerance", "1"], summary=expect_summary("train", 30, 29 / 30))
_ann_case("L12", "three rows too many with --length-tolerance 1", lambda n: ann_text(n + 3), "error",
          ("a.txt", "33"), extra=["--length-tolerance", "1"])
_ann_case("L13", "empty annotation file", lambda n: "", "error", ("a.txt",))
_ann_case("L14", "annotation with a header and no rows", lambda n: "valence,arousal\n", "error", ("a.txt",))
_ann_case("L15", "annotation rows with three columns", lambda n: _rows(n, lambda i: "0.1,0.2,0.3"), "error", ("a.txt",))
_ann_case("L16", "Windows line endings (CRLF)", lambda n: ann_text(n).replace("\n", "\r\n"), "ok",
          summary=expect_summary("train", 30, 1.0))
_ann_case("L17", "a UTF-8 byte-order mark before the header", lambda n: "\ufeff" + ann_text(n), "either", ("a.txt",),
          summary=expect_summary("train", 30, 1.0))
_ann_case("L18", "spaces around the values and blank lines at the end",
          lambda n: _rows(n, lambda i: " 0.1 , 0.2 ") + "\n\n", "ok", summary=expect_summary("train", 30, 1.0))


@case("L19", "labels", "the same annotation in both splits")
def _l19(d, s):
    root = aff_root(d)
    shutil.copy(root / ANN / "Train_Set" / "a.txt", root / ANN / "Validation_Set" / "a.txt")
    return prepare_plan(d, "affwild2", "aff", "error", ("a.txt",))


@case("L20", "labels", "a crops folder with a crop beyond the timeline")
def _l20(d, s):
    root = aff_root(d)
    write_jpgs(root / "cropped_aligned" / "a", list(range(30)) + [44])
    return prepare_plan(d, "affwild2", "aff", "error", ("00045.jpg", "cropped_aligned"))


@case("L21", "labels", "no crops folder for one recording (faces must be detected)")
def _l21(d, s):
    root = aff_root(d)
    write_jpgs(root / "cropped_aligned" / "b", range(30))
    return prepare_plan(d, "affwild2", "aff", "ok", summary=expect_summary("train", 30, 1.0))


@case("L22", "labels", "_left/_right recordings without their base video")
def _l22(d, s):
    root = aff_root(d)
    for side, split in (("left", "Train_Set"), ("right", "Validation_Set")):
        write_jpgs(root / "cropped_aligned" / f"x_{side}", range(30))
        (root / ANN / split / f"x_{side}.txt").write_text(ann_text(30))
    return prepare_plan(d, "affwild2", "aff", "error", ("x.mp4", "x_left", "base video"))


@case("L23", "labels", "_left/_right recordings sharing their base video (valid)")
def _l23(d, s):
    root = aff_root(d, b=False)
    write_video(root / "videos" / "x.mp4", 30)
    for side, split in (("left", "Train_Set"), ("right", "Validation_Set")):
        write_jpgs(root / "cropped_aligned" / f"x_{side}", range(30))
        (root / ANN / split / f"x_{side}.txt").write_text(ann_text(30))
    return prepare_plan(d, "affwild2", "aff", "ok", summary=lambda rep: expect_summary("train", 60, 1.0, 2)(rep).add(
        expect_summary("validation", 30, 1.0, 1)(rep)))


@case("L24", "labels", "no annotations folder at all")
def _l24(d, s):
    write_video(d / "aff" / "videos" / "a.mp4", 30)
    return prepare_plan(d, "affwild2", "aff", "error", ("annotations",))


@case("L25", "labels", "the Validation_Set folder is missing")
def _l25(d, s):
    root = aff_root(d, b=False)
    (root / ANN / "Validation_Set").rmdir()
    return prepare_plan(d, "affwild2", "aff", "error", ("Validation_Set",))


@case("L26", "labels", "an annotation whose recording has neither video nor crops")
def _l26(d, s):
    root = aff_root(d)
    (root / ANN / "Train_Set" / "ghost.txt").write_text(ann_text(30))
    return prepare_plan(d, "affwild2", "aff", "error", ("ghost",))


@case("L27", "labels", "a garbage video in the Aff-Wild2 layout")
def _l27(d, s):
    root = aff_root(d)
    garbage(root / "videos" / "a.mp4")
    return prepare_plan(d, "affwild2", "aff", "error", ("a.mp4",))


@case("L28", "labels", "a video without an audio track in the Aff-Wild2 layout")
def _l28(d, s):
    root = aff_root(d)
    write_video(root / "videos" / "a.mp4", 30, audio=False)
    return prepare_plan(d, "affwild2", "aff", "error", ("a.mp4",))


# ----------------------------------------------------------------------------------------------- manifests


def manifest_root(d: Path, rows: list[str] | None = None, header: str = "recording,video,audio,labels,split,subject",
                  labels: dict[str, str] | None = None, frames: int = 30) -> Path:
    """``d/man/manifest.csv`` with clips c1 (train) and c2 (validation), 30-frame videos and frame labels."""
    root = d / "man"
    for name in ("c1", "c2"):
        write_video(root / "videos" / f"{name}.mp4", frames)
    labels = labels if labels is not None else {"c1": ann_text(frames), "c2": ann_text(frames)}
    for name, text in labels.items():
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{name}.csv").write_text(text)
    rows = rows if rows is not None else ["c1,videos/c1.mp4,,labels/c1.csv,train,s1",
                                          "c2,videos/c2.mp4,,labels/c2.csv,validation,s2"]
    (root / "manifest.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root


def _man_case(cid, what, expect, names, rows=None, header=None, labels=None, summary=None, write=None):
    @case(cid, "labels", what)
    def build(d, s):
        kw = {}
        if header is not None:
            kw["header"] = header
        root = manifest_root(d, rows, labels=labels(30) if callable(labels) else labels, **kw)
        if write is not None:
            write(root)
        return prepare_plan(d, "manifest", "man", expect, names, summary=summary)
    return build


def _time_labels(n: int, step: float = 0.04, start: float = 0.0, order=None) -> str:
    times = [start + i * step for i in range(n)] if order is None else order
    return "time,valence,arousal\n" + "".join(f"{t:.3f},0.1,0.2\n" for t in times)


_man_case("L29", "manifest without its split column", "error", ("manifest.csv", "split"),
          rows=["c1,videos/c1.mp4,,labels/c1.csv,s1"], header="recording,video,audio,labels,subject")
_man_case("L30", "manifest with an unknown split (holdout)", "error", ("holdout",),
          rows=["c1,videos/c1.mp4,,labels/c1.csv,train,s1", "c2,videos/c2.mp4,,labels/c2.csv,holdout,s2"])
_man_case("L31", "manifest listing a recording twice", "error", ("c1",),
          rows=["c1,videos/c1.mp4,,labels/c1.csv,train,s1", "c1,videos/c2.mp4,,labels/c2.csv,validation,s2"])
_man_case("L32", "label rows with empty cells (unannotated steps)", "ok", (),
          labels=lambda n: {"c1": _rows(n, lambda i: "," if i < 6 else "0.1,0.2"), "c2": ann_text(n)},
          summary=expect_summary("train", 30, 24 / 30))
_man_case("L33", "time labels running 10 s past a 1.2 s video", "error", ("c1.csv", "c1.mp4"),
          labels={"c1": _time_labels(300), "c2": ann_text(30)})
_man_case("L34", "time labels that go backwards", "error", ("c1.csv",),
          labels={"c1": _time_labels(0, order=[0.0, 0.04, 0.08, 0.06, 0.12]), "c2": ann_text(30)})
_man_case("L35", "manifest label value out of range (-3)", "error", ("c1.csv", "-3"),
          labels=lambda n: {"c1": _rows(n, lambda i: "-3,0.2" if i == 2 else "0.1,0.2"), "c2": ann_text(n)})
_man_case("L36", "manifest video path that does not exist", "error", ("missing.mp4",),
          rows=["c1,videos/missing.mp4,,labels/c1.csv,train,s1", "c2,videos/c2.mp4,,labels/c2.csv,validation,s2"])
_man_case("L37", "manifest row with a missing field", "error", ("manifest.csv", "line 3"),
          rows=["c1,videos/c1.mp4,,labels/c1.csv,train,s1", "c2,videos/c2.mp4,labels/c2.csv,validation,s2"])
_man_case("L38", "time labels with a negative time", "error", ("c1.csv",),
          labels={"c1": _time_labels(0, order=[-0.5, 0.0, 0.04]), "c2": ann_text(30)})
_man_case("L39", "manifest.csv that is empty", "error", ("manifest.csv",),
          write=lambda root: (root / "manifest.csv").write_text(""))


# ----------------------------------------------------------------------------------------------- hostile names


def hostile_extract(cid: str, what: str, name_fn: Callable[[Path], str], escape_fn: Callable[[Path], list[Path]]):
    @case(cid, "labels", what, serial=True)
    def build(d, s):
        name = name_fn(d)
        root = d / "man"
        v = write_video(root / "videos" / "clip.mp4", 30)
        with open(root / "manifest.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["recording", "video", "split"])
            w.writerow([name, "videos/clip.mp4", "test"])
        n = len(decoded_times(v))
        return Plan(["extract", "man", "--dataset", "manifest", "--out", "store", "-q"], "ok", (), (d / "store",),
                    verify=only_if_ok(lambda res: check_store(d / "store", {name: n})),
                    escapes=tuple(escape_fn(d)), label="nothing outside --out; the name round-trips")
    return build


hostile_extract("H01", "manifest recording named ../../x (extract)", lambda d: "../../x",
                lambda d: [d / "x.npy", d / "x.json", d / "store" / "x.npy"])
hostile_extract("H02", "manifest recording named by an absolute path (extract)", lambda d: str(d / "ABS" / "x"),
                lambda d: [d / "ABS"])
hostile_extract("H03", "manifest recording named a/b (extract)", lambda d: "a/b",
                lambda d: [p for p in (d / "store").glob("*/a")] if (d / "store").is_dir() else [])
hostile_extract("H04", "manifest recording named .hidden (extract)", lambda d: ".hidden", lambda d: [])
hostile_extract("H05", "manifest recording named .. (extract)", lambda d: "..", lambda d: [d / "store.npy"])


@case("H06", "labels", "train + evaluate on a manifest whose names are ../../x, /abs, a/b, .hidden",
      serial=True, cost=40)
def _h06(d, s):
    root = d / "man"
    tag = d.name
    names = {"train": ["../../esc_tr_" + tag, str(d / "ABS" / "tr")],
             "validation": ["../../../../esc_va_" + tag, "a/b", ".hidden"]}
    rows = [["recording", "video", "labels", "split"]]
    frames = {}
    for split, ns in names.items():
        for k, name in enumerate(ns):
            write_video(root / "videos" / f"{split}{k}.mp4", 40)
            (root / "labels").mkdir(parents=True, exist_ok=True)
            (root / "labels" / f"{split}{k}.csv").write_text(ann_text(40))
            rows.append([name, f"videos/{split}{k}.mp4", f"labels/{split}{k}.csv", split])
            frames[name] = 40
    with open(root / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (d / "man.yaml").write_text(TINY_YAML + "data: {dataset: manifest}\nfeatures: {store: store}\n")
    val = {n: 40 for n in names["validation"]}
    escapes = (d / f"esc_tr_{tag}.npy", d / f"esc_tr_{tag}.json", d.parent / f"esc_va_{tag}.csv",
               d / f"esc_va_{tag}.png", d / "ABS")

    def verify_train(res):
        c = check_run(d / "run", frames=val) if res.rc == 0 else Check()
        got = sorted(unquote(p.stem) for p in (d / "run" / "predictions" / "validation").glob("*.csv"))
        if res.rc == 0 and got != sorted(names["validation"]):
            c.wrong.append(f"prediction files name {got}, expected {sorted(names['validation'])}")
        return c
    then = Plan(["evaluate", "run", "-q"], "ok", (), (d / "run",),
                verify=only_if_ok(lambda res: check_eval_names(d / "run" / "eval" / "validation", val)),
                escapes=escapes)
    return Plan(["train", "man", "--config", "man.yaml", "--out", "run", "-q"], "ok", (), (d / "run", d / "store"),
                verify=verify_train, escapes=escapes, then=then, timeout=240,
                label="nothing outside run/ and store/")


def check_eval_names(out_dir: Path, frames: dict[str, int]) -> Check:
    files = {unquote(p.stem): p for p in out_dir.glob("*.csv")}
    c = Check()
    if sorted(files) != sorted(frames):
        c.wrong.append(f"eval CSVs name {sorted(files)}, expected {sorted(frames)}")
    for name, n in frames.items():
        if name in files:
            c.wrong += check_prediction_csv(files[name], None, frames=n).wrong
    c.note = "eval outputs named by the recordings"
    return c


# ----------------------------------------------------------------------------------------------- RECOLA


def arff(name: str, values: list[str], times: list[float] | None = None, step: float = 0.04) -> str:
    times = times if times is not None else [i * step for i in range(len(values))]
    lines = ["@relation GoldStandard", "@attribute Instance_name string", "@attribute frameTime numeric",
             "@attribute GoldStandard numeric", "@data"]
    lines += [f"'{name}',{t:.2f},{v}" for t, v in zip(times, values)]
    return "\n".join(lines) + "\n"


def recola_root(d: Path, n: int = 51) -> Path:
    root = d / "recola"
    for name in ("train_1", "dev_1"):
        write_wav(root / "recordings_audio" / f"{name}.wav", (n - 1) * 0.04)
        write_video(root / "recordings_video" / f"{name}.mp4", n - 1, size=(32, 32), audio=False)
        for dim in ("valence", "arousal"):
            p = root / "ratings_gold_standard" / dim / f"{name}.arff"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(arff(name, [f"{0.3 * math.sin(i / 4):.4f}" for i in range(n)]))
    return root


def _recola_case(cid, what, expect, names, damage, summary=None):
    @case(cid, "labels", what)
    def build(d, s):
        root = recola_root(d)
        damage(root)
        return prepare_plan(d, "recola", "recola", expect, names, summary=summary)
    return build


def _val_arff(root: Path) -> Path:
    return root / "ratings_gold_standard" / "valence" / "train_1.arff"


_recola_case("R01", "RECOLA arff without its @data section", "error", ("train_1.arff",),
             lambda r: _val_arff(r).write_text(_val_arff(r).read_text().split("@data")[0]))
_recola_case("R02", "RECOLA arff with a non-numeric GoldStandard", "error", ("train_1.arff",),
             lambda r: _val_arff(r).write_text(_val_arff(r).read_text().replace(",0.0000\n", ",high\n", 1)))
_recola_case("R03", "RECOLA arff with a value out of range (7.5)", "error", ("train_1.arff", "7.5"),
             lambda r: _val_arff(r).write_text(arff("train_1", ["7.5"] + ["0.1"] * 50)))
_recola_case("R04", "RECOLA valence file without its arousal file", "error", ("train_1",),
             lambda r: (r / "ratings_gold_standard" / "arousal" / "train_1.arff").unlink())
_recola_case("R05", "RECOLA valence and arousal files of different lengths", "error", ("train_1.arff",),
             lambda r: _val_arff(r).write_text(arff("train_1", ["0.1"] * 40)))
_recola_case("R06", "RECOLA frameTime not increasing", "error", ("train_1.arff",),
             lambda r: _val_arff(r).write_text(arff("train_1", ["0.1"] * 4, times=[0.0, 0.04, 0.04, 0.08])))
_recola_case("R07", "RECOLA labels running 8 s past the recording", "error", ("train_1",),
             lambda r: [p.write_text(arff("train_1", ["0.1"] * 250)) for p in
                        (r / "ratings_gold_standard").glob("*/train_1.arff")])
_recola_case("R08", "RECOLA file whose name gives no split (session_7.wav)", "error", ("session_7",),
             lambda r: write_wav(r / "recordings_audio" / "session_7.wav", 1.0))
_recola_case("R09", "RECOLA '?' missing values (unannotated steps)", "ok", (),
             lambda r: [p.write_text(arff("train_1", ["?"] * 11 + ["0.1"] * 40)) for p in
                        (r / "ratings_gold_standard").glob("*/train_1.arff")],
             summary=expect_summary("train", 51, 40 / 51))


# =================================================================================================== configs / CLI


def train_plan(d: Path, s: Shared, config: str | None = "tiny.yaml", extra: list[str] | None = None,
               expect: str = "error", names: tuple[str, ...] = (), root: str = "ds", verify=None, **kw) -> Plan:
    if not (d / "ds").exists():
        link_shared(d, s)
    argv = ["train", root, *(["--config", config] if config else []), "--out", "run", "-q", *(extra or [])]
    return Plan(argv, expect, names, (d / "run",), verify=verify, **kw)


def _cfg_case(cid, what, yaml_text, names, extra=None, expect="error", config_name="bad.yaml", show=False):
    """A bad config given to ``train`` (or, ``show``, to ``config show``: the same validation, a lighter command)."""
    @case(cid, "configs", what + (" (config show)" if show else ""))
    def build(d, s):
        if yaml_text is not None:
            (d / config_name).write_text(yaml_text)
        if show:
            return Plan(["config", "show", config_name, *(extra or [])], expect, names)
        link_shared(d, s)
        return train_plan(d, s, config_name if yaml_text is not None else "tiny.yaml", extra, expect, names)
    return build


_cfg_case("C01", "a config YAML that is a list", "- model\n- training\n", ("bad.yaml",))
_cfg_case("C02", "a config that is not valid YAML", "model: {name: concat\ntraining: [1, 2\n", ("bad.yaml",),
          show=True)
_cfg_case("C03", "an unknown section (trainig:)", TINY_YAML + "trainig: {lr: 0.1}\n", ("trainig",), show=True)
_cfg_case("C04", "an unknown model name", "model: {name: transformerXL}\ntraining: {window: 60, hop: 30}\n",
          ("transformerXL",), show=True)
_cfg_case("C05", "a typo in model.params (hiden)", "model: {name: concat, params: {hiden: 8}}\n"
          "training: {window: 60, hop: 30, max_epochs: 1}\n", ("hiden",))
_cfg_case("C06", "model.params.window_length that disagrees with training.window",
          "model: {name: rjca, params: {window_length: 100}}\ntraining: {window: 60, hop: 30, max_epochs: 1}\n",
          ("window_length",), show=True)
_cfg_case("C07", "--max-epochs 0", None, ("max_epochs",), ["--max-epochs", "0"])
_cfg_case("C08", "--set without = (training.max_epochs 5)", None, ("--set", "training.max_epochs"),
          ["--set", "training.max_epochs"])
_cfg_case("C09", "--set into a scalar (training.window.size=3)", None, ("window",), ["--set", "training.window.size=3"])
_cfg_case("C10", "--set with a value of the wrong type (training.max_epochs=many)", None, ("max_epochs",),
          ["--set", "training.max_epochs=many"])
_cfg_case("C11", "--set into an unknown section (optimiser.lr=0.1)", None, ("optimiser",),
          ["--set", "optimiser.lr=0.1"])
_cfg_case("C12", "a --config file that does not exist", None, ("nosuch.yaml",), ["--config", "nosuch.yaml"])
_cfg_case("C13", "an unknown dataset kind (data.dataset: affwild3)", TINY_YAML + "data: {dataset: affwild3}\n",
          ("affwild3",), show=True)
_cfg_case("C14", "an unknown target (training.targets: [happiness])",
          "model: {name: concat, params: {hidden: 8}}\ntraining: {window: 60, hop: 30, targets: [happiness]}\n",
          ("happiness",))
_cfg_case("C15", "training.window: 0", "model: {name: concat, params: {hidden: 8}}\ntraining: {window: 0, hop: 30}\n",
          ("window",), show=True)
_cfg_case("C16", "--folds 9 with 6 folds", None, ("9", "folds"), ["--folds", "9"])
_cfg_case("C17", "--folds abc", None, ("abc",), ["--folds", "abc"])
_cfg_case("C18", "--seeds 0", None, ("seeds",), ["--seeds", "0"])
_cfg_case("C19", "--model that does not exist", None, ("nosuchmodel",), ["--model", "nosuchmodel"])
_cfg_case("C20", "features.workers: 0 in the config", TINY_YAML + "features: {workers: 0}\n", ("workers",))


@case("C21", "configs", "train on a dataset root that does not exist")
def _c21(d, s):
    link_shared(d, s)
    return train_plan(d, s, root="no_dataset", names=("no_dataset",))


@case("C22", "configs", "--out that is an existing file")
def _c22(d, s):
    link_shared(d, s)
    (d / "runfile").write_text("not a folder")
    p = train_plan(d, s, names=("runfile",))
    p.argv[p.argv.index("run")] = "runfile"
    p.verify = lambda res: kept(before, "the file")
    before = unchanged([d / "runfile"])()
    return p


@case("C23", "configs", "an unwritable --out folder (chmod 0500)")
def _c23(d, s):
    link_shared(d, s)
    locked = d / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        (locked / "probe").write_text("x")
        (locked / "probe").unlink()
        return Plan([], skip="skipped: running as root, the folder stays writable")
    except OSError:
        pass
    p = train_plan(d, s, names=("locked",))
    p.argv[p.argv.index("run")] = "locked/run"
    p.allowed = (locked,)
    return p


@case("C24", "configs", "accelerator: gpu on a machine without a GPU", cost=12)
def _c24(d, s):
    link_shared(d, s)
    (d / "gpu.yaml").write_text(TINY_YAML.replace("accelerator: cpu", "accelerator: gpu"))
    if s.cuda:
        return train_plan(d, s, "gpu.yaml", expect="ok", verify=only_if_ok(lambda res: check_run(d / "run")))
    return train_plan(d, s, "gpu.yaml", names=("accelerator", "gpu", "cuda"))


@case("C25", "configs", "extract --workers -1")
def _c25(d, s):
    write_video(d / "media" / "clip.mp4", 20)
    return Plan(["extract", "media", "--out", "store", "--workers", "-1", "-q"], "error", ("--workers", "-1"),
                (d / "store",))


@case("C26", "configs", "extract --workers 0 (= one per core) on a folder of two videos")
def _c26(d, s):
    v1 = write_video(d / "media" / "a.mp4", 20)
    v2 = write_video(d / "media" / "b.mp4", 24)
    frames = {"a": len(decoded_times(v1)), "b": len(decoded_times(v2))}
    return Plan(["extract", "media", "--out", "store", "--workers", "0", "-q"], "ok", (), (d / "store",),
                verify=only_if_ok(lambda res: check_store(d / "store", frames)))


@case("C27", "configs", "extract --shard 3/2")
def _c27(d, s):
    write_video(d / "media" / "clip.mp4", 20)
    return Plan(["extract", "media", "--out", "store", "--shard", "3/2", "-q"], "error", ("3/2", "--shard"),
                (d / "store",))


@case("C28", "configs", "extract --shard abc")
def _c28(d, s):
    write_video(d / "media" / "clip.mp4", 20)
    return Plan(["extract", "media", "--out", "store", "--shard", "abc", "-q"], "error", ("abc", "--shard"),
                (d / "store",))


@case("C29", "configs", "extract a root that does not exist")
def _c29(d, s):
    return Plan(["extract", "no_such_folder", "--out", "store", "-q"], "error", ("no_such_folder",), (d / "store",))


@case("C30", "configs", "a shipped paper config (rja_blstm/full) without its weights: refused before any work")
def _c30(d, s):
    link_shared(d, s)

    def verify(res):
        c = Check()
        if (d / "run").exists():
            c.wrong.append("the run folder was created although nothing could be done")
        if "resnet18" not in res.err.lower() and "resnet18" not in res.out.lower():
            c.wrong.append("the missing weight files are not listed")
        c.note = "missing weights listed, no run folder"
        return c
    p = train_plan(d, s, "rja_blstm/full", names=("weights", "resnet18"), verify=verify)
    p.allowed = ()
    return p


@case("C31", "configs", "the same paper config with --weight-free (1 epoch)", cost=30)
def _c31(d, s):
    link_shared(d, s)
    frames = ds_frames(s.ds, val_names(s))
    p = train_plan(d, s, "rja_blstm/full", ["--weight-free", "--max-epochs", "1", "--set", "features.store=store"],
                   "ok", verify=only_if_ok(lambda res: check_run(d / "run", frames=frames)), timeout=300)
    p.allowed = (d / "run", d / "store")
    return p


@case("C32", "configs", "config show of a paper config that does not exist")
def _c32(d, s):
    return Plan(["config", "show", "rja_blstm/fulll"], "error", ("rja_blstm/fulll", "fulll"))


@case("C33", "configs", "evaluate --split with an unknown split")
def _c33(d, s):
    copy_run(d, s)
    return Plan(["evaluate", "run", "--split", "holdout"], "error", ("holdout",), (d / "run",))


@case("C34", "configs", "--num-folds 0")
def _c34(d, s):
    link_shared(d, s)
    return train_plan(d, s, extra=["--num-folds", "0", "--folds", "all"], names=("num_folds", "num-folds"))


# =================================================================================================== checkpoints / runs


def st_load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def st_save(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> Path:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata=meta)
    return path


def damaged_checkpoint(d: Path, s: Shared, fn: Callable[[dict, dict], tuple[dict, dict]]) -> Path:
    tensors, meta = st_load(s.model)
    tensors, meta = fn(tensors, meta)
    return st_save(d / "model.safetensors", tensors, meta)


def _ckpt_case(cid, what, make: Callable[[Path, Shared], Path], names=("model.safetensors",)):
    @case(cid, "checkpoints", what)
    def build(d, s):
        ckpt = make(d, s)
        shutil.copy(s.video, d / "clip.mp4")
        return predict_plan(d, s, ["clip.mp4"], "error", names, checkpoint=ckpt)
    return build


def _nan_weights(t, m):
    k = next(k for k in t if k.endswith("weight"))
    t[k] = np.full_like(t[k], np.nan)
    return t, m


def _other_shapes(t, m):
    return {k: (np.zeros((v.shape[0] + 1, *v.shape[1:]), v.dtype) if "net." in k else v) for k, v in t.items()}, m


def _renamed(t, m):
    return {k.replace("net.", "model."): v for k, v in t.items()}, m


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


_ckpt_case("K01", "a text file named model.safetensors",
           lambda d, s: _write(d / "model.safetensors", b"weights: trust me\n" * 10))
_ckpt_case("K02", "a truncated checkpoint (first half)",
           lambda d, s: _write(d / "model.safetensors", s.model.read_bytes()[: s.model.stat().st_size // 2]))
_ckpt_case("K03", "a safetensors file with another format tag",
           lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, m | {"format": "someone-else-2"})),
           ("model.safetensors", "someone-else-2"))
_ckpt_case("K04", "NaN weights", lambda d, s: damaged_checkpoint(d, s, _nan_weights))
_ckpt_case("K05", "another model's weights (other shapes) under the same metadata",
           lambda d, s: damaged_checkpoint(d, s, _other_shapes))
_ckpt_case("K06", "weights with renamed keys under the same metadata", lambda d, s: damaged_checkpoint(d, s, _renamed))
_ckpt_case("K07", "broken JSON in the model metadata",
           lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, m | {"model": m["model"][:-7]})))
_ckpt_case("K08", "broken JSON in the preprocessing metadata",
           lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, m | {"preprocessing": '{"version": 2, "window"'})))
_ckpt_case("K09", "metadata without the model entry",
           lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, {k: v for k, v in m.items() if k != "model"})))
_ckpt_case("K10", "a zero-byte checkpoint", lambda d, s: _write(d / "model.safetensors", b""))
_ckpt_case("K11", "the checkpoint path is a folder", lambda d, s: (d / "model.safetensors").mkdir() or
           d / "model.safetensors")
_ckpt_case("K12", "model metadata naming an unknown preset",
           lambda d, s: damaged_checkpoint(d, s, lambda t, m: (t, m | {"model": m["model"].replace("concat", "gpt9")})),
           ("model.safetensors", "gpt9"))


class _Planted:
    """Unpickling this creates the marker file (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_pickle(path: Path, marker: Path, torch_zip: bool = True) -> Path:
    """A checkpoint-looking file that runs code when unpickled: torch's zip format (torch.save) or a plain pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": {"w": _Planted(marker)}, "epoch": 0, "global_step": 1}
    if torch_zip:
        import torch

        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    if marker.exists():
        marker.unlink()
    return path


@case("K13", "checkpoints", "a pickle that runs code given to predict as the checkpoint (.pth)")
def _k13(d, s):
    marker = d / "PWNED"
    ckpt = plant_pickle(d / "model.pth", marker)
    shutil.copy(s.video, d / "clip.mp4")
    p = predict_plan(d, s, ["clip.mp4"], "error", ("model.pth",), checkpoint=ckpt)
    p.marker = marker
    return p


@case("K14", "checkpoints", "a planted pickle as checkpoints/last.ckpt of an interrupted run", cost=15)
def _k14(d, s):
    run = copy_run(d, s, finished=False)
    marker = d / "PWNED"
    plant_pickle(run / "checkpoints" / "last.ckpt", marker)
    frames = ds_frames(s.ds, val_names(s))
    p = train_plan(d, s, expect="ok", verify=only_if_ok(lambda res: check_run(run, frames=frames)),
                   label="never unpickled; training starts again")
    p.marker = marker
    return p


@case("K15", "checkpoints", "a planted pickle as checkpoints/best-epoch=000.ckpt of an interrupted run", cost=15)
def _k15(d, s):
    run = copy_run(d, s, finished=False)
    marker = d / "PWNED"
    plant_pickle(run / "checkpoints" / "best-epoch=000.ckpt", marker)
    frames = ds_frames(s.ds, val_names(s))
    p = train_plan(d, s, expect="either", names=("best-epoch=000.ckpt",),
                   verify=only_if_ok(lambda res: check_run(run, frames=frames)))
    p.marker = marker
    return p


@case("K16", "checkpoints", "planted best-epoch=000.ckpt, then the message's advice followed (delete it, rerun)",
      cost=20)
def _k16(d, s):
    run = copy_run(d, s, finished=False)
    marker = d / "PWNED"
    plant_pickle(run / "checkpoints" / "best-epoch=000.ckpt", marker, torch_zip=False)
    frames = ds_frames(s.ds, val_names(s))
    p = train_plan(d, s, expect="either", names=("best-epoch=000.ckpt",))
    p.marker = marker

    def follow_advice():
        (run / "checkpoints" / "best-epoch=000.ckpt").unlink(missing_ok=True)
    p.between = follow_advice
    p.resume = train_plan(d, s, expect="ok", verify=lambda res: check_run(run, frames=frames) if res.rc == 0
                          else Check())
    return p


@case("K17", "checkpoints", "a truncated checkpoints/last.ckpt of an interrupted run", cost=15)
def _k17(d, s):
    run = copy_run(d, s, finished=False)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    frames = ds_frames(s.ds, val_names(s))
    return train_plan(d, s, expect="either", names=("last.ckpt",),
                      verify=only_if_ok(lambda res: check_run(run, frames=frames)))


@case("K18", "checkpoints", "random bytes as checkpoints/last.ckpt of an interrupted run", cost=15)
def _k18(d, s):
    run = copy_run(d, s, finished=False)
    garbage(run / "checkpoints" / "last.ckpt", 20000)
    frames = ds_frames(s.ds, val_names(s))
    return train_plan(d, s, expect="either", names=("last.ckpt",),
                      verify=only_if_ok(lambda res: check_run(run, frames=frames)))


@case("K19", "checkpoints", "resuming an interrupted run with another config (--set training.lr=0.5)")
def _k19(d, s):
    copy_run(d, s, finished=False)
    return train_plan(d, s, extra=["--set", "training.lr=0.5"], names=("run", "configuration"))


@case("K20", "checkpoints", "rerunning a finished run with another config")
def _k20(d, s):
    run = copy_run(d, s)
    before = unchanged([run / "metrics.json", run / "model.safetensors"])()
    return train_plan(d, s, extra=["--set", "training.hop=20"], names=("run", "configuration"),
                      verify=lambda res: kept(before, "the finished run"))


@case("K21", "checkpoints", "rerunning a finished run with the same config (must not redo or lose it)")
def _k21(d, s):
    run = copy_run(d, s)
    before = unchanged([run / "metrics.json", run / "model.safetensors"])()
    return train_plan(d, s, expect="ok", verify=lambda res: kept(before, "the finished run"))


@case("K22", "checkpoints", "a finished run whose metrics.json is truncated, trained again (then: delete it, rerun)",
      cost=15)
def _k22(d, s):
    run = copy_run(d, s)
    m = run / "metrics.json"
    m.write_text(m.read_text()[:40])
    frames = ds_frames(s.ds, val_names(s))
    p = train_plan(d, s, expect="either", names=("metrics.json",),
                   verify=only_if_ok(lambda res: check_run(run, frames=frames)))
    p.between = lambda: m.unlink(missing_ok=True)  # what a user does with a damaged file (and what a fix may say)
    p.resume = train_plan(d, s, expect="ok", verify=lambda res: check_run(run, frames=frames) if res.rc == 0
                          else Check())
    return p


@case("K23", "checkpoints", "evaluate on a folder that is no run")
def _k23(d, s):
    (d / "notarun").mkdir()
    (d / "notarun" / "notes.txt").write_text("hello")
    return Plan(["evaluate", "notarun", "-q"], "error", ("notarun",), (d / "notarun",))


@case("K24", "checkpoints", "evaluate on a folder that does not exist")
def _k24(d, s):
    return Plan(["evaluate", "missing_run", "-q"], "error", ("missing_run",))


def fake_protocol(d: Path, s: Shared) -> Path:
    link_shared(d, s)
    cv = d / "cv"
    for k in (0, 1):
        shutil.copytree(s.run, cv / f"fold{k}" / "seed0")
    return cv


@case("K25", "checkpoints", "evaluate --postprocess on a fold ensemble")
def _k25(d, s):
    fake_protocol(d, s)
    return Plan(["evaluate", "cv", "--postprocess", "-q"], "error", ("cv", "ensemble"), (d / "cv",))


@case("K26", "checkpoints", "evaluate a fold ensemble (two fold runs)", cost=10)
def _k26(d, s):
    fake_protocol(d, s)
    frames = ds_frames(s.ds, val_names(s))
    return Plan(["evaluate", "cv", "--split", "validation", "-q"], "ok", (), (d / "cv",),
                verify=only_if_ok(lambda res: check_eval(d / "cv" / "ensemble" / "validation", frames)))


@case("K27", "checkpoints", "evaluate a finished run twice (the first evaluation is kept)", cost=15)
def _k27(d, s):
    run = copy_run(d, s)
    frames = ds_frames(s.ds, val_names(s))
    before = unchanged([run / "metrics.json", run / "model.safetensors"])()

    def verify_second(res):
        c = check_eval(run / "eval" / "validation", frames) if res.rc == 0 else Check()
        if not (run / "eval" / "validation" / "metrics.previous.json").is_file():
            c.lost.append("the first evaluation's metrics.json is gone")
        return c.add(kept(before, "the run"))
    then = Plan(["evaluate", "run", "-q"], "ok", (), (run,), verify=verify_second)
    return Plan(["evaluate", "run", "-q"], "ok", (), (run,),
                verify=only_if_ok(lambda res: check_eval(run / "eval" / "validation", frames)), then=then)


@case("K28", "checkpoints", "evaluate a run whose config.yaml is corrupt")
def _k28(d, s):
    run = copy_run(d, s)
    (run / "config.yaml").write_text("data: [unclosed\n  model:: ::\n")
    return Plan(["evaluate", "run", "-q"], "error", ("config.yaml",), (run,))


@case("K29", "checkpoints", "evaluate --root pointing to a folder that does not exist")
def _k29(d, s):
    copy_run(d, s)
    return Plan(["evaluate", "run", "--root", "moved_away", "-q"], "error", ("moved_away",), (d / "run",))


@case("K30", "checkpoints", "a planted pickle as model.safetensors of a finished run, evaluated")
def _k30(d, s):
    run = copy_run(d, s)
    marker = d / "PWNED"
    plant_pickle(run / "model.safetensors", marker)
    p = Plan(["evaluate", "run", "-q"], "error", ("model.safetensors",), (run,))
    p.marker = marker
    return p


def _interrupted_train(d: Path, s: Shared, sig: int) -> Plan:
    link_shared(d, s)
    (d / "three.yaml").write_text(TINY_YAML.replace("max_epochs: 1", "max_epochs: 3"))
    run = d / "run"
    frames = ds_frames(s.ds, val_names(s))

    def verify(res):
        c = check_run(run, frames=frames)
        csvp = run / "metrics_per_epoch.csv"
        if csvp.is_file():
            _, rows = read_csv_rows(csvp)
            if len(rows) < 3:
                c.wrong.append(f"metrics_per_epoch.csv has {len(rows)} epochs after the resume, expected 3")
        return c
    p = train_plan(d, s, "three.yaml", expect="either", names=("interrupted",),
                   interrupt=(sig, lambda: (run / "checkpoints" / "last.ckpt").is_file(), 60))
    p.resume = train_plan(d, s, "three.yaml", expect="ok", verify=verify)
    p.timeout = 200
    return p


@case("K31", "checkpoints", "train interrupted with Ctrl-C after its first epoch, then resumed", cost=30)
def _k31(d, s):
    return _interrupted_train(d, s, signal.SIGINT)


@case("K32", "checkpoints", "train killed (SIGKILL) after its first epoch, then resumed", cost=30)
def _k32(d, s):
    return _interrupted_train(d, s, signal.SIGKILL)


# =================================================================================================== store / extract


def store_case_ds(d: Path, s: Shared) -> tuple[Path, Path, str, dict[str, int]]:
    """A private copy of the dataset with its features; returns (ds, store, the face_hog folder name, frames)."""
    ds = copy_ds(d, s)
    store = ds / "features"
    face = next(p.name for p in store.iterdir() if p.name.startswith("face_hog"))
    return ds, store, face, ds_frames(ds)


def _first_rec(store: Path, eid: str) -> str:
    return sorted(p.stem for p in (store / eid).glob("*.npy"))[0]


def _extract_check(d: Path, store: Path, frames: dict[str, int]) -> Callable[[Result], Check]:
    return only_if_ok(lambda res: check_store(store, frames))


@case("S01", "store", "a feature .npy replaced by one with NaN (same shape), then extract", cost=10)
def _s01(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    rec = _first_rec(store, face)
    arr = np.load(store / face / f"{rec}.npy")
    arr[5, 3] = np.nan
    np.save(store / face / f"{rec}.npy", arr)
    return Plan(["extract", "ds", "-q"], "either", (rec,), (store,), verify=_extract_check(d, store, frames),
                label="exit 0 only with finite features")


@case("S02", "store", "a feature .npy with NaN, then evaluate the run on that store", cost=10)
def _s02(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    shutil.copytree(s.run, d / "run")
    shutil.copy(s.tiny, d / "tiny.yaml")
    rec = val_names(s)[0]
    arr = np.load(store / face / f"{rec}.npy")
    arr[:, 0] = np.nan
    np.save(store / face / f"{rec}.npy", arr)
    vf = {n: frames[n] for n in val_names(s)}
    return Plan(["evaluate", "run", "-q"], "either", (rec,), (d / "run", store),
                verify=only_if_ok(lambda res: check_eval(d / "run" / "eval" / "validation", vf)))


@case("S03", "store", "a truncated feature .npy, then extract", cost=10)
def _s03(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    rec = _first_rec(store, face)
    p = store / face / f"{rec}.npy"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return Plan(["extract", "ds", "-q"], "either", (rec,), (store,), verify=_extract_check(d, store, frames))


@case("S04", "store", "a feature .npy transposed (same bytes, other shape), then evaluate", cost=10)
def _s04(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    shutil.copytree(s.run, d / "run")
    rec = val_names(s)[0]
    p = store / face / f"{rec}.npy"
    np.save(p, np.ascontiguousarray(np.load(p).T))
    vf = {n: frames[n] for n in val_names(s)}
    return Plan(["evaluate", "run", "-q"], "either", (rec,), (d / "run", store),
                verify=only_if_ok(lambda res: check_eval(d / "run" / "eval" / "validation", vf)))


@case("S05", "store", "a feature .npy of another shape (10 rows), then extract", cost=10)
def _s05(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    rec = _first_rec(store, face)
    np.save(store / face / f"{rec}.npy", np.zeros((10, 640), np.float32))
    return Plan(["extract", "ds", "-q"], "either", (rec,), (store,), verify=_extract_check(d, store, frames))


@case("S06", "store", "the source video touched (new mtime, same content), then extract", cost=10)
def _s06(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    v = sorted((ds / "videos").glob("*.mp4"))[0]
    os.utime(v, ns=(time.time_ns(), time.time_ns()))

    def verify(res):
        c = check_store(store, frames)
        m = re.search(r"extract: (\d+) done", res.out)
        c.note = f"{'redone' if m and int(m.group(1)) else 'kept'} (same content: both are right); " + c.note
        return c
    return Plan(["extract", "ds"], "ok", (), (store,), verify=only_if_ok(verify), label="the store stays right")


@case("S07", "store", "the source video replaced by another (shorter) one, then extract", cost=10)
def _s07(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    test_video = next(v for v in sorted((ds / "videos").glob("*.mp4"))
                      if not (ds / ANN / "Train_Set" / f"{v.stem}.txt").exists()
                      and not (ds / ANN / "Validation_Set" / f"{v.stem}.txt").exists())
    shutil.rmtree(ds / "cropped_aligned" / test_video.stem, ignore_errors=True)
    write_video(test_video, 40, size=(64, 48))
    frames[test_video.stem] = len(decoded_times(test_video))
    return Plan(["extract", "ds", "-q"], "ok", (), (store,), verify=_extract_check(d, store, frames),
                label="features follow the new media")


def pad_to_size(path: Path, size: int) -> bool:
    """Append an mp4 ``free`` box so that ``path`` has exactly ``size`` bytes (False when it is already too big)."""
    missing = size - path.stat().st_size
    if missing < 8:
        return missing == 0
    with open(path, "ab") as fh:
        fh.write(struct.pack(">I", missing) + b"free" + bytes(missing - 8))
    return True


@case("S17", "store", "the source video replaced by another clip of the same byte size and frame count, then extract",
      cost=20)
def _s17(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    test_video = next(v for v in sorted((ds / "videos").glob("*.mp4"))
                      if not (ds / ANN / "Train_Set" / f"{v.stem}.txt").exists()
                      and not (ds / ANN / "Validation_Set" / f"{v.stem}.txt").exists())
    size, n = test_video.stat().st_size, frames[test_video.stem]
    write_video(test_video, n, fps=30, size=(256, 192), static=True, audio_bit_rate=16000)  # other picture and
    if not pad_to_size(test_video, size):  # sound, same frames; padded to the original's size with a free box
        return Plan([], skip="skipped: the replacement clip came out larger than the original")
    assert len(decoded_times(test_video)) == n

    def verify(res):
        c = check_store(store, frames)
        fresh = run_cli(["extract", "ds", "--out", "fresh", "-q"], d, s.env, 300)  # what the new media give
        if fresh.rc != 0:
            c.wrong.append(f"a fresh extraction failed: {fresh.out[-200:]}")
            return c
        for eid in store_entries(store):
            old = np.load(store / eid / f"{test_video.stem}.npy")
            new = np.load(d / "fresh" / eid / f"{test_video.stem}.npy")
            if old.shape != new.shape or not np.allclose(old, new, atol=1e-5):
                c.wrong.append(f"{eid}/{test_video.stem}: the store keeps the features of the replaced video "
                               "(a fresh extraction of the new one differs)")
        c.note = "store compared with a fresh extraction"
        return c
    return Plan(["extract", "ds", "-q"], "ok", (), (store, d / "fresh"), verify=only_if_ok(verify),
                label="features follow the new media")


def _interrupted_extract(d: Path, s: Shared, sig: int) -> Plan:
    ds = copy_ds(d, s, features=False)
    store = ds / "features"
    frames = ds_frames(ds)

    def started() -> bool:
        return store.is_dir() and any(store.glob("*/*.npy"))
    p = Plan(["extract", "ds", "--workers", "1", "-q"], "either", ("interrupted",), (store,),
             interrupt=(sig, started, 40), timeout=120)
    p.resume = Plan(["extract", "ds", "--workers", "1", "-q"], "ok", (), (store,),
                    verify=lambda res: check_store(store, frames) if res.rc == 0 else Check(), timeout=120)
    return p


@case("S08", "store", "extract interrupted with Ctrl-C after its first file, then resumed", cost=25)
def _s08(d, s):
    return _interrupted_extract(d, s, signal.SIGINT)


@case("S09", "store", "extract killed (SIGKILL) after its first file, then resumed", cost=25)
def _s09(d, s):
    return _interrupted_extract(d, s, signal.SIGKILL)


@case("S10", "store", "predict: two inputs with the same stem from different folders, one by one")
def _s10(d, s):
    write_video(d / "a" / "clip.mp4", 20)
    write_video(d / "b" / "clip.mp4", 24)

    def verify(res):
        c = Check()
        if (d / "out").exists() and any((d / "out").iterdir()):
            c.wrong.append("outputs were written although the inputs clash")
        c.note = "refused before any output"
        return c
    return predict_plan(d, s, ["a/clip.mp4", "b/clip.mp4"], "error", ("clip",), verify=verify)


@case("S11", "store", "predict: a folder with a/clip.mp4 and b/clip.mp4 (distinct outputs)")
def _s11(d, s):
    v1 = write_video(d / "media" / "a" / "clip.mp4", 20)
    v2 = write_video(d / "media" / "b" / "clip.mp4", 24)

    def verify(res):
        c = Check()
        got = sorted(unquote(p.stem) for p in (d / "out").glob("*.csv"))
        if got != ["a/clip", "b/clip"]:
            c.wrong.append(f"outputs {got}, expected a/clip and b/clip")
            return c
        for name, v in (("a/clip", v1), ("b/clip", v2)):
            f = next(p for p in (d / "out").glob("*.csv") if unquote(p.stem) == name)
            c.wrong += check_prediction_csv(f, v).wrong
        c.note = "two outputs, rows = frames"
        return c
    return predict_plan(d, s, ["media"], "ok", verify=only_if_ok(verify))


@case("S12", "store", "a corrupt status sidecar (_status/*.json), then extract", cost=10)
def _s12(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    side = sorted((store / face / "_status").glob("*.json"))[0]
    side.write_text("{\"recording\": \"x\", \"status\": ")
    return Plan(["extract", "ds", "-q"], "either", (side.stem,), (store,), verify=_extract_check(d, store, frames))


@case("S13", "store", "the store's manifest.json deleted, then extract", cost=10)
def _s13(d, s):
    ds, store, face, frames = store_case_ds(d, s)
    (store / face / "manifest.json").unlink()
    before = {p: p.read_bytes() for p in (store / face).glob("*.npy")}

    def verify(res):
        c = check_store(store, frames)
        for p in before:
            if not p.is_file():
                c.lost.append(f"{p.name} is gone")
        if not (store / face / "manifest.json").is_file():
            c.note = "manifest.json not rewritten (sidecars intact)"
        return c
    return Plan(["extract", "ds", "-q"], "ok", (), (store,), verify=only_if_ok(verify))


@case("S14", "store", "extract a folder with a garbage video beside a good one", cost=8)
def _s14(d, s):
    v = write_video(d / "media" / "good.mp4", 20)
    garbage(d / "media" / "bad.mp4")
    n = len(decoded_times(v))

    def verify(res):
        c = check_store(d / "store", {"good": n})
        return c
    return Plan(["extract", "media", "--out", "store", "-q"], "error", ("bad",), (d / "store",), verify=verify,
                label="the good video is still extracted")


@case("S15", "store", "extract run twice (the second run must skip and keep the files)", cost=12)
def _s15(d, s):
    write_video(d / "media" / "a.mp4", 20)
    v = d / "media" / "a.mp4"
    n = len(decoded_times(v))
    snap: dict = {}

    def remember():
        snap.update({p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (d / "store").glob("*/*.npy")})

    def verify(res):
        c = check_store(d / "store", {"a": n})
        for p, (mt, _data) in snap.items():
            if not p.is_file():
                c.lost.append(f"{p.name} is gone")
            elif p.stat().st_mtime_ns != mt:
                c.wrong.append(f"{p.name} was recomputed although done")
        if "2 skipped" not in res.out:
            c.wrong.append(f"the second run did not report 2 skipped ({res.out.strip()[:60]!r})")
        c.note = "second run skipped, files kept"
        return c
    then = Plan(["extract", "media", "--out", "store"], "ok", (), (d / "store",), verify=only_if_ok(verify))
    return Plan(["extract", "media", "--out", "store", "-q"], "ok", (), (d / "store",),
                verify=only_if_ok(lambda res: check_store(d / "store", {"a": n})), then=then, between=remember)


@case("S16", "store", "extract --force on a finished store", cost=12)
def _s16(d, s):
    write_video(d / "media" / "a.mp4", 20)
    n = len(decoded_times(d / "media" / "a.mp4"))
    then = Plan(["extract", "media", "--out", "store", "--force", "-q"], "ok", (), (d / "store",),
                verify=only_if_ok(lambda res: check_store(d / "store", {"a": n})))
    return Plan(["extract", "media", "--out", "store", "-q"], "ok", (), (d / "store",), then=then)


# =================================================================================================== submit


def submit_inputs(d: Path, s: Shared) -> tuple[Path, Path, list[str], list[tuple[float, float]]]:
    """``d/preds`` (the shared run's validation CSVs), ``d/sample.txt`` and a valid ``d/sub.txt``."""
    preds = d / "preds"
    shutil.copytree(s.run / "predictions" / "validation", preds)
    locs, values = [], []
    for f in sorted(preds.glob("*.csv")):
        header, rows = read_csv_rows(f)
        iv, ia = header.index("valence"), header.index("arousal")
        for i, r in enumerate(rows):
            locs.append(f"{f.stem}/{i + 1:05d}.jpg")
            values.append((float(r[iv]), float(r[ia])))
    (d / "sample.txt").write_text("image_location,valence,arousal\n" + "".join(f"{x},,\n" for x in locs))
    write_submission(d / "sub.txt", locs, values)
    return preds, d / "sample.txt", locs, values


def write_submission(path: Path, locs, values, header: str = "image_location,valence,arousal") -> None:
    path.write_text(header + "\n" + "".join(f"{loc},{v:.6f},{a:.6f}\n" for loc, (v, a) in zip(locs, values)))


@case("U01", "submit", "write a submission from a run's predictions (valid)")
def _u01(d, s):
    preds, sample, locs, values = submit_inputs(d, s)

    def verify(res):
        c = Check()
        out = d / "out" / "submission.txt"
        if not out.is_file():
            return Check(wrong=["no submission written"])
        header, rows = read_csv_rows(out)
        if header != ["image_location", "valence", "arousal"]:
            c.wrong.append(f"header {header}")
        if [r[0] for r in rows] != locs:
            c.wrong.append("rows are not in the sample file's order")
        got = np.array([[float(r[1]), float(r[2])] for r in rows])
        if got.shape != (len(values), 2) or not np.allclose(got, np.clip(np.array(values), -1, 1), atol=1e-5):
            c.wrong.append("values differ from the run's predictions")
        c.note = f"{len(rows)} rows in sample order, values = predictions"
        return c
    return Plan(["submit", "abaw", "--predictions", "preds", "--sample-file", "sample.txt", "--out",
                 "out/submission.txt"], "ok", (), (d / "out",), verify=only_if_ok(verify))


def _check_case(cid, what, damage: Callable[[list[str], list], tuple[list[str], list, str]], names):
    @case(cid, "submit", what)
    def build(d, s):
        preds, sample, locs, values = submit_inputs(d, s)
        locs2, values2, header = damage(list(locs), list(values))
        write_submission(d / "sub.txt", locs2, values2, header)
        nm = tuple(n(locs) if callable(n) else n for n in names)
        return Plan(["submit", "abaw", "--check", "sub.txt", "--sample-file", "sample.txt"], "error", nm)
    return build


_H = "image_location,valence,arousal"
_check_case("U02", "submit --check: a missing row", lambda l, v: (l[:7] + l[8:], v[:7] + v[8:], _H),
            (lambda locs: locs[7],))
_check_case("U03", "submit --check: an extra row", lambda l, v: (l + [l[-1]], v + [v[-1]], _H), ("extra row",))
_check_case("U04", "submit --check: two rows swapped",
            lambda l, v: (l[:3] + [l[4], l[3]] + l[5:], v[:3] + [v[4], v[3]] + v[5:], _H), (lambda locs: locs[3],))
_check_case("U05", "submit --check: a NaN value", lambda l, v: (l, v[:9] + [(math.nan, 0.1)] + v[10:], _H),
            ("nan",))
_check_case("U06", "submit --check: a wrong header", lambda l, v: (l, v, "frame,val,aro"), ("header",))
_check_case("U07", "submit --check: a value outside [-1, 1]", lambda l, v: (l, v[:2] + [(1.7, 0.0)] + v[3:], _H),
            ("1.7", "outside"))


@case("U08", "submit", "write a submission from a predictions CSV holding NaN")
def _u08(d, s):
    preds, sample, locs, values = submit_inputs(d, s)
    f = sorted(preds.glob("*.csv"))[0]
    lines = f.read_text().splitlines()
    cells = lines[6].split(",")
    cells[2] = "nan"
    lines[6] = ",".join(cells)
    f.write_text("\n".join(lines) + "\n")
    return Plan(["submit", "abaw", "--predictions", "preds", "--sample-file", "sample.txt", "--out", "out/sub.txt"],
                "error", (f.name,), (d / "out",),
                verify=lambda res: Check(wrong=["a submission was written"]) if (d / "out" / "sub.txt").exists()
                else Check(note="nothing written"))


@case("U09", "submit", "write a submission whose sample file lists a video without predictions")
def _u09(d, s):
    preds, sample, locs, values = submit_inputs(d, s)
    with open(sample, "a") as fh:
        fh.write("unseen_video/00001.jpg,,\nunseen_video/00002.jpg,,\n")
    return Plan(["submit", "abaw", "--predictions", "preds", "--sample-file", "sample.txt", "--out", "out/sub.txt"],
                "error", ("unseen_video",), (d / "out",))


@case("U10", "submit", "a sample file with a wrong header")
def _u10(d, s):
    preds, sample, locs, values = submit_inputs(d, s)
    sample.write_text(sample.read_text().replace("image_location", "frame", 1))
    return Plan(["submit", "abaw", "--predictions", "preds", "--sample-file", "sample.txt", "--out", "out/sub.txt"],
                "error", ("sample.txt",), (d / "out",))


# =================================================================================================== driver


def setup_shared(work: Path, env: dict) -> Shared:
    root = work / "shared"
    root.mkdir(parents=True, exist_ok=True)
    home = root / "home"
    home.mkdir(exist_ok=True)
    (root / "tiny.yaml").write_text(TINY_YAML)
    video = root / "clip30.mp4"
    if not video.is_file():
        write_video(video, 30)
    if not (root / "ds" / "annotations").is_dir():
        r = run_cli(["synth", "--out", "ds", "-q", *SYNTH_ARGS], root, env, 300)
        if r.rc != 0:
            raise SystemExit(f"set-up: avaffect synth failed:\n{r.out}\n{r.err}")
    if not (root / "run" / "metrics.json").is_file():
        r = run_cli(["train", "ds", "--config", "tiny.yaml", "--out", "run", "-q"], root, env, 600)
        if r.rc != 0:
            raise SystemExit(f"set-up: avaffect train failed:\n{r.out}\n{r.err}")
        r = run_cli(["extract", "ds", "-q"], root, env, 600)  # the test recording too: a complete store
        if r.rc != 0:
            raise SystemExit(f"set-up: avaffect extract failed:\n{r.out}\n{r.err}")
    python = REPO / ".venv" / "bin" / "python"
    cuda = subprocess.run([str(python) if python.is_file() else sys.executable, "-c",
                           "import torch; print(torch.cuda.is_available())"],
                          capture_output=True, text=True, env=env).stdout.strip() == "True"
    return Shared(work, root, root / "ds", root / "run", root / "run" / "model.safetensors", root / "tiny.yaml", home,
                  video, cuda)


def cell(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _provenance() -> str:
    """When, where and at which commit the table was made (the figures belong to their machine)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return (f"Run on {time.strftime('%Y-%m-%d')} on {platform.machine()} with {os.cpu_count()} cores (Python "
            f"{platform.python_version()}), at commit {commit}; the summary line at the end gives the counts and "
            "the wall time (not a speed figure: cases run side by side).")


def format_report(outcomes: list[Outcome], wall: float, jobs: int) -> str:
    lines = ["# Fault suite", "", _provenance(), "",
             "`python benchmarks/faults.py` — every case is one `avaffect` command on a small hostile or careless "
             "input (see the script's docstring for the rules). A case passes when no traceback is printed, nothing "
             "is written outside its output folders, no data is lost, a resume works, and the command either "
             "succeeds with a verified result or fails with a message naming the file or value and what to do.", "",
             "| id | group | tried | exit | traceback | check | result | message |",
             "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        result = "pass" if o.status == "pass" else ("skip" if o.status == "skip" else
                                                    "**FAIL**: " + "; ".join(o.problems))
        lines.append(f"| {o.case.id} | {o.case.group} | {cell(o.case.what, 90)} | {o.rc} | "
                     f"{'**yes**' if o.traceback else 'no'} | {cell(o.check, 80)} | {cell(result, 160)} | "
                     f"{cell(o.message)} |")
    lines += ["", summary_line(outcomes, wall, jobs), ""]
    return "\n".join(lines)


def summary_line(outcomes: list[Outcome], wall: float, jobs: int) -> str:
    ran = [o for o in outcomes if o.status != "skip"]
    return (f"**Summary:** {len(ran)} cases ({len(outcomes) - len(ran)} skipped), "
            f"{sum(o.status == 'pass' for o in ran)} passed, {sum(o.status == 'FAIL' for o in ran)} failed; "
            f"tracebacks {sum(o.traceback for o in ran)}, silent wrong results {sum(o.wrong for o in ran)}, "
            f"data loss {sum(o.lost for o in ran)}, resume failures {sum(o.resume_failed for o in ran)}, "
            f"outside writes {sum(o.outside for o in ran)}, unclear messages only {sum(o.unclear for o in ran)}; "
            f"wall time {wall:.0f} s with {jobs} job(s).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a new temporary folder)")
    ap.add_argument("--only", default=None, help="comma-separated groups or case ids "
                    "(media, labels, configs, checkpoints, store, submit)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "faults.md")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    ap.add_argument("--extended", action="store_true", help="also run the extended variants (about 50 more cases)")
    ap.add_argument("--keep", action="store_true", help="keep the case folders (default: kept for failures only)")
    args = ap.parse_args(argv)

    work = (args.work or Path(tempfile.mkdtemp(prefix="avaffect-faults-")) / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    print(f"work folder: {work}", flush=True)
    shared = setup_shared(work, env)
    env["AVAFFECT_HOME"] = str(shared.home)
    shared.env = env
    print(f"set-up done in {time.perf_counter() - t0:.0f} s (dataset, tiny model); running cases", flush=True)

    wanted = {w.strip() for w in args.only.split(",")} if args.only else None
    cases = [c for c in CASES if (wanted is None or c.group in wanted or c.id in wanted)
             and (args.extended or not c.extended or (wanted is not None and c.id in wanted))]
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    outcomes: dict[str, Outcome] = {}
    lock = threading.Lock()

    def one(c: CaseDef) -> None:
        o = run_case(c, shared, env)
        with lock:
            outcomes[c.id] = o
            mark = {"pass": "ok  ", "FAIL": "FAIL", "skip": "skip"}[o.status]
            print(f"[{len(outcomes):3d}/{len(cases)}] {mark} {c.id:<4} {o.seconds:5.1f}s {c.what[:70]}"
                  + (f"  — {'; '.join(o.problems)[:150]}" if o.status == "FAIL" else ""), flush=True)
        if o.status == "pass" and not args.keep:
            _rmtree(work / "cases" / c.id)

    parallel = sorted((c for c in cases if not c.serial), key=lambda c: -c.cost)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, parallel))
    for c in (c for c in cases if c.serial):
        one(c)
    wall = time.perf_counter() - t0
    ordered = [outcomes[c.id] for c in cases]
    report = format_report(ordered, wall, args.jobs)
    print()
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
