"""A damaged feature store, stale sources and interrupted extraction: redone or refused, never silently used."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from faultchecks import (
    check_eval,
    check_prediction_csv,
    check_store,
    copy_ds,
    ds_frames,
    only_if_ok,
    predict_step,
    store_entries,
    val_names,
)
from faultkit import EITHER, OK, Cases, Found, Interrupt, Step, run_avaffect
from mediafiles import ANN, decoded_frames, pad_to_size, write_random_bytes, write_test_video

from avaffect.errors import DataError
from avaffect.features.store import FeatureStore

CASES = Cases("store")


# ------------------------------------------------------------------------------------------------ a copied store


def store_copy(d: Path, s) -> tuple[Path, Path, dict[str, int]]:
    """A private copy of the shared dataset with its features: (store, the face_hog folder, frames)."""
    ds = copy_ds(d, s)
    store = ds / "features"
    return store, next(p for p in store.iterdir() if p.name.startswith("face_hog")), ds_frames(ds)


def extract_again(d: Path, store: Path, frames: dict[str, int], expect: str = EITHER, names=(), verify=None) -> Step:
    """``extract ds`` over the damaged store: a success must leave it complete and right."""
    return Step(["extract", "ds", "-q"], expect, names, (store,),
                verify=only_if_ok(verify or (lambda ran: check_store(store, frames))))


def first_npy(face: Path) -> Path:
    return sorted(face.glob("*.npy"))[0]


@CASES("S01-nan-feature-extract", "a feature .npy replaced by one with NaN (same shape), then extract")
def s01(d, s):
    store, face, frames = store_copy(d, s)
    npy = first_npy(face)
    arr = np.load(npy)
    arr[5, 3] = np.nan
    np.save(npy, arr)
    return extract_again(d, store, frames, names=(npy.stem,))


def evaluate_damaged(d: Path, s, damage) -> Step:
    """``evaluate`` a copy of the shared run on a store where ``damage(npy)`` changed a validation recording's
    face features: a success must give finite results for every recording."""
    store, face, frames = store_copy(d, s)
    shutil.copytree(s.run, d / "run")
    rec = val_names(s)[0]
    damage(face / f"{rec}.npy")
    val = {n: frames[n] for n in val_names(s)}
    return Step(["evaluate", "run", "-q"], EITHER, (rec,), (d / "run", store),
                verify=only_if_ok(lambda ran: check_eval(d / "run" / "eval" / "validation", val)))


def _nan_column(npy: Path) -> None:
    arr = np.load(npy)
    arr[:, 0] = np.nan
    np.save(npy, arr)


CASES.add("S02-nan-feature-evaluate", "a feature .npy with NaN, then evaluate the run on that store",
          lambda d, s: evaluate_damaged(d, s, _nan_column), extended=True)
CASES.add("S04-transposed-feature", "a feature .npy transposed (same bytes, other shape), then evaluate",
          lambda d, s: evaluate_damaged(d, s, lambda npy: np.save(npy, np.ascontiguousarray(np.load(npy).T))),
          extended=True)


@CASES("S03-truncated-feature", "a truncated feature .npy, then extract")
def s03(d, s):
    store, face, frames = store_copy(d, s)
    npy = first_npy(face)
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    return extract_again(d, store, frames, names=(npy.stem,))


@CASES("S05-feature-other-shape", "a feature .npy of another shape (10 rows), then extract", extended=True)
def s05(d, s):
    store, face, frames = store_copy(d, s)
    npy = first_npy(face)
    np.save(npy, np.zeros((10, 640), np.float32))
    return extract_again(d, store, frames, names=(npy.stem,))


@CASES("S06-touched-source", "the source video touched (new mtime, same content), then extract", extended=True)
def s06(d, s):
    store, face, frames = store_copy(d, s)
    os.utime(sorted((d / "ds" / "videos").glob("*.mp4"))[0], ns=(time.time_ns(), time.time_ns()))

    def verify(ran):
        found = check_store(store, frames)
        m = re.search(r"extract: (\d+) done", ran.out)
        found.note = f"{'redone' if m and int(m.group(1)) else 'kept'} (same content: both are right); " + found.note
        return found
    return Step(["extract", "ds"], OK, (), (store,), verify=only_if_ok(verify))


def unannotated_video(ds: Path) -> Path:
    """The dataset's recording that is in no annotated split (the test recording)."""
    return next(v for v in sorted((ds / "videos").glob("*.mp4"))
                if not any((ds / ANN / split / f"{v.stem}.txt").exists() for split in ("Train_Set", "Validation_Set")))


