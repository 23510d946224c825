"""The counted-compute column of ``docs/reproducing.md`` (``benchmarks/paper_rows.py``), checked against published
and hand-computed figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from avaffect.config import ExtractorSpec, load_config

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_rows.py"


@pytest.fixture(scope="module")
def rows():
    spec = importlib.util.spec_from_file_location("paper_rows", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backbone_flops_match_the_published_sizes(rows):
    # torchvision's model card: ResNet-50 4.09 GFLOPS (multiply-adds) at 224 x 224, ResNet-18 1.81
    r50 = rows._backbone_step_flops(ExtractorSpec(name="resnet50_face", params={"crop_size": 224,
                                                                                 "input_size": 224}), 30.0)
    r18 = rows._backbone_step_flops(ExtractorSpec(name="resnet18_face", params={"crop_size": 224,
                                                                                 "input_size": 224}), 30.0)
    assert r50 / 2 == pytest.approx(4.09e9, rel=0.02) and r18 / 2 == pytest.approx(1.81e9, rel=0.02)
    # VGGish examples every 0.5 s at 30 steps/s cost 1/15 of one per step; a network-free extractor costs nothing
    per_step = rows._backbone_step_flops(ExtractorSpec(name="vggish", params={"hop": 0.0}), 30.0)
    hop = rows._backbone_step_flops(ExtractorSpec(name="vggish", params={"hop": 0.5}), 30.0)
    assert per_step > 0 and hop == pytest.approx(per_step / 15)
    assert rows._backbone_step_flops(ExtractorSpec(name="face_hog"), 30.0) == 0.0


def test_recurrent_layers_are_counted(rows):
    cfg = load_config("dlstm_att/table1_audio_dlstm")
    lstm_only = rows._fusion_window_flops(cfg, 128, 512)
    # the audio DLSTM: 2 LSTM layers of hidden 32 on 128-d input, then a linear 32 -> 2, per step of the window
    h, d, steps = 32, 128, cfg.training.window
    want = 2 * steps * 4 * h * ((d + h) + (h + h)) + 2 * steps * h * 2
    assert lstm_only == pytest.approx(want, rel=0.05)
