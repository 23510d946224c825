"""Offline feature extractors (face_hog, logmel_stats) and the extractor registry."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError, DataError, MediaError
from avaffect.features.extractors import (
    Extractor,
    ExtractorParams,
    FaceHOG,
    LogMelStats,
    get_extractor,
    list_extractors,
    register_extractor,
)
from avaffect.media import read_audio

SR = 16000


def make_recording(
    root: Path,
    name: str = "rec",
    T: int = 20,
    fps: float = 25.0,
    no_face: tuple[int, ...] = (0, 10),
    missing: tuple[int, ...] = (),
    audio: np.ndarray | None = None,
) -> Recording:
    """Crops for each step with a face (except ``missing``, which stay masked-in but absent) + a wav."""
    rng = np.random.default_rng(sum(map(ord, name)))
    crops = root / name / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    face_mask = np.ones(T, bool)
    face_mask[[i for i in no_face if i < T]] = False
    yy, xx = np.mgrid[:112, :112]
    for i in range(T):
        if face_mask[i] and i not in missing:
            img = 128 + 60 * np.sin(xx / (5 + i % 4)) * np.cos(yy / 7) + rng.normal(0, 5, (112, 112))
            bgr = np.repeat(img.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
            cv2.imwrite(str(crops / f"{i + 1:05d}.jpg"), bgr)
    if audio is None:
        t = np.arange(int(T / fps * SR)) / SR
        audio = 0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.4)
    wav_path = root / name / "audio.wav"
    wavfile.write(wav_path, SR, (np.asarray(audio) * 32767).astype(np.int16))
    return Recording(
        name=name,
        times=np.arange(T) / fps,
        labels=np.zeros((T, 2), np.float32),
        face_mask=face_mask,
        audio_path=wav_path,
        crops_dir=crops,
        fps=fps,
    )


def test_registry_and_ids():
    assert {"face_hog", "logmel_stats"} <= set(list_extractors())
    assert "face_hog" in list_extractors("video") and "face_hog" not in list_extractors("audio")
    a, b = get_extractor("face_hog"), get_extractor("face_hog", size=64)
    assert a.id == b.id and a.id.startswith("face_hog-")
    assert get_extractor("face_hog", size=48).id != a.id
    assert get_extractor("logmel_stats", {"context": "causal"}).params["context"] == "causal"
    with pytest.raises(ConfigError, match="available"):
        get_extractor("nope")
    with pytest.raises(ConfigError, match="unknown parameter"):
        get_extractor("face_hog", sizee=64)
    with pytest.raises(ConfigError):
        get_extractor("logmel_stats", context="sideways")
    with pytest.raises(ConfigError):
        get_extractor("face_hog", size=60, block=16, block_stride=16)


def test_custom_extractor_registration():
    @register_extractor
    class Const(Extractor):
        name = "test_const"
        modality = "audio"

        class Params(ExtractorParams):
            value: float = 1.0

        @property
        def dim(self) -> int:
            return 2

        def extract(self, rec):
            return np.full((rec.num_steps, 2), self.params["value"], np.float32)

    ex = get_extractor("test_const", value=3)
    assert ex.describe()["dim"] == 2 and ex.id.startswith("test_const-") and ex.settings.value == 3.0
    with pytest.raises(TypeError, match="Params"):  # one config style: a defaults dict is refused at class creation

        class Old(Extractor):
            defaults = {"value": 1.0}


def test_face_hog(tmp_path):
    rec = make_recording(tmp_path, missing=(3, 7))
    ex = FaceHOG()
    ex._descriptor()
    ex = pickle.loads(pickle.dumps(ex))  # picklable after the OpenCV descriptor exists
    feats = ex.extract(rec)
    assert feats.shape == (rec.num_steps, ex.dim) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    zero_rows = np.flatnonzero(~feats.any(axis=1))
    assert list(zero_rows) == [0, 3, 7, 10]
    assert feats[1].std() > 0
    # the grid part holds the downsampled intensity in [0, 1]
    grid = feats[:, ex.hog_dim :]
    assert grid.shape[1] == 64 and grid.max() <= 1.0 and grid[1].mean() > 0.2


@pytest.mark.parametrize("crop,size,stacked", [(112, 64, True), (100, 64, True), (96, 64, True), (64, 64, True),
                                               (112, 48, False), (40, 64, False)])
def test_face_hog_batched_equals_crop_by_crop(crop, size, stacked):
    """The batched path (one colour conversion and one resize for the whole batch, where exact) gives the per-crop
    features bit for bit; ratios that would not be exact stacked (7/3, an enlargement) take the per-crop resize."""
    import cv2

    from avaffect.features.extractors.face_hog import _exact_when_stacked

    assert _exact_when_stacked(crop, size) is stacked
    rng = np.random.default_rng(crop + size)
    crops = np.stack([cv2.GaussianBlur(c, (5, 5), 1.2) for c in
                      rng.integers(0, 256, (9, crop, crop, 3), dtype=np.uint8)])
    mask = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1], bool)
    ex = FaceHOG(size=size, block_stride=8 if size == 48 else 16)
    ex.BATCH = 4  # several batches
    got = ex.features_from_crops(crops, mask)
    want = np.zeros_like(got)
    hog = cv2.HOGDescriptor((size, size), (16, 16), (ex.params["block_stride"],) * 2, (8, 8), 9)
    for i in np.flatnonzero(mask):  # the reference: OpenCV on each crop alone
        small = cv2.resize(cv2.cvtColor(crops[i], cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
        want[i] = np.concatenate([hog.compute(small).reshape(-1),
                                  cv2.resize(small, (8, 8), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ex.describe_crop(cv2.cvtColor(crops[0], cv2.COLOR_RGB2GRAY)), want[0])
    assert not got[~mask].any() and got[mask].std() > 0


def test_face_hog_all_missing_and_no_faces(tmp_path):
    rec = make_recording(tmp_path, T=5, no_face=(), missing=(0, 1, 2, 3, 4))
    with pytest.raises(DataError, match="crops"):
        FaceHOG().extract(rec)
    rec.face_mask[:] = False
    assert not FaceHOG().extract(rec).any()


def test_logmel_stats(tmp_path):
    rec = make_recording(tmp_path, T=25)
    ex = LogMelStats()
    feats = ex.extract(rec)
    assert feats.shape == (25, ex.dim) == (25, 132) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    n = ex.params["n_mels"]
    silent, voiced = feats[0], feats[20]  # audio starts at 0.4 s; window 0.5 s centred
    assert voiced[2 * n] > silent[2 * n] + 5  # log energy
    assert voiced[2 * n + 2] > 0.9 and silent[2 * n + 2] < 0.1  # periodicity
    assert voiced[2 * n + 3] == pytest.approx(np.log2(220), abs=0.1)  # log2 f0
    assert (feats[:, n : 2 * n] >= 0).all()  # stds


def test_logmel_contexts_align_by_time(tmp_path):
    T, fps = 30, 25.0
    t = np.arange(int(T / fps * SR)) / SR
    audio = 0.3 * np.sin(2 * np.pi * 300 * t) * (t >= 0.6)  # sound from 0.6 s
    rec = make_recording(tmp_path, T=T, audio=audio)
    step = 14  # t = 0.56 s: the causal window [0.46, 0.56] is silent, the forward one [0.56, 0.66] not
    e = {c: get_extractor("logmel_stats", context=c, window=0.1).extract(rec) for c in ("causal", "forward")}
    logE = 2 * 64
    assert e["forward"][step, logE] > e["causal"][step, logE] + 5
    # a timeline longer than the audio takes the last frames (nearest in time), still finite
    long = Recording(
        rec.name, np.arange(60) / fps, np.zeros((60, 2)), np.zeros(60, bool), audio_path=rec.audio_path
    )
    out = LogMelStats().extract(long)
    assert out.shape == (60, 132) and np.isfinite(out).all()


def test_logmel_missing_audio(tmp_path):
    rec = make_recording(tmp_path, T=5)
    rec.audio_path = tmp_path / "nope.wav"
    with pytest.raises(MediaError, match="nope.wav"):
        LogMelStats().extract(rec)
    rec.audio_path = None
    with pytest.raises(DataError, match="neither"):
        LogMelStats().extract(rec)


def test_face_hog_source_video_reads_the_raw_video_even_with_crops(synth_root):
    """Aff-Wild2 layout: the visual source can be the dataset's crops (default) or the raw video."""
    from avaffect.data.affwild2 import load_affwild2
    from avaffect.features.extractors import get_extractor

    rec = next(r for r in load_affwild2(synth_root) if r.split == "validation")
    from_crops = get_extractor("face_hog").extract(rec)
    from_video = get_extractor("face_hog", source="video").extract(rec)
    assert from_crops.shape == from_video.shape == (rec.num_steps, get_extractor("face_hog").dim)
    assert not np.allclose(from_crops, from_video)  # detector crops differ from the rendered crops
    assert get_extractor("face_hog").id != get_extractor("face_hog", source="video").id