@CASES("S07-replaced-source", "the source video replaced by another (shorter) one, then extract")
def s07(d, s):
    store, face, frames = store_copy(d, s)
    video = unannotated_video(d / "ds")
    shutil.rmtree(d / "ds" / "cropped_aligned" / video.stem, ignore_errors=True)
    frames[video.stem] = decoded_frames(write_test_video(video, 40))
    return extract_again(d, store, frames, OK)


@CASES("S17-replaced-same-size",
       "the source video replaced by another clip of the same byte size and frame count, then extract", extended=True)
def s17(d, s):
    store, face, frames = store_copy(d, s)
    video = unannotated_video(d / "ds")
    size, n = video.stat().st_size, frames[video.stem]
    write_test_video(video, n, fps=30, width=256, height=192, static=True, audio_bit_rate=16000)
    if not pad_to_size(video, size) or decoded_frames(video) != n:
        return Step([], skip="skipped: the replacement clip came out larger or with other frames")

    def verify(ran):
        found = check_store(store, frames).add(Found(note="store compared with a fresh extraction"))
        fresh = run_avaffect(["extract", "ds", "--out", "fresh", "-q"], d, s.env, 300)
        if fresh.rc != 0:
            return found.add(Found(wrong=[f"a fresh extraction failed: {fresh.out[-200:]}"]))
        for eid in store_entries(store):
            old, new = np.load(store / eid / f"{video.stem}.npy"), np.load(d / "fresh" / eid / f"{video.stem}.npy")
            if old.shape != new.shape or not np.allclose(old, new, atol=1e-5):
                found.wrong.append(f"{eid}/{video.stem}: the store keeps the features of the replaced video")
        return found
    step = extract_again(d, store, frames, OK, verify=verify)
    step.allowed += (d / "fresh",)
    return step


def interrupted_extract(d: Path, s, sig: int) -> Step:
    """Extract the dataset (no features yet), send ``sig`` once the first file is written, extract again."""
    ds = copy_ds(d, s, features=False)
    store, frames = ds / "features", ds_frames(ds)
    argv = ["extract", "ds", "--workers", "1", "-q"]
    step = Step(argv, EITHER, ("interrupted",), (store,), timeout=120,
                interrupt=Interrupt(sig, lambda: store.is_dir() and any(store.glob("*/*.npy")), 40))
    step.resume = Step(argv, OK, (), (store,), verify=only_if_ok(lambda ran: check_store(store, frames)), timeout=120)
    return step


CASES.add("S08-ctrl-c-extract", "extract interrupted with Ctrl-C after its first file, then resumed",
          lambda d, s: interrupted_extract(d, s, signal.SIGINT), extended=True)
CASES.add("S09-kill-extract", "extract killed (SIGKILL) after its first file, then resumed",
          lambda d, s: interrupted_extract(d, s, signal.SIGKILL), extended=True)


@CASES("S10-same-stem", "predict: two inputs with the same stem from different folders, one by one")
def s10(d, s):
    write_test_video(d / "a" / "clip.mp4", 20)
    write_test_video(d / "b" / "clip.mp4", 24)

    def verify(ran):
        written = (d / "out").exists() and any((d / "out").iterdir())
        return Found(wrong=["outputs were written although the inputs clash"] if written else [],
                     note="refused before any output")
    return predict_step(d, s, ["a/clip.mp4", "b/clip.mp4"], names=("clip",), verify=verify)


@CASES("S11-same-stem-in-a-folder", "predict: a folder with a/clip.mp4 and b/clip.mp4 (distinct outputs)",
       extended=True)
def s11(d, s):
    videos = {"a/clip": write_test_video(d / "media" / "a" / "clip.mp4", 20),
              "b/clip": write_test_video(d / "media" / "b" / "clip.mp4", 24)}

    def verify(ran):
        files = {unquote(p.stem): p for p in (d / "out").glob("*.csv")}
        if sorted(files) != sorted(videos):
            return Found(wrong=[f"outputs {sorted(files)}, expected a/clip and b/clip"])
        found = Found(note="two outputs, rows = frames")
        for name, video in videos.items():
            found.wrong += check_prediction_csv(files[name], video).wrong
        return found
    return predict_step(d, s, ["media"], OK, verify=only_if_ok(verify))


@CASES("S12-corrupt-sidecar", "a corrupt status sidecar (_status/*.json), then extract", extended=True)
def s12(d, s):
    store, face, frames = store_copy(d, s)
    side = sorted((face / "_status").glob("*.json"))[0]
    side.write_text('{"recording": "x", "status": ')
    return extract_again(d, store, frames, names=(side.stem,))


