"""``avaffect prepare``: check a dataset's raw layout before anything long runs.

Every reader is run with ``on_error`` so that each recording's problem (missing annotation partner,
no crops nor video, unreadable media, annotation length vs video frames, crops beyond the timeline,
a recording in two splits, ...) is collected instead of stopping at the first. A few cross-recording
checks are added on top (audio source of each recording, subjects shared between train and
validation). The result lists every problem and summarises the recordings that load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from avaffect.data.affwild2 import base_video_name
from avaffect.data.datasets import get_dataset, load_dataset
from avaffect.data.layout import CROPS_DIR, SPLITS
from avaffect.data.recording import Recording
from avaffect.errors import DataError, MediaError
from avaffect.media import probe


@dataclass
class Problem:
    severity: str  # "error" or "warning"
    path: Path | None
    message: str

    def format(self) -> str:
        return f"{self.severity:<7} {self.message}"


@dataclass
class SplitSummary:
    recordings: int = 0
    frames: int = 0
    annotated: int = 0
    faces: int = 0
    seconds: float = 0.0

    def add(self, rec: Recording) -> None:
        self.recordings += 1
        self.frames += rec.num_steps
        self.annotated += int(rec.label_mask.sum())
        self.faces += int(rec.face_mask.sum())
        if rec.num_steps:
            step = 1.0 / rec.fps if rec.fps else 0.0
            self.seconds += float(rec.times[-1] - rec.times[0]) + step

    @property
    def annotated_fraction(self) -> float:
        return self.annotated / self.frames if self.frames else 0.0

    @property
    def face_fraction(self) -> float:
        return self.faces / self.frames if self.frames else 0.0


@dataclass
class PrepareReport:
    dataset: str
    root: Path
    recordings: list[Recording] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, path: Path | None, message: str) -> None:
        self.problems.append(Problem("error", path, message))

    def warning(self, path: Path | None, message: str) -> None:
        self.problems.append(Problem("warning", path, message))

    def summary(self) -> dict[str, SplitSummary]:
        """Per split (in train, validation, test order, only those present) and ``total``."""
        out: dict[str, SplitSummary] = {}
        total = SplitSummary()
        for split in SPLITS + tuple(sorted({r.split for r in self.recordings} - set(SPLITS))):
            recs = [r for r in self.recordings if r.split == split]
            if not recs:
                continue
            s = out[split] = SplitSummary()
            for r in recs:
                s.add(r)
                total.add(r)
        out["total"] = total
        return out

    def format(self, max_problems: int = 100) -> str:
        lines = [f"{self.dataset} dataset at {self.root}"]
        if self.problems:
            base = self.root if self.root.is_dir() else self.root.parent
            lines.append(f"problems ({len(self.errors)} error(s), {len(self.warnings)} warning(s); paths relative "
                         f"to {base}):")
            ordered = self.errors + self.warnings
            lines += ["  " + p.format().replace(f"{base}{os.sep}", "") for p in ordered[:max_problems]]
            if len(ordered) > max_problems:
                lines.append(f"  ... and {len(ordered) - max_problems} more")
        lines.append(f"{'split':<11} {'recordings':>10} {'frames':>9} {'duration':>9} {'annotated':>9} {'face':>6}")
        for split, s in self.summary().items():
            sec = int(round(s.seconds))
            duration = f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}"
            lines.append(f"{split:<11} {s.recordings:>10} {s.frames:>9} {duration:>9} "
                         f"{s.annotated_fraction:>9.1%} {s.face_fraction:>6.1%}")
        if self.ok:
            lines.append(f"ready: {len(self.recordings)} recording(s) load without error")
        else:
            lines.append(f"{len(self.errors)} error(s): fix them before extracting features or training")
        return "\n".join(lines)


def prepare_dataset(dataset: str, root: str | Path, length_tolerance: int = 0,
                    check_media: bool = True) -> PrepareReport:
    """Check the raw layout of ``dataset`` under ``root`` and collect every problem (never raises a
    DataError: a problem that stops the whole reader, e.g. a missing annotation folder, is one error)."""
    reader = get_dataset(dataset)
    root = Path(root)
    report = PrepareReport(dataset, root)

    def on_error(err: DataError) -> None:
        report.error(err.path, str(err))

    try:
        if not root.exists():
            fix = f"run `avaffect synth --out {root}` to write it" if dataset == "synthetic" else "check the path"
            raise DataError(root, "does not exist", fix)
        report.recordings = load_dataset(reader.name, root, length_tolerance, check_media=check_media,
                                         on_error=on_error)
    except DataError as err:
        on_error(err)
        return report
    _check_audio(report, check_media)
    _check_recordings(report)
    return report


def _where(path: Path | None, text: str) -> str:
    return f"{path}: {text}" if path is not None else text


def _check_audio(report: PrepareReport, check_media: bool) -> None:
    """Every recording needs an audio source; ``_left`` / ``_right`` take their base video's."""
    affwild2_layout = get_dataset(report.dataset).affwild2_layout
    silent: dict[Path, list[str]] = {}  # audio source without an audio stream → its recordings
    probed: dict[Path, bool] = {}
    for rec in report.recordings:
        where = rec.annotation_path or rec.crops_dir or rec.video_path
        if rec.audio_path is None:
            base = base_video_name(rec.name) if affwild2_layout else rec.name
            if base != rec.name:
                report.error(where, _where(where, f"no audio for {rec.name}: the base video {base}.mp4 (shared "
                                           f"by {base}_left / {base}_right) is missing — put it in one of the "
                                           "video folders"))
            else:
                report.error(where, _where(where, f"no audio for {rec.name}: no video or audio file found"))
            continue
        if not check_media or not affwild2_layout:
            continue  # the RECOLA and manifest readers check the audio stream themselves
        if rec.audio_path not in probed:
            try:
                probed[rec.audio_path] = probe(rec.audio_path).has_audio
            except MediaError as err:
                report.error(rec.audio_path, f"{err} (the audio of {rec.name})")
                probed[rec.audio_path] = True  # reported once
                continue
        if not probed[rec.audio_path]:
            silent.setdefault(rec.audio_path, []).append(rec.name)
    for path, names in silent.items():
        report.error(path, _where(path, f"has no audio stream (the audio of {', '.join(names)}) — provide a "
                                  "video with its audio track"))


