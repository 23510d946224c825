"""``predict --segments`` and the per-minute summaries: the file's checks, the summaries against the CSV's own
numbers, the circumplex reading's thresholds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from avaffect.cli.main import main
from avaffect.errors import DataError
from avaffect.evaluation.segments import (
    QUADRANT_THRESHOLD,
    minute_summaries,
    quadrant,
    read_segments,
    segment_summaries,
)


def test_segments_files_are_checked_with_the_row_and_the_fix(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("start,end,label\n0,1.5,hello, world\n2,3\n")
    segs = read_segments(f)
    assert [(s.start, s.end, s.label) for s in segs] == [(0.0, 1.5, "hello, world"), (2.0, 3.0, None)]
    f.write_text("0.5,1\n")  # no header
    assert read_segments(f)[0].start == 0.5
    for text, says in (("start,end\n", "no segment"), ("1,0.5\n", "row 1"), ("0,x\n", "numbers"), ("3\n", "column"),
                       ("0,nan\n", "finite")):
        f.write_text(text)
        with pytest.raises(DataError, match=says) as e:
            read_segments(f)
        assert str(f) in str(e.value) and "start,end[,label]" in str(e.value)
    with pytest.raises(DataError, match="not found"):
        read_segments(tmp_path / "missing.csv")


def test_summaries_are_the_frames_statistics():
    t = np.arange(0, 130, 0.5)
    v = np.stack([0.01 * t, np.where(t < 60, 0.5, -0.5)], 1)
    v[10, 0] = np.nan  # a frame without a value (a face model without a face) does not count
    face = t % 2 < 1
    out = segment_summaries(t, v, face, ["valence", "arousal"], read_segments_list([(0, 10, "a"), (200, 300, None)]))
    a = out[0]
    inside = t < 10
    ok = inside & np.isfinite(v[:, 0])
    assert a["label"] == "a" and a["frames"] == inside.sum() and a["face_fraction"] == face[inside].mean()
    assert a["valence_mean"] == pytest.approx(v[ok, 0].mean()) and a["valence_slope_per_s"] == pytest.approx(0.01)
    assert a["arousal_std"] == pytest.approx(0.0) and a["quadrant"] == "near neutral"
    assert out[1] == {"start": 200.0, "end": 300.0, "frames": 0}
    minutes = minute_summaries(t, v, face, ["valence", "arousal"])
    assert [m["minute"] for m in minutes] == [0, 1, 2] and minutes[-1]["end"] == t[-1]
    assert minutes[1]["arousal_mean"] == pytest.approx(-0.5) and sum(m["frames"] for m in minutes) == len(t)


def read_segments_list(rows):
    from avaffect.evaluation.segments import Segment

    return [Segment(float(a), float(b), c) for a, b, c in rows]


def test_the_quadrants_and_their_threshold():
    th = QUADRANT_THRESHOLD
    assert quadrant(0.5, 0.5).startswith("positive valence, high arousal")
    assert quadrant(-0.5, -0.5).startswith("negative valence, low arousal")
    assert quadrant(th / 2, 0.9) == "near neutral" and quadrant(0.9, None) is None


def test_predict_segments_equal_the_means_of_the_csv(tiny_run, crema_d, tmp_path):
    clip = sorted(crema_d.glob("*.flv"))[0]
    segs = tmp_path / "turns.csv"
    segs.write_text("start,end,label\n0,0.8,first\n0.8,1.6,second\n1.2,5,late\n")
    out = tmp_path / "p"
    assert main(["predict", str(tiny_run / "model.safetensors"), str(clip), "--out", str(out), "--segments",
                 str(segs)]) == 0
    summary = json.loads((out / f"{clip.stem}.json").read_text())
    csv = pd.read_csv(out / f"{clip.stem}.csv")
    assert len(summary["segments"]) == 3
    for s, (lo, hi) in zip(summary["segments"], ((0, 0.8), (0.8, 1.6), (1.2, 5))):
        rows = csv[(csv.time >= lo) & (csv.time < hi)]
        assert s["frames"] == len(rows) > 0
        assert s["valence_mean"] == pytest.approx(rows.valence.mean(), abs=1e-6)  # the CSV rounds to 1e-6
        assert s["arousal_mean"] == pytest.approx(rows.arousal.mean(), abs=1e-6)
        assert s["face_fraction"] == pytest.approx(rows.face_detected.mean(), abs=1e-4)
    assert [s["label"] for s in summary["segments"]] == ["first", "second", "late"]
    assert summary["minutes"][0]["frames"] == len(csv) and "threshold" in summary["quadrants"]
    bad = tmp_path / "bad.csv"
    bad.write_text("2,1\n")
    assert main(["predict", str(tiny_run / "model.safetensors"), str(clip), "--out", str(out), "--segments",
                 str(bad)]) == 2