@CASES("S13-manifest-deleted", "the store's manifest.json deleted, then extract", extended=True)
def s13(d, s):
    store, face, frames = store_copy(d, s)
    (face / "manifest.json").unlink()
    npys = list(face.glob("*.npy"))

    def verify(ran):
        found = check_store(store, frames)
        found.lost += [f"{p.name} is gone" for p in npys if not p.is_file()]
        if not (face / "manifest.json").is_file():
            found.note = "manifest.json not rewritten (sidecars intact)"
        return found
    return extract_again(d, store, frames, OK, verify=verify)


@CASES("S14-garbage-beside-good", "extract a folder with a garbage video beside a good one")
def s14(d, s):
    n = decoded_frames(write_test_video(d / "media" / "good.mp4", 20))
    write_random_bytes(d / "media" / "bad.mp4")
    return Step(["extract", "media", "--out", "store", "-q"], names=("bad",), allowed=(d / "store",),
                verify=lambda ran: check_store(d / "store", {"good": n}))


@CASES("S15-extract-twice", "extract run twice (the second run must skip and keep the files)", extended=True)
def s15(d, s):
    n = decoded_frames(write_test_video(d / "media" / "a.mp4", 20))
    store = d / "store"
    done: dict[Path, int] = {}

    def verify(ran):
        found = check_store(store, {"a": n}).add(Found(note="second run skipped, files kept"))
        found.lost += [f"{p.name} is gone" for p in done if not p.is_file()]
        found.wrong += [f"{p.name} was recomputed although done" for p, t in done.items()
                        if p.is_file() and p.stat().st_mtime_ns != t]
        if "2 skipped" not in ran.out:
            found.wrong.append(f"the second run did not report 2 skipped ({ran.out.strip()[:60]!r})")
        return found
    then = Step(["extract", "media", "--out", "store"], OK, (), (store,), verify=only_if_ok(verify))
    return Step(["extract", "media", "--out", "store", "-q"], OK, (), (store,), then=then,
                verify=only_if_ok(lambda ran: check_store(store, {"a": n})),
                between=lambda: done.update({p: p.stat().st_mtime_ns for p in store.glob("*/*.npy")}))


@CASES("S16-force", "extract --force on a finished store", extended=True)
def s16(d, s):
    n = decoded_frames(write_test_video(d / "media" / "a.mp4", 20))
    then = Step(["extract", "media", "--out", "store", "--force", "-q"], OK, (), (d / "store",),
                verify=only_if_ok(lambda ran: check_store(d / "store", {"a": n})))
    return Step(["extract", "media", "--out", "store", "-q"], OK, (), (d / "store",), then=then)


@pytest.mark.parametrize("case", CASES.params())
def test_store_case(case, fault_case):
    """Each store case, declared above."""
    fault_case(case)


# =================================================================================================== in-process


@pytest.fixture
def extracted(cli, tmp_path):
    """A folder of two tiny videos extracted into ``tmp_path/store``: (media folder, store)."""
    media = tmp_path / "media"
    for name, n in (("a", 10), ("b", 12)):
        write_test_video(media / f"{name}.mp4", n)
    assert cli("extract", media, "--out", tmp_path / "store", "-q").rc == 0
    return media, tmp_path / "store"


def test_loading_a_feature_file_with_nan_is_refused_naming_it(extracted):
    media, store = extracted
    npy = sorted(store.glob("*/*.npy"))[0]
    arr = np.load(npy)
    arr[1, 1] = np.nan
    np.save(npy, arr)
    with pytest.raises(DataError, match="NaN") as err:
        FeatureStore(store).load(npy.parent.name, npy.stem)
    assert npy.name in str(err.value) and "--force" in str(err.value)


def test_an_interrupted_extraction_keeps_the_finished_file_and_no_partial_one(cli, tmp_path, monkeypatch):
    """Ctrl-C while the second file is written (in this process): the first is kept, no partial file is left,
    and the next run completes the store with one timeline per recording."""
    media = tmp_path / "media"
    frames = {name: decoded_frames(write_test_video(media / f"{name}.mp4", n)) for name, n in (("a", 10), ("b", 12))}
    real_save = FeatureStore.save
    calls = []

    def save_then_interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "save", save_then_interrupt)
    r = cli("extract", media, "--out", tmp_path / "store", "--workers", "1", "-q")
    assert r.rc == 130 and "interrupted" in r.err
    assert len(list((tmp_path / "store").glob("*/*.npy"))) == 1
    monkeypatch.setattr(FeatureStore, "save", real_save)
    r = cli("extract", media, "--out", tmp_path / "store", "--workers", "1")
    assert r.rc == 0 and "3 done" in r.out and "1 skipped" in r.out
    assert not check_store(tmp_path / "store", frames).wrong
    assert not list((tmp_path / "store").rglob("*.tmp"))
    for name, n in frames.items():
        assert FeatureStore(tmp_path / "store").timelines.get(name).num_steps == n
