"""Broken label files and dataset layouts given to ``avaffect prepare`` (and hostile recording names to ``avaffect
extract`` / ``train``): every problem names its file with what to do, valid oddities load with the right numbers,
and no name leaves the folder it is written in."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from faultchecks import check_eval, check_run, check_store, expect_summary, only_if_ok, prepare_step
from faultkit import OK, TINY_YAML, Cases, Found, Step
from mediafiles import (
    ANN,
    aff_root,
    ann_text,
    arff,
    decoded_frames,
    manifest_root,
    recola_root,
    time_labels,
    write_jpgs,
    write_random_bytes,
    write_test_video,
    write_wav,
)

CASES = Cases("labels")


# ------------------------------------------------------------------------------------------------ Aff-Wild2


def _rows(n: int, text) -> str:
    """An annotation whose row ``i`` is ``text(i)``."""
    return ann_text(n, text)


def ann_case(cid: str, what: str, annotation, expect: str = "error", names=("a.txt",), extra=None, summary=None,
             extended: bool = False) -> None:
    """A case: ``prepare affwild2`` on a layout whose train annotation (30 frames) is ``annotation(30)``."""
    def build(d, s):
        aff_root(d, annotation(30), frames=30)
        return prepare_step(d, "affwild2", "aff", expect, names, extra, summary)
    CASES.add(cid, what, build, extended)


ann_case("L01-wrong-header", "Aff-Wild2 annotation with a wrong header (val,aro)",
         lambda n: ann_text(n).replace("valence,arousal", "val,aro"))
ann_case("L02-non-numeric", "annotation with a non-numeric cell", lambda n: _rows(n, lambda i: "0.1,abc" if i == 7
                                                                                   else "0.1,0.2"))
ann_case("L03-out-of-range", "annotation value out of range (1.5)",
         lambda n: _rows(n, lambda i: "1.5,0.2" if i == 4 else "0.1,0.2"), names=("a.txt", "1.5"))
ann_case("L04-nan", "annotation with NaN", lambda n: _rows(n, lambda i: "nan,0.2" if i == 3 else "0.1,0.2"))
ann_case("L05-inf", "annotation with inf", lambda n: _rows(n, lambda i: "0.1,inf" if i == 3 else "0.1,0.2"),
         extended=True)
ann_case("L06-minus-five", "annotation with -5 markers on 10 of 30 frames (→ unannotated)",
         lambda n: _rows(n, lambda i: "-5,-5" if i < 10 else "0.1,0.2"), OK, summary=expect_summary("train", 30, 2 / 3))
ann_case("L07-minus-five-valence-only", "-5 in the valence column only (the frame is unannotated for both)",
         lambda n: _rows(n, lambda i: "-5,0.3" if i % 3 == 0 else "0.1,0.2"), OK,
         summary=expect_summary("train", 30, 2 / 3), extended=True)
ann_case("L08-one-row-too-many", "one annotation row too many (no tolerance)", lambda n: ann_text(n + 1),
         names=("a.txt", "31"))
ann_case("L09-one-row-too-few", "one annotation row too few (no tolerance)", lambda n: ann_text(n - 1),
         names=("a.txt", "29"))
ann_case("L10-one-too-many-tolerated", "one row too many with --length-tolerance 1", lambda n: ann_text(n + 1), OK,
         extra=["--length-tolerance", "1"], summary=expect_summary("train", 30, 1.0))
ann_case("L11-one-too-few-tolerated", "one row too few with --length-tolerance 1", lambda n: ann_text(n - 1), OK,
         extra=["--length-tolerance", "1"], summary=expect_summary("train", 30, 29 / 30))
ann_case("L12-three-too-many", "three rows too many with --length-tolerance 1", lambda n: ann_text(n + 3),
         names=("a.txt", "33"), extra=["--length-tolerance", "1"], extended=True)
ann_case("L13-empty-file", "empty annotation file", lambda n: "")
ann_case("L14-header-only", "annotation with a header and no rows", lambda n: "valence,arousal\n", extended=True)
ann_case("L15-three-columns", "annotation rows with three columns", lambda n: _rows(n, lambda i: "0.1,0.2,0.3"),
         extended=True)
ann_case("L16-crlf", "Windows line endings (CRLF)", lambda n: ann_text(n).replace("\n", "\r\n"), OK,
         summary=expect_summary("train", 30, 1.0), extended=True)
ann_case("L17-byte-order-mark", "a UTF-8 byte-order mark before the header", lambda n: "\ufeff" + ann_text(n),
         "either", summary=expect_summary("train", 30, 1.0))
ann_case("L18-spaces-blank-lines", "spaces around the values and blank lines at the end",
         lambda n: _rows(n, lambda i: " 0.1 , 0.2 ") + "\n\n", OK, summary=expect_summary("train", 30, 1.0),
         extended=True)


@CASES("L19-both-splits", "the same annotation in both splits")
def l19(d, s):
    root = aff_root(d, frames=30)
    shutil.copy(root / ANN / "Train_Set" / "a.txt", root / ANN / "Validation_Set" / "a.txt")
    return prepare_step(d, "affwild2", "aff", names=("a.txt",))


@CASES("L20-crop-past-the-end", "a crops folder with a crop beyond the timeline")
def l20(d, s):
    root = aff_root(d, frames=30)
    write_jpgs(root / "cropped_aligned" / "a", list(range(30)) + [44])
    return prepare_step(d, "affwild2", "aff", names=("00045.jpg", "cropped_aligned"))


@CASES("L21-crops-for-one-only", "no crops folder for one recording (faces must be detected)")
def l21(d, s):
    root = aff_root(d, frames=30)
    write_jpgs(root / "cropped_aligned" / "b", range(30))
    return prepare_step(d, "affwild2", "aff", OK, summary=expect_summary("train", 30, 1.0))


def _left_right(root: Path) -> None:
    """Crops and annotations of x_left (train) and x_right (validation)."""
    for side, split in (("left", "Train_Set"), ("right", "Validation_Set")):
        write_jpgs(root / "cropped_aligned" / f"x_{side}", range(30))
        (root / ANN / split / f"x_{side}.txt").write_text(ann_text(30))


@CASES("L22-left-right-no-base", "_left/_right recordings without their base video")
def l22(d, s):
    _left_right(aff_root(d, frames=30))
    return prepare_step(d, "affwild2", "aff", names=("x.mp4", "x_left", "base video"))


@CASES("L23-left-right-with-base", "_left/_right recordings sharing their base video (valid)", extended=True)
def l23(d, s):
    root = aff_root(d, frames=30, b=False)
    write_test_video(root / "videos" / "x.mp4", 30)
    _left_right(root)
    return prepare_step(d, "affwild2", "aff", OK, summary=lambda rep: expect_summary("train", 60, 1.0, 2)(rep).add(
        expect_summary("validation", 30, 1.0, 1)(rep)))


@CASES("L24-no-annotations", "no annotations folder at all", extended=True)
def l24(d, s):
    write_test_video(d / "aff" / "videos" / "a.mp4", 30)
    return prepare_step(d, "affwild2", "aff", names=("annotations",))


@CASES("L25-no-validation-set", "the Validation_Set folder is missing", extended=True)
def l25(d, s):
    root = aff_root(d, frames=30, b=False)
    (root / ANN / "Validation_Set").rmdir()
    return prepare_step(d, "affwild2", "aff", names=("Validation_Set",))


@CASES("L26-no-media", "an annotation whose recording has neither video nor crops")
def l26(d, s):
    root = aff_root(d, frames=30)
    (root / ANN / "Train_Set" / "ghost.txt").write_text(ann_text(30))
    return prepare_step(d, "affwild2", "aff", names=("ghost",))


@CASES("L27-garbage-video", "a garbage video in the Aff-Wild2 layout")
def l27(d, s):
    write_random_bytes(aff_root(d, frames=30) / "videos" / "a.mp4")
    return prepare_step(d, "affwild2", "aff", names=("a.mp4",))


@CASES("L28-video-without-audio", "a video without an audio track in the Aff-Wild2 layout")
def l28(d, s):
    write_test_video(aff_root(d, frames=30) / "videos" / "a.mp4", 30, audio=False)
    return prepare_step(d, "affwild2", "aff", names=("a.mp4",))


# ------------------------------------------------------------------------------------------------ manifests


def manifest_case(cid: str, what: str, expect: str, names, rows=None, header=None, labels=None, summary=None,
                  damage=None, extended: bool = False) -> None:
    """A case: ``prepare manifest`` on clips c1 / c2 with other ``rows`` / ``header`` / ``labels`` (or a function
    of the frame count), then ``damage(root)``."""
    def build(d, s):
        root = manifest_root(d, rows, labels=labels(30) if callable(labels) else labels,
                             **({"header": header} if header else {}))
        if damage is not None:
            damage(root)
        return prepare_step(d, "manifest", "man", expect, names, summary=summary)
    CASES.add(cid, what, build, extended)


C1, C2 = "c1,videos/c1.mp4,,labels/c1.csv,train,s1", "c2,videos/c2.mp4,,labels/c2.csv,validation,s2"
manifest_case("L29-no-split-column", "manifest without its split column", "error", ("manifest.csv", "split"),
              rows=["c1,videos/c1.mp4,,labels/c1.csv,s1"], header="recording,video,audio,labels,subject")
manifest_case("L30-unknown-split", "manifest with an unknown split (holdout)", "error", ("holdout",),
              rows=[C1, "c2,videos/c2.mp4,,labels/c2.csv,holdout,s2"])
manifest_case("L31-listed-twice", "manifest listing a recording twice", "error", ("c1",),
              rows=[C1, "c1,videos/c2.mp4,,labels/c2.csv,validation,s2"])
manifest_case("L32-empty-cells", "label rows with empty cells (unannotated steps)", OK, (),
              labels=lambda n: {"c1": _rows(n, lambda i: "," if i < 6 else "0.1,0.2"), "c2": ann_text(n)},
              summary=expect_summary("train", 30, 24 / 30))
manifest_case("L33-labels-past-the-end", "time labels running 10 s past a 1.2 s video", "error",
              ("c1.csv", "c1.mp4"), labels={"c1": time_labels([i * 0.04 for i in range(300)]), "c2": ann_text(30)})
manifest_case("L34-time-backwards", "time labels that go backwards", "error", ("c1.csv",),
              labels={"c1": time_labels([0.0, 0.04, 0.08, 0.06, 0.12]), "c2": ann_text(30)})
manifest_case("L35-out-of-range", "manifest label value out of range (-3)", "error", ("c1.csv", "-3"),
              labels=lambda n: {"c1": _rows(n, lambda i: "-3,0.2" if i == 2 else "0.1,0.2"), "c2": ann_text(n)},
              extended=True)
manifest_case("L36-missing-video", "manifest video path that does not exist", "error", ("missing.mp4",),
              rows=["c1,videos/missing.mp4,,labels/c1.csv,train,s1", C2])
manifest_case("L37-missing-field", "manifest row with a missing field", "error", ("manifest.csv", "line 3"),
              rows=[C1, "c2,videos/c2.mp4,labels/c2.csv,validation,s2"])
manifest_case("L38-negative-time", "time labels with a negative time", "error", ("c1.csv",),
              labels={"c1": time_labels([-0.5, 0.0, 0.04]), "c2": ann_text(30)}, extended=True)
manifest_case("L39-empty-manifest", "manifest.csv that is empty", "error", ("manifest.csv",),
              damage=lambda root: (root / "manifest.csv").write_text(""), extended=True)


# ------------------------------------------------------------------------------------------------ hostile names


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _named_store(store: Path, name: str, n: int) -> Found:
    """The store holds ``name``'s features and timeline under its percent-encoded name, ``n`` rows."""
    found = check_store(store, {name: n})
    timelines = [unquote(p.name[: -len(".npz")]) for p in (store / "_timelines").glob("*.npz")]
    if timelines != [name]:
        found.wrong.append(f"timelines {timelines}, expected [{name!r}]")
    return found


