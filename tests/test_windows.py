import numpy as np
import pytest

from avaffect.data.windows import cut_window, stitch, window_mask, window_starts


@pytest.mark.parametrize("num_steps", [1, 7, 10, 11, 29, 30, 31, 95, 300, 301, 1000])
@pytest.mark.parametrize("length,hop", [(10, 5), (10, 10), (10, 3), (30, 20), (300, 200)])
def test_identity_stitching_reproduces_input(num_steps, length, hop):
    rng = np.random.default_rng(num_steps * 31 + length)
    x = rng.normal(size=(num_steps, 2))
    starts = window_starts(num_steps, length, hop)
    windows = np.stack([cut_window(x, s, length, pad_value=np.nan) for s in starts])
    masks = np.stack([window_mask(num_steps, s, length) for s in starts])
    # padded steps are exactly those marked 0 in the mask
    assert np.array_equal(np.isnan(windows[..., 0]), ~masks)
    out = stitch(windows, starts, num_steps)
    np.testing.assert_allclose(out, x, rtol=1e-13, atol=1e-13)  # exact up to float rounding of k*x/k


def test_window_starts_cover_and_end_align():
    starts = window_starts(1000, 300, 200)
    assert list(starts) == [0, 200, 400, 600, 700]
    assert list(window_starts(300, 300, 200)) == [0]
    assert list(window_starts(100, 300, 200)) == [0]
    assert list(window_starts(500, 300, 200)) == [0, 200]
    assert len(window_starts(0, 300, 200)) == 0


def test_short_recording_padding_and_mask():
    x = np.arange(7, dtype=float)[:, None]
    w = cut_window(x, 0, 10)
    assert w.shape == (10, 1)
    np.testing.assert_array_equal(w[7:], 0)
    np.testing.assert_array_equal(window_mask(7, 0, 10), [1] * 7 + [0] * 3)


def test_stitch_averages_overlaps_against_explicit_sum():
    rng = np.random.default_rng(0)
    num_steps, length, hop = 23, 10, 4
    starts = window_starts(num_steps, length, hop)
    preds = rng.normal(size=(len(starts), length, 2))
    out = stitch(preds, starts, num_steps)
    for t in range(num_steps):
        vals = [preds[w, t - s] for w, s in enumerate(starts) if s <= t < s + length]
        np.testing.assert_allclose(out[t], np.mean(vals, axis=0))


def test_invalid_arguments():
    with pytest.raises(ValueError):
        window_starts(10, 0, 1)
    with pytest.raises(ValueError):
        stitch(np.zeros((2, 5, 1)), np.array([0]), 5)