@pytest.mark.parametrize("context,window,block_s", [("centered", 0.5, 0.3), ("causal", 0.1, 0.05),
                                                    ("forward", 0.0, 1.0), ("centered", 2.0, 0.2)])
def test_logmel_blocks_equal_the_whole_waveform(tmp_path, context, window, block_s, monkeypatch):
    """The features computed block by block from the audio decoded piece by piece (predict's memory-flat path,
    and extract's) equal those of the whole waveform to float rounding, with blocks much shorter than a window,
    a timeline that starts late and one that runs past the end of the audio; the blocks cover it in order."""
    fps, T = 25.0, 120
    rng = np.random.default_rng(3)
    t = np.arange(int(4.0 * SR)) / SR  # 4 s of audio; the timelines below reach 4.8 s
    audio = 0.3 * np.sin(2 * np.pi * (150 + 100 * t) * t) * (rng.random(len(t)) > 0.001)
    rec = make_recording(tmp_path, T=T, fps=fps, audio=audio)
    ex = get_extractor("logmel_stats", context=context, window=window)
    monkeypatch.setattr(LogMelStats, "BLOCK_S", block_s)
    for times in (np.arange(T) / fps, 1.3 + np.arange(60) / 30.0):
        r = Recording(rec.name, times, np.zeros((len(times), 2)), np.ones(len(times), bool),
                      audio_path=rec.audio_path)
        blocks = list(ex.iter_steps(r))
        assert [lo for lo, _, _ in blocks] == [0] + [hi for _, hi, _ in blocks[:-1]] and blocks[-1][1] == len(times)
        if block_s < 1.0:
            assert len(blocks) > 3
        got = np.concatenate([f for _, _, f in blocks])
        want = ex.features_from_waveform(read_audio(rec.audio_path), times)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_logmel_blocks_of_a_clip_shorter_than_one_frame(tmp_path):
    rec = make_recording(tmp_path, T=3, audio=np.full(200, 0.1))  # 12.5 ms: under one 25-ms analysis frame
    ex = LogMelStats()
    np.testing.assert_array_equal(ex.extract(rec), ex.features_from_waveform(read_audio(rec.audio_path), rec.times))