def _check_recordings(report: PrepareReport) -> None:
    subjects: dict[str, set[str]] = {}
    for rec in report.recordings:
        if rec.num_steps == 0:
            where = rec.annotation_path or rec.video_path
            report.error(where, _where(where, f"recording {rec.name} has no frames"))
            continue
        if rec.split != "test" and not rec.has_labels:
            report.warning(rec.annotation_path, _where(rec.annotation_path, f"{rec.split} recording {rec.name} "
                                                       "has no annotated frame"))
        if rec.crops_dir is None and get_dataset(report.dataset).affwild2_layout:
            report.warning(rec.video_path, _where(rec.video_path, f"no face crops for {rec.name} (expected "
                                                  f"{CROPS_DIR}/{rec.name}/): faces will have to be detected"))
        elif rec.crops_dir is not None and not rec.face_mask.any():
            report.warning(rec.crops_dir, _where(rec.crops_dir, "the crops folder holds no face crop"))
        if rec.subject and rec.split in SPLITS[:2]:
            subjects.setdefault(rec.subject, set()).add(rec.split)
    shared = sorted(s for s, splits in subjects.items() if len(splits) > 1)
    if shared:
        more = f" (+{len(shared) - 5} more)" if len(shared) > 5 else ""
        report.warning(None, f"{len(shared)} subject(s) in both train and validation (the split is not "
                       f"subject-independent): {', '.join(shared[:5])}{more}")


def summary_table(report: PrepareReport) -> dict[str, dict[str, float]]:
    """The summary as plain numbers (for JSON)."""
    return {k: {"recordings": s.recordings, "frames": s.frames, "hours": s.seconds / 3600,
                "annotated_fraction": s.annotated_fraction, "face_fraction": s.face_fraction}
            for k, s in report.summary().items()}


__all__ = ["PrepareReport", "Problem", "SplitSummary", "prepare_dataset", "summary_table"]
