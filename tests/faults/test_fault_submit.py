"""Broken ABAW submissions: ``submit --check`` names the row and location; the writer never hands in NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

HEADER = "image_location,valence,arousal"


@pytest.fixture
def sample(tmp_path):
    """Predictions of two videos (12 and 8 frames), the matching sample file and a valid submission."""
    rng = np.random.default_rng(0)
    preds = tmp_path / "preds"
    preds.mkdir()
    locs, values = [], []
    for video, n in (("vid-a", 12), ("vid-b", 8)):
        v = np.round(rng.uniform(-0.9, 0.9, (n, 2)), 4)
        (preds / f"{video}.csv").write_text("frame,time,valence,arousal\n" + "".join(
            f"{i},{i / 25:.2f},{a},{b}\n" for i, (a, b) in enumerate(v)))
        locs += [f"{video}/{i + 1:05d}.jpg" for i in range(n)]
        values += v.tolist()
    (tmp_path / "sample.txt").write_text(HEADER + "\n" + "".join(f"{x},,\n" for x in locs))
    return tmp_path, locs, values


def _write(path, locs, values, header=HEADER):
    path.write_text(header + "\n" + "".join(f"{loc},{v:.6f},{a:.6f}\n" for loc, (v, a) in zip(locs, values)))
    return path


def test_the_written_submission_follows_the_sample_file(cli, sample):
    root, locs, values = sample
    r = cli("submit", "abaw", "--predictions", root / "preds", "--sample-file", root / "sample.txt",
            "--out", root / "sub.txt")
    assert r.rc == 0 and "check passed" in r.out
    lines = (root / "sub.txt").read_text().splitlines()
    assert lines[0] == HEADER and [ln.split(",")[0] for ln in lines[1:]] == locs
    np.testing.assert_allclose([[float(x) for x in ln.split(",")[1:]] for ln in lines[1:]], values, atol=1e-6)


@pytest.mark.parametrize("damage, needle", [
    (lambda l, v: (l[:5] + l[6:], v[:5] + v[6:], HEADER), "vid-a/00006.jpg"),
    (lambda l, v: (l + [l[-1]], v + [v[-1]], HEADER), "extra row"),
    (lambda l, v: (l[:2] + [l[3], l[2]] + l[4:], v[:2] + [v[3], v[2]] + v[4:], HEADER), "vid-a/00003.jpg"),
    (lambda l, v: (l, v[:4] + [[math.nan, 0.1]] + v[5:], HEADER), "NaN"),
    (lambda l, v: (l, v, "frame,val,aro"), "header"),
    (lambda l, v: (l, v[:1] + [[1.7, 0.0]] + v[2:], HEADER), "outside [-1, 1]"),
], ids=["missing-row", "extra-row", "swapped-rows", "nan", "wrong-header", "out-of-range"])
def test_check_names_what_is_wrong(cli, sample, damage, needle):
    root, locs, values = sample
    bad = _write(root / "bad.txt", *damage(list(locs), list(values)))
    r = cli("submit", "abaw", "--check", bad, "--sample-file", root / "sample.txt")
    assert r.rc == 1 and needle in r.out


def test_a_prediction_with_nan_is_never_written(cli, sample):
    root, locs, values = sample
    f = root / "preds" / "vid-b.csv"
    lines = f.read_text().splitlines()
    lines[4] = "3,0.12,nan,0.5"
    f.write_text("\n".join(lines) + "\n")
    r = cli("submit", "abaw", "--predictions", root / "preds", "--sample-file", root / "sample.txt",
            "--out", root / "sub.txt")
    assert r.rc == 2 and "vid-b.csv" in r.err and not (root / "sub.txt").exists()