def hostile_case(cid: str, what: str, name_of, escapes_of, extended: bool = False) -> None:
    """A case: ``extract`` a manifest whose one recording is named ``name_of(folder)``; nothing may appear at
    ``escapes_of(folder)``."""
    def build(d, s):
        name = name_of(d)
        n = decoded_frames(write_test_video(d / "man" / "videos" / "clip.mp4", 30))
        _write_rows(d / "man" / "manifest.csv", [["recording", "video", "split"], [name, "videos/clip.mp4", "test"]])
        return Step(["extract", "man", "--dataset", "manifest", "--out", "store", "-q"], OK, (), (d / "store",),
                    verify=only_if_ok(lambda ran: _named_store(d / "store", name, n)),
                    escapes=tuple(escapes_of(d)))
    CASES.add(cid, what, build, extended)


hostile_case("H01-dot-dot-name", "manifest recording named ../../x (extract)", lambda d: "../../x",
             lambda d: [d / "x.npy", d / "x.json", d / "store" / "x.npy"])
hostile_case("H02-absolute-name", "manifest recording named by an absolute path (extract)",
             lambda d: str(d / "ABS" / "x"), lambda d: [d / "ABS"], extended=True)
hostile_case("H03-slash-name", "manifest recording named a/b (extract)", lambda d: "a/b",
             lambda d: list((d / "store").glob("*/a")) if (d / "store").is_dir() else [], extended=True)
