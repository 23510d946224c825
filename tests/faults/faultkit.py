"""The fault cases' machinery: each case is the real ``avaffect`` command (a subprocess) on a small hostile or
careless input, judged by the suite's rules:

- **no traceback** is printed;
- **nothing is written outside** the case's output folders: the work folder (and its parent, shallowly) is
  snapshotted before and after the case; a file created, changed or removed anywhere but the folders the case
  allows is a failure (other cases' folders are left out);
- **no silent wrong result**: exit 0 with a result its check finds wrong (NaN in a CSV or JSON, a row count that
  differs from the frames PyAV decodes, stale features kept as done, a bad input accepted);
- **no data lost**: a finished run, a feature entry or another output that must survive the case is still there;
- **resume works**: after an interruption (or the message's advice followed) the same command succeeds with a
  complete result;
- and the command either exits 0 with a verified result, or non-zero with a message that names the file or value
  at fault and says what to do.

A case is declared once, beside its checks, with ``@CASES("M01-truncated-mp4", "what is tried")`` on a function
``build(folder, shared) -> Step``; ``CASES.params()`` parametrises the group's test. What the cases check after a
command, and the steps they are made of, are in ``faultchecks``; the files they write come from ``tests/mediafiles``
(this folder is on ``sys.path`` for its tests; ``tests/`` is added here).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRACEBACK = "Traceback (most recent call last)"
ERROR, OK, EITHER = "error", "ok", "either"
GROUPS = ("media", "labels", "configs", "checkpoints", "store", "submit")
TINY_YAML = """\
model: {name: concat, params: {hidden: 8, head_hidden: 8}}
training: {window: 60, hop: 30, max_epochs: 1, accelerator: cpu}
"""
FIX_WORDS = re.compile(
    r"(—|\b(use|pass|check|fix|set|run|give|expected|delete|remove|re-?run|re-?encode|re-?download|re-?export|must|"
    r"should|try|put|choose|write|add|provide|train|convert|install|rename|fill|lower|free|download|need|needs|"
    r"one of|available|allowed|predict|either|see|shows?)\b|\bare: |`avaffect [^`]+`|\b\d+\.\.\d+\b)",
    re.IGNORECASE)
MESSAGE_START = re.compile(r"^avaffect( [\w-]+)?: (error|interrupted)")
PY_WARNING = re.compile(r"^\S+\.py:\d+: ")
# what a problem's text starts with, by kind (the summary line counts cases by kind)
KINDS = {"wrong": ("exit 0 on an input", "wrong:", "planted code RAN"), "lost": ("lost:", "removed:"),
         "resume": ("resume failed",), "outside": ("wrote outside", "a hostile name escaped"),
         "message": ("the message", "no message", "Ctrl-C ended it")}


# =================================================================================================== case model


@dataclass
class Found:
    """What a step's verification found: wrong results, lost data, and a note for the table's check column."""

    wrong: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    note: str = ""

    def add(self, other: Found) -> Found:
        """This finding with ``other``'s added (notes joined)."""
        self.wrong += other.wrong
        self.lost += other.lost
        self.note = join(self.note, other.note)
        return self


@dataclass
class Ran:
    """One finished command: exit code (None: timed out), what it printed."""

    rc: int | None
    out: str
    err: str
    timed_out: bool = False
    signalled: bool = True  # for an interrupted command: whether the signal was sent before it ended

    @property
    def exit(self) -> str:
        return "timeout" if self.timed_out else str(self.rc)

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.out or TRACEBACK in self.err


@dataclass
class Interrupt:
    """Send ``sig`` once ``when()`` holds, or after ``limit`` seconds at the latest."""

    sig: int
    when: Callable[[], bool]
    limit: float


@dataclass
class Step:
    """One ``avaffect`` command of a case and what makes it right."""

    argv: list[str]
    expect: str = ERROR  # ERROR, OK or EITHER
    names: tuple[str, ...] = ()  # a refusal's message must contain one of these (case-insensitive)
    allowed: tuple[Path, ...] = ()  # writes are fine under these
    verify: Callable[[Ran], Found] | None = None  # after the command, whatever its exit code
    timeout: float = 150.0
    interrupt: Interrupt | None = None
    resume: Step | None = None  # after the command (and ``between``): must succeed
    then: Step | None = None  # a further step, judged like this one
    between: Callable[[], None] | None = None  # run before ``resume`` / ``then``
    marker: Path | None = None  # must not exist afterwards (planted code never runs)
    escapes: tuple[Path, ...] = ()  # where an unencoded hostile name would land: must not exist afterwards
    skip: str = ""  # a reason not to run (the table says skip)

    def all_allowed(self) -> tuple[Path, ...]:
        """The folders this step, its resume and its next step may write in."""
        return self.allowed + sum((s.all_allowed() for s in (self.resume, self.then) if s is not None), ())


