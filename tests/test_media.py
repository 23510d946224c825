"""Media decoding (PyAV), the log-mel front-end and timeline alignment."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from mediafiles import write_test_video
from shareddata import CREMA_D, require

from avaffect.errors import MediaError, NoAudioStreamError
from avaffect.features.audio import frame_signal, log_mel_spectrogram, mel_band_centers, mel_filterbank
from avaffect.features.temporal_align import align_to_timeline
from avaffect.media import frame_rgb, iter_video_frames, prefetch, probe, read_audio, read_video

FPS = 25
N_FRAMES = 30
SR = 16000


def write_mp4(path: Path, n_frames: int = N_FRAMES, fps: int = FPS, audio: bool = True) -> Path:
    """A 64x48 mpeg4 video (+ a mono 440 Hz AAC track at 16 kHz)."""
    return write_test_video(path, n_frames, fps, audio)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    write_mp4(d / "av.mp4")
    write_mp4(d / "silent.mp4", audio=False)
    data = (d / "av.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: int(len(data) * 0.3)])
    return d


def test_probe(media_dir):
    info = probe(media_dir / "av.mp4")
    assert info.has_video and info.has_audio
    assert info.num_frames == N_FRAMES
    assert info.fps == pytest.approx(FPS)
    assert (info.width, info.height) == (64, 48)
    assert info.audio_sample_rate == SR
    assert info.duration == pytest.approx(N_FRAMES / FPS, abs=0.1)
    assert not probe(media_dir / "silent.mp4").has_audio


def test_read_video_times_from_stream(media_dir):
    frames, times = read_video(media_dir / "av.mp4")
    assert frames.shape == (N_FRAMES, 48, 64, 3) and frames.dtype == np.uint8
    assert times.dtype == np.float64
    assert times[0] == pytest.approx(0.0)
    np.testing.assert_allclose(np.diff(times), 1.0 / FPS, atol=1e-6)
    # brightness encodes the frame index: frames come in presentation order
    assert np.all(np.diff(frames.mean(axis=(1, 2, 3))) > 2)
    it = list(iter_video_frames(media_dir / "av.mp4"))
    assert len(it) == N_FRAMES and it[3][0] == pytest.approx(times[3])


def test_read_audio_length(media_dir):
    wav = read_audio(media_dir / "av.mp4", sample_rate=SR)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - N_FRAMES / FPS * SR) <= SR / FPS
    assert 0.3 < np.abs(wav).max() < 0.7
    # resampling to another rate scales the length
    wav8 = read_audio(media_dir / "av.mp4", sample_rate=8000)
    assert abs(len(wav8) - len(wav) / 2) <= 8


def test_no_audio_stream(media_dir):
    with pytest.raises(NoAudioStreamError) as err:
        read_audio(media_dir / "silent.mp4")
    assert "silent.mp4" in str(err.value) and "video-only" in str(err.value)
    frames, _ = read_video(media_dir / "silent.mp4")
    assert len(frames) == N_FRAMES


def test_truncated_and_missing_files(media_dir, tmp_path):
    for path in (media_dir / "truncated.mp4", tmp_path / "missing.mp4"):
        for fn in (read_video, read_audio, probe):
            with pytest.raises(MediaError) as err:
                fn(path)
            assert str(path) in str(err.value)
            assert err.value.fix
    with pytest.raises(MediaError, match="ffmpeg"):
        read_video(media_dir / "truncated.mp4")


def test_crema_d_flv():
    path = require(CREMA_D / "1001_DFA_ANG_XX.flv", "the CREMA-D sample clip")
    info = probe(path)
    assert info.has_video and info.has_audio
    frames, times = read_video(path)
    assert frames.ndim == 4 and frames.shape[-1] == 3
    assert len(frames) > 30
    step = float(np.median(np.diff(times)))
    video_end = times[-1] + step
    assert 1.5 < video_end < 3.0
    wav = read_audio(path)
    assert abs(len(wav) / 16000 - video_end) <= step


# ------------------------------------------------------------------------------------ log-mel


def test_logmel_tone_peak_and_times():
    sr = 16000
    t = np.arange(sr) / sr
    for freq in (300.0, 1000.0, 3000.0):
        x = np.sin(2 * np.pi * freq * t).astype(np.float32)
        logmel, times = log_mel_spectrogram(x, sr)
        assert logmel.shape == (1 + (sr - 400) // 160, 64)
        peak = int(np.argmax(logmel.mean(axis=0)))
        nearest = int(np.argmin(np.abs(mel_band_centers() - freq)))
        assert abs(peak - nearest) <= 1
        np.testing.assert_allclose(np.diff(times), 0.010, atol=1e-12)
        assert times[0] == pytest.approx(0.0125)
    silence_logmel, _ = log_mel_spectrogram(np.zeros(sr, np.float32))
    np.testing.assert_allclose(silence_logmel, np.log(0.01), rtol=1e-6)


def test_mel_filterbank_shape():
    bank = mel_filterbank(64, 257, 16000, 125.0, 7500.0)
    assert bank.shape == (257, 64)
    assert np.all(bank[0] == 0) and np.all(bank >= 0)
    assert np.all(bank.max(axis=0) > 0.5)  # every band covers at least one bin well
    assert frame_signal(np.zeros(100), 400, 160).shape == (0, 400)


# ------------------------------------------------------------------------------------ alignment


def _naive_align(values, vt, timeline, window, context):
    out = np.zeros((len(timeline), values.shape[1]))
    for k, t in enumerate(timeline):
        lo, hi = {
            "causal": (t - window, t),
            "forward": (t, t + window),
            "centered": (t - window / 2, t + window / 2),
        }[context]
        sel = (vt >= lo) & (vt <= hi)
        out[k] = values[sel].mean(axis=0) if sel.any() else values[np.argmin(np.abs(vt - t))]
    return out


@pytest.mark.parametrize("context", ["causal", "forward", "centered"])
def test_align_matches_naive(context):
    rng = np.random.default_rng(0)
    vt = np.sort(rng.uniform(0, 10, 200))
    vt = np.concatenate([vt[vt < 4], vt[vt > 6]])  # a gap: steps with no rows in the window
    values = rng.normal(size=(len(vt), 3))
    timeline = np.concatenate([np.linspace(-1, 11, 150), [5.0, 5.01]])
    got = align_to_timeline(values, vt, timeline, 0.3, context)
    np.testing.assert_allclose(got, _naive_align(values, vt, timeline, 0.3, context), atol=1e-10)
    # unsorted value times give the same result
    perm = rng.permutation(len(vt))
    np.testing.assert_allclose(
        align_to_timeline(values[perm], vt[perm], timeline, 0.3, context), got, atol=1e-10
    )


def test_align_contexts_differ():
    vt = np.arange(100) * 0.01
    values = vt[:, None].copy()
    t = np.array([0.5])
    assert align_to_timeline(values, vt, t, 0.205, "causal")[0, 0] == pytest.approx(0.4)
    assert align_to_timeline(values, vt, t, 0.205, "forward")[0, 0] == pytest.approx(0.6)
    assert align_to_timeline(values, vt, t, 0.205, "centered")[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        align_to_timeline(values, vt, t, 0.2, "sideways")


def test_variable_frame_rate_times_come_from_the_stream(tmp_path):
    """Irregular frame spacing (VFR) is read from the timestamps, never from a nominal rate."""
    from avaffect.media import video_frame_times

    if "libx264" not in av.codecs_available:
        pytest.skip("this FFmpeg build has no libx264")
    path = tmp_path / "vfr.mp4"
    pts_ms = [0, 40, 100, 120, 200, 210, 330, 400]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)  # millisecond timestamps
        for i, t in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    expected = np.array(pts_ms) / 1000.0
    np.testing.assert_allclose(video_frame_times(path), expected, atol=1e-6)
    np.testing.assert_allclose([t for t, _ in iter_video_frames(path)], expected, atol=1e-6)
    # the overlay writer keeps those timestamps (and so one output frame per input frame)
    from avaffect.evaluation.overlay import write_overlay

    pred = np.zeros((len(pts_ms), 2))
    overlay = write_overlay(path, tmp_path / "overlay.mp4", expected, pred)
    np.testing.assert_allclose(video_frame_times(overlay), expected, atol=1e-6)


def _rotated_copy(src: Path, dst: Path) -> Path:
    """``src`` with its track matrix set to a 90° display rotation (what a phone filming in portrait writes)."""
    import struct

    data = bytearray(src.read_bytes())
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    turned = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    at = data.rfind(identity)  # the video track's tkhd matrix (the movie header's comes first)
    assert at > 0
    data[at: at + 36] = turned
    dst.write_bytes(bytes(data))
    return dst


def test_a_rotated_phone_video_is_decoded_upright(tmp_path):
    import av as _av

    src = tmp_path / "flat.mp4"
    with _av.open(str(src), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:10, :20] = 255  # a white block in the top-left corner as stored
            frame = _av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    rotated = _rotated_copy(src, tmp_path / "portrait.mp4")
    info = probe(rotated)
    assert (info.width, info.height, abs(info.rotation)) == (48, 64, 90.0)
    t, rgb = next(iter_video_frames(rotated))
    assert rgb.shape == (64, 48, 3)
    white = np.argwhere(rgb[..., 0] > 128)
    assert white[:, 0].max() < 24 and white[:, 1].min() > 24  # shown turned clockwise: now top-right
    assert probe(src).rotation == 0.0 and next(iter_video_frames(src))[1].shape == (48, 64, 3)


def test_frame_rgb_matches_swscale_on_yuv420p_and_is_swscale_elsewhere(tmp_path):
    """The fast I420 conversion is within 3 levels of swscale's rgb24 (mean under 1.5) on a real clip; other pixel
    formats and odd sizes go through swscale itself."""
    clip = require(CREMA_D / "1001_DFA_ANG_XX.flv", "the CREMA-D sample clip")
    with av.open(str(clip)) as c:
        frames = [f for _, f in zip(range(10), c.decode(video=0))]
    assert frames[0].format.name == "yuv420p"
    for f in frames:
        ref = f.to_ndarray(format="rgb24").astype(np.int16)
        diff = np.abs(frame_rgb(f).astype(np.int16) - ref)
        assert diff.max() <= 3 and diff.mean() < 1.5
    rng = np.random.default_rng(0)
    for fmt, (h, w) in (("yuv444p", (32, 48)), ("yuv420p", (31, 47)), ("yuvj420p", (32, 48))):
        f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24").reformat(
            format=fmt)
        assert np.array_equal(frame_rgb(f), f.to_ndarray(format="rgb24")), fmt


def test_prefetch_tells_producer_work_from_consumer_wait():
    """``produce_seconds`` is the producer's work, ``wait_seconds`` the consumer blocked: a slow producer shows as
    waiting, a slow consumer does not."""

    def slow(n):
        for i in range(n):
            time.sleep(0.02)
            yield i

    st: dict = {}
    assert list(prefetch(slow(10), 2, st)) == list(range(10))
    assert st["produce_seconds"] >= 0.15 and st["wait_seconds"] >= 0.1
    st = {}
    for _ in prefetch(iter(range(10)), 2, st):
        time.sleep(0.02)
    assert st["wait_seconds"] < 0.1


def test_pts_seconds_is_the_fraction_products_float_to_the_bit():
    from fractions import Fraction

    from avaffect.media import pts_seconds

    rng = np.random.default_rng(0)
    bases = [Fraction(1, 1000), Fraction(1, 90000), Fraction(1001, 30000), Fraction(1, 15360), Fraction(1, 44100),
             Fraction(1, 12800), Fraction(1, 3)]
    for base in bases:
        for pts in [0, 1, -1, -3003, 2**40 + 7, *rng.integers(-10**6, 10**12, 300).tolist()]:
            assert pts_seconds(int(pts), base) == float(int(pts) * base), (pts, base)