hostile_case("H04-hidden-name", "manifest recording named .hidden (extract)", lambda d: ".hidden", lambda d: [],
             extended=True)
hostile_case("H05-dot-dot-only", "manifest recording named .. (extract)", lambda d: "..", lambda d: [d / "store.npy"],
             extended=True)


@CASES("H06-hostile-train-evaluate", "train + evaluate on a manifest whose names are ../../x, /abs, a/b, .hidden",
       extended=True)
def h06(d, s):
    tag = d.name
    names = {"train": ["../../esc_tr_" + tag, str(d / "ABS" / "tr")],
             "validation": ["../../../../esc_va_" + tag, "a/b", ".hidden"]}
    rows = [["recording", "video", "labels", "split"]]
    for split, ns in names.items():
        for k, name in enumerate(ns):
            write_test_video(d / "man" / "videos" / f"{split}{k}.mp4", 40)
            (d / "man" / "labels").mkdir(parents=True, exist_ok=True)
            (d / "man" / "labels" / f"{split}{k}.csv").write_text(ann_text(40))
            rows.append([name, f"videos/{split}{k}.mp4", f"labels/{split}{k}.csv", split])
    _write_rows(d / "man" / "manifest.csv", rows)
    (d / "man.yaml").write_text(TINY_YAML + "data: {dataset: manifest}\nfeatures: {store: store}\n")
    val = {n: 40 for n in names["validation"]}
    escapes = (d / f"esc_tr_{tag}.npy", d / f"esc_tr_{tag}.json", d.parent / f"esc_va_{tag}.csv",
               d / f"esc_va_{tag}.png", d / "ABS")
    then = Step(["evaluate", "run", "-q"], OK, (), (d / "run",), escapes=escapes,
                verify=only_if_ok(lambda ran: check_eval(d / "run" / "eval" / "validation", val, named=True)))
    return Step(["train", "man", "--config", "man.yaml", "--out", "run", "-q"], OK, (), (d / "run", d / "store"),
                verify=only_if_ok(lambda ran: _named_run(d / "run", val)), escapes=escapes, then=then, timeout=240)


