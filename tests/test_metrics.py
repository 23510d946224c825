import math

import numpy as np
import pytest

from avaffect import metrics


def ref_ccc(x, y):
    """Independent CCC: numpy covariance matrix with population normalisation."""
    c = np.cov(np.stack([x, y]), bias=True)
    return 2 * c[0, 1] / (c[0, 0] + c[1, 1] + (np.mean(x) - np.mean(y)) ** 2)


@pytest.mark.parametrize("seed", range(5))
def test_ccc_pcc_against_numpy(seed):
    rng = np.random.default_rng(seed)
    y = rng.uniform(-1, 1, size=500)
    x = 0.6 * y + 0.3 * rng.normal(size=500) + 0.1
    assert metrics.ccc(x, y) == pytest.approx(ref_ccc(x, y), abs=1e-12)
    assert metrics.pcc(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert metrics.rmse(x, y) == pytest.approx(np.sqrt(np.mean((x - y) ** 2)))
    assert metrics.mae(x, y) == pytest.approx(np.mean(np.abs(x - y)))
    assert metrics.sagr(x, y) == pytest.approx(np.mean(np.sign(x + 1e-300) == np.sign(y + 1e-300)))


def test_ccc_properties():
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    y -= y.mean()
    assert metrics.ccc(y, y) == pytest.approx(1.0)
    assert metrics.ccc(-y, y) == pytest.approx(-1.0)
    # CCC penalises bias and scale, PCC does not
    assert metrics.pcc(2 * y + 1, y) == pytest.approx(1.0)
    assert metrics.ccc(2 * y + 1, y) < 0.7


def test_mask_and_nan_labels_equal_subsetting():
    rng = np.random.default_rng(2)
    y = rng.normal(size=300)
    x = y + rng.normal(size=300)
    mask = rng.uniform(size=300) > 0.3
    y_nan = np.where(rng.uniform(size=300) > 0.9, np.nan, y)
    keep = mask & np.isfinite(y_nan)
    assert metrics.ccc(x, y_nan, mask) == pytest.approx(ref_ccc(x[keep], y[keep]), abs=1e-12)


def test_edge_cases():
    # all masked / all NaN: nothing to score
    assert math.isnan(metrics.ccc([1.0, 2.0], [1.0, 2.0], mask=[False, False]))
    assert math.isnan(metrics.ccc([1.0, 2.0], [np.nan, np.nan]))
    # constant series: defined as 0, never NaN (docs/design.md §3)
    assert metrics.ccc([0.5] * 10, [0.5] * 10) == 0.0
    assert metrics.ccc([0.2] * 10, [0.5] * 10) == 0.0
    assert metrics.pcc([0.2] * 10, np.arange(10.0)) == 0.0
    # a constant prediction of a varying target: CCC is 0 (cov is 0)
    assert metrics.ccc(np.zeros(10), np.arange(10.0)) == 0.0
    # one frame: variances 0
    assert metrics.ccc([0.3], [0.1]) == 0.0
    assert metrics.rmse([0.3], [0.1]) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        metrics.ccc([1, 2, 3], [1, 2])


def test_protocols_global_vs_per_recording():
    rng = np.random.default_rng(3)
    labels, preds = {}, {}
    for i, n in enumerate([50, 80, 120]):
        y = rng.uniform(-1, 1, size=(n, 2))
        y[:5] = np.nan  # unannotated
        labels[f"r{i}"] = y
        preds[f"r{i}"] = y * 0.5 + rng.normal(scale=0.3, size=(n, 2)) + i * 0.1
    overall, per = metrics.score_recordings(preds, labels, "global")
    ally = np.concatenate(list(labels.values()))
    allp = np.concatenate(list(preds.values()))
    ok = np.isfinite(ally[:, 0])
    assert overall["ccc_valence"] == pytest.approx(ref_ccc(allp[ok, 0], ally[ok, 0]), abs=1e-12)
    assert overall["ccc_arousal"] == pytest.approx(ref_ccc(allp[ok, 1], ally[ok, 1]), abs=1e-12)
    assert overall["p_va"] == pytest.approx((overall["ccc_valence"] + overall["ccc_arousal"]) / 2)
    per_overall, per2 = metrics.score_recordings(preds, labels, "per_recording")
    expected = np.mean([ref_ccc(preds[k][5:, 0], labels[k][5:, 0]) for k in labels])
    assert per_overall["ccc_valence"] == pytest.approx(expected, abs=1e-12)
    assert per == per2 and set(per) == {"r0", "r1", "r2"}
    with pytest.raises(ValueError, match="protocol"):
        metrics.score_recordings(preds, labels, "bogus")
    with pytest.raises(ValueError, match="r9"):
        metrics.score_recordings(preds, {**labels, "r9": labels["r0"]})