@dataclass
class Shared:
    """The inputs every case may read, never change (``work/shared``), and the commands' environment."""

    work: Path
    root: Path
    ds: Path  # the tiny synthetic dataset, features extracted
    run: Path  # the tiny trained run (trained in ``root`` with relative paths: ds, run)
    tiny: Path  # the config it was trained with
    video: Path  # a 30-frame 64x48 mp4 with audio
    env: dict
    cuda: bool = False

    @property
    def model(self) -> Path:
        return self.run / "model.safetensors"

    def rel(self, path: Path, folder: Path) -> str:
        """``path`` relative to a case folder."""
        return os.path.relpath(path, folder)


@dataclass
class Case:
    """One fault case: ``id`` like ``M01-truncated-mp4`` (the table shows ``M01``), its group and what it tries."""

    id: str
    group: str
    what: str
    build: Callable[[Path, Shared], Step]
    extended: bool = False

    @property
    def code(self) -> str:
        return self.id.split("-", 1)[0]


class Cases:
    """A group's cases: ``@CASES(id, what)`` declares one; ``params()`` parametrises the group's test."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.cases: list[Case] = []

    def __call__(self, cid: str, what: str, extended: bool = False):
        def deco(build: Callable[[Path, Shared], Step]):
            self.add(cid, what, build, extended)
            return build
        return deco

    def add(self, cid: str, what: str, build: Callable[[Path, Shared], Step], extended: bool = False) -> None:
        """Declare a case (for cases made by a helper, without a decorator)."""
        if any(c.code == cid.split("-", 1)[0] for c in self.cases):
            raise ValueError(f"case {cid}: its code is taken")
        self.cases.append(Case(cid, self.group, what, build, extended))

    def params(self) -> list:
        """The cases as pytest parameters, the slow ones marked ``extended``."""
        return [pytest.param(c, id=c.id, marks=[pytest.mark.extended] if c.extended else []) for c in self.cases]


@dataclass
class Record:
    """A case's row of the table."""

    case: Case
    exit: str = "-"
    traceback: bool = False
    check: str = ""
    message: str = ""
    problems: list[str] = field(default_factory=list)
    skipped: str = ""
    seconds: float = 0.0

    @property
    def result(self) -> str:
        if self.skipped:
            return "skip"
        return "pass" if not self.problems else "**FAIL**: " + "; ".join(self.problems)

    def has(self, kind: str) -> bool:
        """Whether a problem of ``kind`` (``KINDS``; ``traceback``) was found."""
        if kind == "traceback":
            return self.traceback
        texts = [p.removeprefix("step 2: ") for p in self.problems]
        if kind == "unclear":  # failed on the message alone
            return bool(texts) and all(t.startswith(KINDS["message"]) for t in texts)
        return any(t.startswith(KINDS[kind]) for t in texts)


def join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


# =================================================================================================== running


def avaffect_command() -> list[str]:
    """The installed ``avaffect`` script beside this Python (else the module)."""
    script = Path(sys.executable).with_name("avaffect")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "avaffect.cli.main"]


