"""The main job with its default settings: fusion must beat both unimodal models (issue 1 of 5).

If this fails, either the synthetic data no longer carries complementary information or a fusion
model is broken: find out which before loosening anything.
"""

from __future__ import annotations

import json

import pytest

from avaffect.workflows.demo import run_demo


@pytest.mark.slow
def test_default_demo_fusion_beats_unimodal(tmp_path):
    results = run_demo(tmp_path / "demo", progress=False)
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text()) == results
    best_unimodal = max(results["audio_only"]["p_va"], results["video_only"]["p_va"])
    for fused in ("concat", "rjca"):
        assert results[fused]["p_va"] > best_unimodal, results
    # each modality carries its strong dimension: the face valence, the voice arousal
    assert results["video_only"]["ccc_valence"] > results["audio_only"]["ccc_valence"]
    assert results["audio_only"]["ccc_arousal"] > results["video_only"]["ccc_arousal"]
