"""Chunked inference (evaluation.streaming) against the whole-array path, and the decode prefetcher."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avaffect.evaluation.inference import predict_recording, torch_runner
from avaffect.evaluation.streaming import predict_chunks
from avaffect.features.extractors.base import face_mask_from_features
from avaffect.features.face_stream import FeatureChunk
from avaffect.media import prefetch
from avaffect.models.wrapper import AVRegressor


def _chunks(video: np.ndarray, mask: np.ndarray, sizes: list[int]):
    lo = 0
    rng = iter(sizes * 1000)
    while lo < len(video):
        hi = min(len(video), lo + next(rng))
        yield FeatureChunk(lo, hi, video[lo:hi], mask[lo:hi], np.full((hi - lo, 4), np.nan, np.float32))
        lo = hi


@pytest.mark.parametrize("num_steps,sizes", [(37, [5]), (150, [1, 7, 64]), (401, [256]), (90, [90]),
                                             (300, [3, 200])])
def test_predict_chunks_equals_the_whole_array_path(num_steps, sizes):
    torch.manual_seed(0)
    model = AVRegressor("rjca", 6, 10, {"hidden": 8, "head_hidden": 8, "window_length": 60})
    rng = np.random.default_rng(num_steps)
    audio = rng.normal(size=(num_steps, 6)).astype(np.float32)
    video = rng.normal(size=(num_steps, 10)).astype(np.float32)
    video[rng.random(num_steps) < 0.2] = 0  # steps without a face
    mask = face_mask_from_features(np.ones(num_steps, bool), video)
    want = predict_recording(model, audio, video, mask, 60, 25, batch_size=4)
    finals: list[tuple[int, np.ndarray]] = []
    got, got_mask, boxes = predict_chunks(torch_runner(model.eval()), audio, _chunks(video, mask, sizes), num_steps, 60,
                                          25, batch_size=4,
                                          on_final=lambda lo, v, b: finals.append((lo, v.copy())))
    np.testing.assert_array_equal(got, want)  # same windows, same batches: bit for bit
    np.testing.assert_array_equal(got_mask, mask)
    assert boxes.shape == (num_steps, 4)
    # the steps reported final come in order, cover the recording once, and hold the final stitched values
    assert [lo for lo, _ in finals] == list(np.cumsum([0] + [len(v) for _, v in finals[:-1]]))
    np.testing.assert_array_equal(np.concatenate([v for _, v in finals]), want)


def test_predict_chunks_refuses_gaps_and_short_streams():
    model = AVRegressor("concat", 2, 3, {"hidden": 4, "head_hidden": 4})
    audio, video, mask = np.zeros((20, 2), np.float32), np.zeros((20, 3), np.float32), np.zeros(20, bool)
    gap = [FeatureChunk(0, 5, video[:5], mask[:5], np.zeros((5, 4))), FeatureChunk(6, 20, video[6:], mask[6:],
                                                                               np.zeros((14, 4)))]
    with pytest.raises(ValueError, match="out of order"):
        predict_chunks(torch_runner(model.eval()), audio, gap, 20, 8, 4)
    with pytest.raises(ValueError, match="end at step 5"):
        predict_chunks(torch_runner(model.eval()), audio, gap[:1], 20, 8, 4)


def test_prefetch_keeps_order_raises_the_producers_error_and_stops_when_closed():
    assert list(prefetch(range(100), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise OSError("disk gone")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(it)
    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    it = prefetch(endless(), depth=2)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()  # the producer stops: at most depth + 2 items past what was consumed
    n = len(made)
    assert n <= 5 + 2 + 2
    import time

    time.sleep(0.3)
    assert len(made) == n


@pytest.mark.parametrize("name,params", [("face_hog", {"detect_every": 3}), ("face_hog", {}),
                                         ("resnet18_face", {"allow_random": True, "crop_size": 64,
                                                            "input_size": 64, "missing_face": "black_frame"}),
                                         # clips: each chunk carries its context (7 steps before; 4 either side;
                                         # 7 after), so the chunks' edges must not show
                                         *[("r2plus1d18_clip", {"allow_random": True, "crop_size": 32,
                                                                "input_size": 32, "arch": "r3d_18", **clip})
                                           for clip in ({}, {"context": "centered", "clip_len": 5, "frame_stride": 2},
                                                        {"context": "forward"})]])
def test_streamed_features_equal_extract(crema_d, name, params):
    """Chunks of the streaming path assemble to the whole-video computation (every crop of the video cut first,
    then described), with detection on every k-th frame too; extract() on a video streams and agrees."""
    from avaffect.data.folder import recording_from_video
    from avaffect.features.extractors import get_extractor
    from avaffect.features.face_stream import can_stream, iter_face_feature_chunks
    from avaffect.features.faces import load_face_crops

    clip = sorted(crema_d.glob("*.flv"))[0]
    ex = get_extractor(name, **params)
    rec = recording_from_video(clip)
    assert can_stream(rec, ex)
    chunks = list(iter_face_feature_chunks(rec, ex, chunk=16))
    assert [c.lo for c in chunks] == list(range(0, rec.num_steps, 16)) and chunks[-1].hi == rec.num_steps
    streamed = np.concatenate([c.features for c in chunks])
    whole_rec = recording_from_video(clip)
    t = load_face_crops(whole_rec, ex.face_pipeline())
    crops, mask = t.crops, t.crop_present
    assert len(crops) == rec.num_steps  # the whole video's crops at once: what streaming avoids
    whole = ex.features_from_crops(crops, mask & whole_rec.face_mask)
    np.testing.assert_allclose(streamed, whole, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ex.extract(whole_rec), whole, atol=1e-5, rtol=1e-5)  # cached crops: whole path
    fresh = recording_from_video(clip)
    np.testing.assert_allclose(ex.extract(fresh), whole, atol=1e-5, rtol=1e-5)
    assert not any(isinstance(k, tuple) and k[0] == "face_crops" for k in fresh.extra)  # it streamed: no crops kept
    assert np.concatenate([c.face_mask for c in chunks]).mean() > 0.9


def test_predict_chunks_reads_audio_blocks_as_the_windows_need_them():
    """Audio features given as blocks of steps (read as far as a window needs, released after) give what the
    whole array gives, bit for bit; blocks that end early or skip steps are refused."""
    torch.manual_seed(0)
    model = AVRegressor("rjca", 6, 10, {"hidden": 8, "head_hidden": 8, "window_length": 60}).eval()
    rng = np.random.default_rng(1)
    n = 333
    audio = rng.normal(size=(n, 6)).astype(np.float32)
    video = rng.normal(size=(n, 10)).astype(np.float32)
    mask = np.ones(n, bool)
    want, _, _ = predict_chunks(torch_runner(model), audio, _chunks(video, mask, [64]), n, 60, 25, batch_size=4)
    def blocks(size):
        for lo in range(0, n, size):
            yield lo, min(n, lo + size), audio[lo:lo + size]

    for size in (1, 17, 500):
        got, _, _ = predict_chunks(torch_runner(model), blocks(size), _chunks(video, mask, [64]), n, 60, 25,
                                   batch_size=4)
        np.testing.assert_array_equal(got, want)
    short = ((lo, lo + 10, audio[lo:lo + 10]) for lo in range(0, 100, 10))
    with pytest.raises(ValueError, match="audio blocks end at step 100"):
        predict_chunks(torch_runner(model), short, _chunks(video, mask, [64]), n, 60, 25)
    gap = iter([(0, 10, audio[:10]), (20, n, audio[20:])])
    with pytest.raises(ValueError, match="out of order"):
        predict_chunks(torch_runner(model), gap, _chunks(video, mask, [64]), n, 60, 25)