def run_avaffect(argv: list[str], cwd: Path, env: dict, timeout: float, interrupt: Interrupt | None = None) -> Ran:
    """``avaffect ARGV`` in ``cwd`` (no stdin); with ``interrupt``, signalled while it runs."""
    cmd = avaffect_command() + argv
    if interrupt is not None:
        return _run_interrupted(cmd, cwd, env, timeout, interrupt)
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return Ran(p.returncode, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as e:
        return Ran(None, _text(e.stdout), _text(e.stderr), timed_out=True)


def _run_interrupted(cmd: list[str], cwd: Path, env: dict, timeout: float, interrupt: Interrupt) -> Ran:
    """Run ``cmd``, send the signal once ``interrupt.when()`` holds, wait for the end (``timeout`` at most)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        # Ctrl-C's default action in the child: a shell that started pytest in the background ignores SIGINT and
        # children inherit that; Python would then install no KeyboardInterrupt handler
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe, text=True, stdin=subprocess.DEVNULL,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        sent = False
        while p.poll() is None and time.perf_counter() - t0 < timeout:
            if not sent and (interrupt.when() or time.perf_counter() - t0 > interrupt.limit):
                p.send_signal(interrupt.sig)
                sent = True
            time.sleep(0.05)
        timed_out = p.poll() is None
        if timed_out:
            p.kill()
        p.wait()
        fo.seek(0)
        fe.seek(0)
        return Ran(p.returncode, fo.read(), fe.read(), timed_out, sent)


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


def snapshot(work: Path, case_dir: Path) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of every file under ``work`` (other cases' folders left out) and of the entries
    directly in its parent; folders as ``path/``; symbolic links are not followed."""
    cases_root = work / "cases"
    out: dict[str, tuple[int, int]] = {}
    stack = [work]
    while stack:
        d = stack.pop()
        for e in _entries(d):
            if e.is_dir(follow_symlinks=False):
                if d != cases_root or Path(e.path) == case_dir:
                    out[e.path + "/"] = (0, 0)
                    stack.append(Path(e.path))
            else:
                st = e.stat(follow_symlinks=False)
                out[e.path] = (st.st_size, st.st_mtime_ns)
    for e in _entries(work.parent):
        if Path(e.path) != work:
            st = e.stat(follow_symlinks=False)
            out[e.path] = (0, 0) if e.is_dir(follow_symlinks=False) else (st.st_size, st.st_mtime_ns)
    return out


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def outside_changes(before: dict, after: dict, allowed: tuple[Path, ...]) -> tuple[list[str], list[str]]:
    """(written or changed outside ``allowed``, removed outside ``allowed``)."""
    roots = [str(Path(a).resolve()) for a in allowed]

    def inside(path: str) -> bool:
        path = path.rstrip("/")
        p = path if os.path.islink(path) else str(Path(path).resolve())
        return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)

    written = [p for p, v in after.items() if before.get(p) != v and not p.endswith("/") and not inside(p)]
    written += [p for p in after if p.endswith("/") and p not in before and not inside(p)]
    removed = [p for p in before if p not in after and not inside(p)]
    return sorted(written), sorted(removed)


def message_lines(out: str, err: str) -> list[str]:
    """The lines that carry a command's message: from ``avaffect: error:`` on, else the FAILED / error / problem
    lines of the report it printed, else the last lines of stderr (warnings left out)."""
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
            return picked + [s] + [ln.strip() for ln in olines[i + 1:] if ln.startswith("  ")]
    if picked:
        return picked
    rest = [ln for ln in elines if ln.strip() and not ln.startswith(("WARNING", "INFO", "DEBUG"))
            and not PY_WARNING.match(ln) and "warnings.warn" not in ln]
    return rest[-3:] if rest else [ln for ln in olines if ln.strip()][-2:]


# =================================================================================================== judging


@dataclass
class Verdict:
    """What a step (its resume and next step included) came to."""

    exit: str
    traceback: bool
    messages: list[str]
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def refusal_problems(step: Step, ran: Ran, text: str) -> list[str]:
    """What is wrong with a command's exit code and message, by what ``step`` expects."""
    if ran.timed_out:
        return [f"timed out after {step.timeout:.0f} s"]
    if step.interrupt is not None:
        return interrupt_problems(step, ran, text)
    if ran.rc == 0:
        return ["exit 0 on an input it should refuse"] if step.expect == ERROR else []
    problems = [f"refused a valid input (exit {ran.rc})"] if step.expect == OK else []
    if not text.strip():
        return problems + ["no message"]
    if step.names and not any(n.lower() in text.lower() for n in step.names):
        problems.append(f"the message names none of {', '.join(map(repr, step.names[:3]))}")
    if not FIX_WORDS.search(text):
        problems.append("the message does not say what to do")
    return problems


def interrupt_problems(step: Step, ran: Ran, text: str) -> list[str]:
    """An interrupted command: the signal must have been sent, and Ctrl-C must be told, not exit 0."""
    if not ran.signalled:
        return ["the command ended before it could be interrupted (the case did not test anything)"]
    if step.interrupt.sig != signal.SIGINT:
        return []
    if ran.rc == 0:
        return ["exit 0 after Ctrl-C"]
    if not any(n.lower() in text.lower() for n in step.names or ("interrupt",)):
        return [f"Ctrl-C ended it with exit {ran.rc} and no message saying it was interrupted (and whether work "
                "was kept)"]
    return []


def run_step(step: Step, folder: Path, env: dict) -> Verdict:
    """Run ``step`` in ``folder``, its resume and next step too, and judge it by the suite's rules."""
    ran = run_avaffect(step.argv, folder, env, step.timeout, step.interrupt)
    found = step.verify(ran) if step.verify else Found()
    v = Verdict(ran.exit, ran.traceback, message_lines(ran.out, ran.err))
    v.problems += ["traceback"] * ran.traceback + refusal_problems(step, ran, "\n".join(v.messages))
    v.problems += [f"wrong: {w}" for w in found.wrong]
    if step.resume is not None and not ran.timed_out:
        found.add(resume(step, folder, env, ran, v))
    v.problems += [f"lost: {x}" for x in found.lost]
    if step.marker is not None:
        v.checks.append("marker PRESENT" if step.marker.exists() else "marker absent")
        v.problems += [f"planted code RAN: {step.marker.name} exists"] * step.marker.exists()
    escaped = [str(p) for p in step.escapes if p.exists()]
    v.problems += [f"a hostile name escaped: {', '.join(escaped)}"] * bool(escaped)
    v.checks += [found.note] if found.note else []
    if ran.rc == 0 and step.resume is None:
        v.messages = [ln.strip() for ln in ran.out.splitlines() if ln.strip()][:1] or v.messages
    if step.interrupt is not None and not v.messages:
        v.messages = [f"(after the signal: exit {ran.rc}, no message)"]
    if step.then is not None and not ran.timed_out:
        if step.between and step.resume is None:
            step.between()
        follow(v, run_step(step.then, folder, env))
    return v


