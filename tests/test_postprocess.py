"""Post-processing against explicit computations, fitted on validation only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avaffect.config import PostprocessConfig
from avaffect.evaluation.metrics import ccc
from avaffect.evaluation.postprocess import PostProcessor, shift, smooth


def test_shift_delays_and_advances_with_edge_values():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(shift(x, 0), x)
    np.testing.assert_array_equal(shift(x, 2), [1, 1, 1, 2])  # out[t] = x[t - 2]
    np.testing.assert_array_equal(shift(x, -1), [2, 3, 4, 4])  # out[t] = x[t + 1]
    np.testing.assert_array_equal(shift(x, 9), [1, 1, 1, 1])
    np.testing.assert_array_equal(shift(np.stack([x, -x], 1), 1), [[1, -1], [1, -1], [2, -2], [3, -3]])


@pytest.mark.parametrize("w", [1, 2, 3, 4, 7, 20])
def test_smooth_is_a_centred_moving_average_with_edge_padding(w):
    rng = np.random.default_rng(w)
    x = rng.normal(size=(15, 2))
    expected = np.empty_like(x)
    for t in range(len(x)):
        idx = np.clip(np.arange(t - (w - 1) // 2, t + w // 2 + 1), 0, len(x) - 1)
        expected[t] = x[idx].mean(0)
    np.testing.assert_allclose(smooth(x, w), expected, atol=1e-12)


def _signals(n=900, seed=0):
    t = np.arange(n)
    y = 0.8 * np.stack([np.sin(t / 40), np.cos(t / 65)], 1)
    return y


def test_fit_recovers_a_label_delay_and_the_bias_scale():
    y = _signals()
    p = 0.5 * shift(y, -6) + 0.1  # predictions run 6 frames ahead of the labels, half the scale, biased
    val_p, val_y = {"a": p[:450], "b": p[450:]}, {"a": y[:450], "b": y[450:]}
    pp = PostProcessor(config=PostprocessConfig(max_delay=12, windows=[1, 5])).fit(val_p, val_y)
    assert pp.delay == {"valence": 6, "arousal": 6}
    assert pp.window == {"valence": 1, "arousal": 1}
    # the bias/scale is the explicit moment match on the shifted validation predictions
    for k, t in enumerate(("valence", "arousal")):
        q = np.concatenate([shift(val_p[n][:, k], 6) for n in ("a", "b")])
        yy = np.concatenate([val_y[n][:, k] for n in ("a", "b")])
        a = yy.std() / q.std()
        assert pp.scale[t] == pytest.approx((a, yy.mean() - a * q.mean()), rel=1e-9)
        assert pp.scores[t]["after"] > 0.99 > pp.scores[t]["before"]
    out = pp.apply(val_p)
    for n in val_p:  # apply = shift → (w = 1) → a p + b → clip, per recording
        for k, t in enumerate(("valence", "arousal")):
            a, b = pp.scale[t]
            np.testing.assert_allclose(out[n][:, k], np.clip(a * shift(val_p[n][:, k], 6) + b, -1, 1), atol=1e-6)


def test_smoothing_window_is_chosen_on_noisy_predictions():
    y = _signals(1200)
    rng = np.random.default_rng(1)
    p = y + rng.normal(0, 0.3, y.shape)
    pp = PostProcessor(config=PostprocessConfig(delay=False, windows=[1, 5, 20, 50], scale="never")).fit(p, y)
    assert pp.delay == {"valence": 0, "arousal": 0}
    assert all(w > 1 for w in pp.window.values())
    best = {w: ccc(np.clip(smooth(p[:, 0], w), -1, 1), y[:, 0]) for w in (1, 5, 20, 50)}
    assert pp.window["valence"] == max(best, key=best.get)
    assert pp.scale == {"valence": None, "arousal": None}


def test_auto_scale_is_kept_only_where_it_helps_and_clip_applies():
    y = _signals()
    pp = PostProcessor(config=PostprocessConfig(delay=False, smoothing=False)).fit(y, y)  # already perfect
    assert pp.scale == {"valence": None, "arousal": None}
    assert pp.delay == {"valence": 0, "arousal": 0}
    np.testing.assert_allclose(pp.apply(np.array([[2.0, -3.0], [0.5, 0.2]])), [[1.0, -1.0], [0.5, 0.2]])
    unclipped = PostProcessor(config=PostprocessConfig(clip=False, delay=False, smoothing=False, scale="never"))
    np.testing.assert_allclose(unclipped.apply(np.array([[2.0, -3.0]])), [[2.0, -3.0]])


def test_fitted_on_validation_only_and_applied_as_stored():
    """The fitted parameters depend on validation data alone; applying them to another split changes nothing."""
    y = _signals()
    rng = np.random.default_rng(2)
    val_p = 0.6 * shift(y, -3) + rng.normal(0, 0.05, y.shape)
    cfg = PostprocessConfig(max_delay=8, windows=[1, 3, 9])
    pp = PostProcessor(config=cfg).fit({"v": val_p}, {"v": y})
    before = pp.to_dict()
    test_p = {"t1": rng.normal(0, 0.5, (300, 2)), "t2": rng.normal(0, 0.5, (100, 2))}
    out = pp.apply(test_p)
    assert pp.to_dict() == before
    # per recording: smoothing and shift never cross from one recording into the next
    for n, x in test_p.items():
        np.testing.assert_allclose(out[n], pp.apply(x), atol=1e-7)
    # a processor fitted on other (test) data gives other parameters: the split matters
    other = PostProcessor(config=cfg).fit(test_p, {n: np.zeros_like(x) + rng.normal(0, 0.3, x.shape)
                                                    for n, x in test_p.items()})
    assert other.to_dict() != before


def test_round_trip_through_json():
    y = _signals()
    cfg = PostprocessConfig(max_delay=5, windows=[1, 4])
    pp = PostProcessor(["arousal"], cfg).fit(0.7 * shift(y[:, 1:], -2), y[:, 1:])
    again = PostProcessor.from_dict(json.loads(json.dumps(pp.to_dict())))
    x = np.random.default_rng(3).normal(0, 0.4, (50, 1))
    np.testing.assert_array_equal(again.apply(x), pp.apply(x))
    assert again.delay == pp.delay and again.window == pp.window and again.scale == pp.scale
    with pytest.raises(ValueError, match="not a post-processing record"):
        PostProcessor.from_dict({"format": "x"})


def test_fit_needs_labels():
    with pytest.raises(ValueError, match="labelled"):
        PostProcessor().fit({"a": np.zeros((5, 2))}, {"a": np.full((5, 2), np.nan)})
