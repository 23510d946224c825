"""Damaged media said out loud: a file cut short and a file with flipped bytes decode (FFmpeg conceals the damage),
and ``predict``'s JSON and warnings say what happened: the header's duration against what was read, and the
decoding errors FFmpeg concealed."""

from __future__ import annotations

import numpy as np

from avaffect.media import iter_video_frames
from avaffect.workflows.predict import load_predictor


def _damaged(clip, tmp_path):
    data = bytearray(clip.read_bytes())
    cut = tmp_path / "cut.flv"
    cut.write_bytes(bytes(data[:int(len(data) * 0.3)]))
    flipped = tmp_path / "flipped.flv"
    for i in np.random.default_rng(0).choice(len(data), len(data) // 1000, replace=False):
        data[i] ^= 0xFF
    flipped.write_bytes(bytes(data))
    return cut, flipped


def test_concealed_decoding_errors_are_counted(crema_d, tmp_path):
    clip = sorted(crema_d.glob("*.flv"))[0]
    cut, flipped = _damaged(clip, tmp_path)
    counts = []
    for f in (clip, cut, flipped):
        report: dict = {}
        n = sum(1 for _ in iter_video_frames(f, report=report))
        counts.append((n, report["decode_errors"]))
    assert counts[0][1] == 0 and counts[1][0] < counts[0][0]
    assert counts[2][1] > 0 and report["decode_messages"]


def test_predict_reports_a_truncated_and_a_damaged_file(tiny_run, crema_d, tmp_path):
    clip = sorted(crema_d.glob("*.flv"))[0]
    cut, flipped = _damaged(clip, tmp_path)
    predictor = load_predictor(tiny_run / "model.safetensors")
    whole = predictor(clip).summary.as_json()
    assert whole["media"]["decode_errors"] == 0 and "truncated" not in whole["media"]
    assert not any("truncated" in w or "decoding error" in w for w in whole["warnings"])
    s = predictor(cut).summary.as_json()
    assert s["media"]["truncated"] and s["media"]["container_duration_s"] > 2 * s["media"]["decoded_duration_s"]
    assert any("truncated" in w for w in s["warnings"])
    s = predictor(flipped).summary.as_json()
    assert s["media"]["decode_errors"] > 0 and any("decoding error" in w for w in s["warnings"])