def resume(step: Step, folder: Path, env: dict, ran: Ran, v: Verdict) -> Found:
    """After the first command (and ``between``), ``step.resume`` must succeed; returns its finding."""
    if step.between:
        step.between()
    again = run_avaffect(step.resume.argv, folder, env, step.resume.timeout)
    found = step.resume.verify(again) if step.resume.verify else Found()
    v.exit += f"→{again.exit}"
    v.traceback |= again.traceback
    v.problems += ["traceback on resume"] * again.traceback
    failed = again.rc != 0 or bool(found.wrong or found.lost)
    if failed:
        why = join(*found.wrong, *found.lost) or join(*message_lines(again.out, again.err))[:240]
        v.problems.append(f"resume failed (exit {again.rc}): {why}")
    v.checks.append("resume FAILED" if failed else "resume ok")
    if not v.messages or ran.rc == 0:
        v.messages = [ln.strip() for ln in again.out.splitlines() if ln.strip()][:1] or message_lines(again.out,
                                                                                                    again.err)
    return Found(lost=found.lost, note=found.note)


def follow(v: Verdict, then: Verdict) -> None:
    """Fold a case's second step into the first one's verdict."""
    v.exit += f", then {then.exit}"
    v.traceback |= then.traceback
    v.problems += [f"step 2: {p}" for p in then.problems]
    v.checks += then.checks
    v.messages = v.messages or then.messages


def run_case(case: Case, shared: Shared, folder: Path) -> Record:
    """Build the case in ``folder``, run it, and judge it (outside writes included)."""
    t0 = time.perf_counter()
    step = case.build(folder, shared)
    if step.skip:
        return Record(case, message=step.skip, skipped=step.skip)
    before = snapshot(shared.work, folder)
    v = run_step(step, folder, shared.env)
    written, removed = outside_changes(before, snapshot(shared.work, folder), step.all_allowed())
    rel = [os.path.relpath(p, shared.work) for p in written + removed]
    v.problems += [f"wrote outside its folders: {', '.join(rel[:4])}"] * bool(written)
    v.problems += [f"removed: {', '.join(rel[len(written):][:4])}"] * bool(removed)
    v.checks.append("OUTSIDE WRITE" if written or removed else "no outside write")
    return Record(case, v.exit, v.traceback, join(*v.checks), v.messages[0] if v.messages else "", v.problems,
                  seconds=time.perf_counter() - t0)


# =================================================================================================== report


def cell(text: str, limit: int = 110) -> str:
    """One table cell: one line, at most ``limit`` characters, ``|`` escaped."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def format_report(records: list[Record], header: str, seconds: float) -> str:
    """The markdown page: title, ``header`` (where, when, how), the table and a summary line."""
    lines = ["# Fault suite", "", header, "",
             "| id | group | tried | exit | traceback | check | result | message |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r.case.code} | {r.case.group} | {cell(r.case.what, 90)} | {r.exit} | "
                     f"{'**yes**' if r.traceback else 'no'} | {cell(r.check, 80)} | {cell(r.result, 160)} | "
                     f"{cell(r.message)} |")
    return "\n".join(lines + ["", summary_line(records, seconds), ""])


def summary_line(records: list[Record], seconds: float) -> str:
    """Counts of the cases run, passed and failed, and of each kind of problem."""
    ran = [r for r in records if not r.skipped]

    def count(kind: str) -> int:
        return sum(r.has(kind) for r in ran)
    return (f"**Summary:** {len(ran)} cases ({len(records) - len(ran)} skipped), "
            f"{sum(not r.problems for r in ran)} passed, {sum(bool(r.problems) for r in ran)} failed; "
            f"tracebacks {count('traceback')}, silent wrong results {count('wrong')}, data loss {count('lost')}, "
            f"resume failures {count('resume')}, outside writes {count('outside')}, unclear messages only "
            f"{count('unclear')}; {seconds:.0f} s in all, one case at a time.")