def _named_run(run: Path, frames: dict[str, int]) -> Found:
    """A finished run whose validation predictions are named by exactly the recordings of ``frames``."""
    found = check_run(run, frames=frames)
    got = sorted(unquote(p.stem) for p in (run / "predictions" / "validation").glob("*.csv"))
    if got != sorted(frames):
        found.wrong.append(f"prediction files name {got}, expected {sorted(frames)}")
    return found


# ------------------------------------------------------------------------------------------------ RECOLA


def _valence(root: Path) -> Path:
    return root / "ratings_gold_standard" / "valence" / "train_1.arff"


def _both(root: Path, text: str) -> None:
    for p in (root / "ratings_gold_standard").glob("*/train_1.arff"):
        p.write_text(text)


def recola_case(cid: str, what: str, expect: str, names, damage, summary=None, extended: bool = False) -> None:
    """A case: ``prepare recola`` on recordings train_1 / dev_1 after ``damage(root)``."""
    def build(d, s):
        damage(recola_root(d))
        return prepare_step(d, "recola", "recola", expect, names, summary=summary)
    CASES.add(cid, what, build, extended)


recola_case("R01-no-data-section", "RECOLA arff without its @data section", "error", ("train_1.arff",),
            lambda r: _valence(r).write_text(_valence(r).read_text().split("@data")[0]))
recola_case("R02-non-numeric", "RECOLA arff with a non-numeric GoldStandard", "error", ("train_1.arff",),
            lambda r: _valence(r).write_text(_valence(r).read_text().replace(",0.0000\n", ",high\n", 1)))
recola_case("R03-out-of-range", "RECOLA arff with a value out of range (7.5)", "error", ("train_1.arff", "7.5"),
            lambda r: _valence(r).write_text(arff("train_1", ["7.5"] + ["0.1"] * 50)), extended=True)
recola_case("R04-no-arousal", "RECOLA valence file without its arousal file", "error", ("train_1",),
            lambda r: (r / "ratings_gold_standard" / "arousal" / "train_1.arff").unlink())
recola_case("R05-lengths-differ", "RECOLA valence and arousal files of different lengths", "error",
            ("train_1.arff",), lambda r: _valence(r).write_text(arff("train_1", ["0.1"] * 40)))
recola_case("R06-time-not-increasing", "RECOLA frameTime not increasing", "error", ("train_1.arff",),
            lambda r: _valence(r).write_text(arff("train_1", ["0.1"] * 4, times=[0.0, 0.04, 0.04, 0.08])),
            extended=True)
recola_case("R07-labels-past-the-end", "RECOLA labels running 8 s past the recording", "error", ("train_1",),
            lambda r: _both(r, arff("train_1", ["0.1"] * 250)))
recola_case("R08-no-split-in-name", "RECOLA file whose name gives no split (session_7.wav)", "error",
            ("session_7",), lambda r: write_wav(r / "recordings_audio" / "session_7.wav", 1.0), extended=True)
recola_case("R09-missing-values", "RECOLA '?' missing values (unannotated steps)", OK, (),
            lambda r: _both(r, arff("train_1", ["?"] * 11 + ["0.1"] * 40)),
            summary=expect_summary("train", 51, 40 / 51), extended=True)


@pytest.mark.parametrize("case", CASES.params())
def test_labels_case(case, fault_case):
    """Each labels case, declared above."""
    fault_case(case)
