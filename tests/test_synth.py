"""The synthetic Aff-Wild2-format dataset writer (docs/design.md §6, "Synthetic set")."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from avaffect.data.layout import AFFWILD2_ANNOTATION_DIR as ANNOTATION_DIR
from avaffect.data.layout import AFFWILD2_SPLIT_DIRS
from avaffect.data.synth import (
    WEAK_MISSING,
    SynthConfig,
    recording_plan,
    write_synthetic_dataset,
)
from avaffect.errors import DataError

TINY = SynthConfig(n_train=2, n_val=1, n_test=1, duration_s=3.0, weak_rate=0.3, gap_rate=0.1)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "ds", TINY, progress=False)


def _annotation(root: Path, name: str, split: str) -> Path:
    return root / ANNOTATION_DIR / AFFWILD2_SPLIT_DIRS[split] / f"{name}.txt"


def _video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        chunks = [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]
    return np.concatenate(chunks), rate


def test_layout(tiny_root: Path) -> None:
    plan = recording_plan(TINY)
    assert [split for _, _, split in plan] == ["train", "train", "validation", "test"]
    assert plan[0][1] == "synth000-30-256x192"
    assert json.loads((tiny_root / "synth_config.json").read_text()) == TINY.model_dump()
    assert not (tiny_root / ".synth_tmp").exists()
    for _, name, split in plan:
        latent = np.load(tiny_root / "latent" / f"{name}.npz")
        n = len(latent["valence"])
        assert 0.75 * 3.0 * 30 - 2 <= n <= 1.25 * 3.0 * 30 + 2
        video = tiny_root / "videos" / f"{name}.mp4"
        assert _video_frames(video) == n
        jpgs = sorted((tiny_root / "cropped_aligned" / name).glob("*.jpg"))
        assert len(jpgs) == int(latent["face_present"].sum())
        expected = {f"{i + 1:05d}.jpg" for i in np.flatnonzero(latent["face_present"])}
        assert {p.name for p in jpgs} == expected
        assert np.array_equal(latent["face_present"], latent["face_weak"] != WEAK_MISSING)
        img = cv2.imread(str(jpgs[0]))
        assert img.shape == (TINY.crop_size, TINY.crop_size, 3)
        for key in ("valence", "arousal", "face_valence", "face_arousal", "voice_valence", "voice_arousal"):
            assert latent[key].shape == (n,) and np.all(np.abs(latent[key]) <= 1.0)
        if split == "test":
            assert not any((tiny_root / ANNOTATION_DIR).rglob(f"{name}.txt"))
            assert not latent["annotated"].any()
            continue
        lines = _annotation(tiny_root, name, split).read_text().splitlines()
        assert lines[0] == "valence,arousal"
        rows = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
        assert rows.shape == (n, 2)
        gap = np.all(rows == -5, axis=1)
        assert gap.any() and np.array_equal(~gap, latent["annotated"])
        assert np.allclose(rows[~gap, 0], latent["valence"][~gap], atol=1e-3)
        assert np.allclose(rows[~gap, 1], latent["arousal"][~gap], atol=1e-3)


def test_audio_matches_video_duration(tiny_root: Path) -> None:
    for _, name, _ in recording_plan(TINY):
        video = tiny_root / "videos" / f"{name}.mp4"
        with av.open(str(video)) as c:
            assert c.streams.audio[0].channels == 1
        wave, rate = _audio(video)
        assert rate == TINY.sample_rate
        video_s = _video_frames(video) / TINY.fps
        assert abs(len(wave) / rate - video_s) <= 1.0 / TINY.fps
        assert np.abs(wave).max() > 0.01  # not silent
        latent = np.load(tiny_root / "latent" / f"{name}.npz")
        hop = rate / TINY.fps
        for i in np.flatnonzero(latent["voice_weak"] == WEAK_MISSING):  # missing voice = silence
            assert np.sqrt(np.mean(wave[int(i * hop):int((i + 1) * hop)] ** 2)) < 0.01


def test_deterministic(tmp_path: Path, tiny_root: Path) -> None:
    cfg = TINY.model_copy(update={"n_val": 0, "n_test": 0})
    a = write_synthetic_dataset(tmp_path / "a", cfg, progress=False)
    b = write_synthetic_dataset(tmp_path / "c", cfg.model_copy(update={"seed": 1}), progress=False)
    for _, name, split in recording_plan(cfg):
        # recordings depend on (seed, index) only: the bigger tiny set holds the same ones
        ann = _annotation(a, name, split).read_text()
        assert ann == _annotation(tiny_root, name, split).read_text()
        assert ann != _annotation(b, name, split).read_text()
        la, lt = np.load(a / "latent" / f"{name}.npz"), np.load(tiny_root / "latent" / f"{name}.npz")
        assert sorted(la.files) == sorted(lt.files)
        for key in la.files:
            assert np.array_equal(la[key], lt[key]), key
        assert not np.array_equal(la["valence"], np.load(b / "latent" / f"{name}.npz")["valence"])


def test_idempotent_and_guarded(tmp_path: Path) -> None:
    cfg = SynthConfig(n_train=1, n_val=1, duration_s=2.0)
    root = write_synthetic_dataset(tmp_path / "ds", cfg, progress=False)
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "synth_config.json"]
    before = {p: p.stat().st_mtime_ns for p in files}
    write_synthetic_dataset(root, cfg, progress=False)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    # an unfinished recording (no latent marker) is written again
    name = recording_plan(cfg)[1][1]
    (root / "latent" / f"{name}.npz").unlink()
    write_synthetic_dataset(root, cfg, progress=False)
    assert (root / "latent" / f"{name}.npz").exists()
    with pytest.raises(DataError, match="another config"):
        write_synthetic_dataset(root, cfg.model_copy(update={"seed": 3}), progress=False)
    # a folder holding some other dataset is refused too
    (tmp_path / "other" / "annotations").mkdir(parents=True)
    with pytest.raises(DataError):
        write_synthetic_dataset(tmp_path / "other", cfg, progress=False)


def test_mpeg4_fallback(tmp_path: Path, monkeypatch) -> None:
    import avaffect.data.synth.writer as synth

    monkeypatch.setattr(synth, "VIDEO_CODECS", (("no-such-codec", {}, None),) + synth.VIDEO_CODECS[1:])
    cfg = SynthConfig(n_train=1, n_val=0, duration_s=1.0)
    root = write_synthetic_dataset(tmp_path / "ds", cfg, progress=False)
    name = recording_plan(cfg)[0][1]
    video = root / "videos" / f"{name}.mp4"
    with av.open(str(video)) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    assert _video_frames(video) == len(np.load(root / "latent" / f"{name}.npz")["valence"])


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        SynthConfig(n_trian=3)
    with pytest.raises(ValidationError):
        SynthConfig(crop_size=300)
    with pytest.raises(ValidationError):
        SynthConfig(frame_width=255)


def _mouth_curvature(crop: np.ndarray) -> float:
    """Curvature of the dark mouth line (positive = corners up), from a parabola fit."""
    cs = crop.shape[0]
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float64)
    r0, r1 = int(0.63 * cs), int(0.86 * cs)
    c0, c1 = int(0.40 * cs), int(0.60 * cs)
    region = cv2.GaussianBlur(gray, (0, 0), 1.0)[r0:r1, c0:c1]
    dark = np.clip(np.median(region, axis=0, keepdims=True) - region, 0, None) ** 2
    rows = (dark * np.arange(r1 - r0)[:, None]).sum(0) / np.maximum(dark.sum(0), 1e-9)
    xs = np.arange(c1 - c0) - (c1 - c0) / 2
    return -float(np.polyfit(xs, rows, 2)[0])


def _frame_rms_db(wave: np.ndarray, rate: int, n: int, fps: float) -> np.ndarray:
    hop = rate / fps
    energy = np.array([np.mean(wave[int(i * hop):int((i + 1) * hop)] ** 2) for i in range(n)])
    k = int(fps)  # 1 s moving average over syllables and pauses
    return 10 * np.log10(np.convolve(energy, np.ones(k) / k, mode="same") + 1e-12)


def test_modalities_carry_intended_dimensions(tmp_path: Path) -> None:
    cfg = SynthConfig(n_train=3, n_val=0, duration_s=30.0, fps=15.0, weak_rate=0.0, gap_rate=0.0)
    root = write_synthetic_dataset(tmp_path / "ds", cfg, progress=False)
    face_stat, audio_stat, val, aro = [], [], [], []
    for _, name, _ in recording_plan(cfg):
        latent = np.load(root / "latent" / f"{name}.npz")
        n = len(latent["valence"])
        crops = root / "cropped_aligned" / name
        curv = np.array([_mouth_curvature(cv2.imread(str(crops / f"{i + 1:05d}.jpg"))) for i in range(n)])
        wave, rate = _audio(root / "videos" / f"{name}.mp4")
        loud = _frame_rms_db(wave, rate, n, cfg.fps)
        # per-recording z-scores: identities differ in face geometry and voice
        face_stat.append((curv - curv.mean()) / curv.std())
        audio_stat.append((loud - loud.mean()) / loud.std())
        val.append(latent["valence"])
        aro.append(latent["arousal"])
    face, audio, v, a = (np.concatenate(x) for x in (face_stat, audio_stat, val, aro))

    def corr(x, y):
        return float(np.corrcoef(x, y)[0, 1])

    assert corr(face, v) > 0.85
    assert corr(face, v) > abs(corr(face, a)) + 0.5
    assert corr(audio, a) > 0.75
    assert corr(audio, a) > abs(corr(audio, v)) + 0.4
