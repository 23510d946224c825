"""The authors' models end to end: ``convert-official`` records the authors' preprocessing (one step per
non-overlapping 8-frame clip, R3D-18's 512 x 7 x 7 map flattened channel-major, the RJA spectrogram front end), and
``predict`` runs a converted model on a video. Checked against an independent computation (torchvision's R3D-18
called directly on clips built here, the official module on windows cut here), with random backbone weights
saved as files like the authors' would be."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from shareddata import GOLDEN_OFFICIAL, require, torchvision_reference

from avaffect.cli.main import main
from avaffect.data.folder import recording_from_video
from avaffect.errors import AvaffectError
from avaffect.features.extractors.base import get_extractor
from avaffect.features.faces import load_face_crops
from avaffect.features.faces.pipeline import FacePipeline
from avaffect.models.official import CAMSizes, build_official, convert_official, load_converted
from avaffect.workflows.predict import Predictor, PredictorOptions

L = 8  # a short window (the released models use L = 300 clips' worth of sub-sequence; any L works the same)


@pytest.fixture(scope="module")
def authors_files(tmp_path_factory):
    """An authors'-layout checkpoint at the released sizes (D = 512, 49 regions) and two backbone files, all
    random: the wiring is what is tested, not the numbers."""
    torchvision = torchvision_reference()
    d = tmp_path_factory.mktemp("authors")
    torch.manual_seed(0)
    model = build_official("rja_icassp23", CAMSizes(dim=512, head_hidden=32, length=L, iterations=2)).eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, d / "rja.pth.tar")
    r3d = torchvision.models.video.r3d_18(weights=None).eval()
    torch.save(r3d.state_dict(), d / "r3d.pth")
    audio = get_extractor("spec_resnet18", allow_random=True)
    torch.save(audio.network().state_dict(), d / "audio.pth")
    return d, model, r3d


@pytest.fixture(scope="module")
def converted(authors_files, tmp_path_factory):
    d, _, _ = authors_files
    out = tmp_path_factory.mktemp("converted")
    assert main(["convert-official", str(d / "rja.pth.tar"), "--variant", "rja_icassp23", "--out", str(out),
                 "--audio-weights", str(d / "audio.pth"), "--video-weights", str(d / "r3d.pth")]) == 0
    assert (out / "backbones" / "video_r3d18.pth").is_file() and (out / "backbones" / "audio_resnet18.pth").is_file()
    return out / "model.safetensors"


def test_spatial_map_is_the_last_conv_map_flattened_channel_major(authors_files):
    _, _, r3d = authors_files
    ex = get_extractor("r2plus1d18_clip", arch="r3d_18", spatial_map=True, allow_random=True)
    assert ex.dim == 512 * 49
    net = ex.network()
    net.load_state_dict({k: v for k, v in r3d.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 8, 112, 112)
    with torch.no_grad():
        fmap = r3d.layer4(r3d.layer3(r3d.layer2(r3d.layer1(r3d.stem(x)))))  # [2, 512, 1, 7, 7]
        flat = net(x)
    assert fmap.shape == (2, 512, 1, 7, 7)
    c, y, xx = 37, 5, 2
    assert torch.allclose(flat[:, c * 49 + y * 7 + xx], fmap[:, c, 0, y, xx], atol=1e-5)
    assert torch.allclose(flat, fmap.mean(2).reshape(2, -1), atol=1e-5)


@pytest.mark.slow
def test_predict_runs_a_converted_authors_model_as_computed_independently(authors_files, converted, crema_d,
                                                                          tmp_path):
    _, model, r3d = authors_files
    clip = sorted(crema_d.glob("*.flv"))[0]
    out = tmp_path / "pred"
    assert main(["predict", str(converted), str(clip), "--out", str(out)]) == 0
    csv = pd.read_csv(out / f"{clip.stem}.csv")
    summary = json.loads((out / f"{clip.stem}.json").read_text())
    assert summary["model"] == "official:rja_icassp23" and summary["trained_on"] == "authors:rja_icassp23"
    assert "authors' own fine-tuned backbone" in summary["meaning"]

    # the independent computation: clips of 8 frames ending at frames 7, 15, ..., (last frame)
    rec = recording_from_video(clip)
    n = rec.num_steps
    ends = np.minimum(np.arange(7, n + 7, 8), n - 1)
    t = load_face_crops(rec, FacePipeline())
    crops, mask = t.crops, t.crop_present
    # pm1 normalisation; a frame without a face is a blank (black) image, -1 after it
    frames = np.where(mask[:, None, None, None], crops, 0).astype(np.float32) / 127.5 - 1.0
    clips = []
    for e in ends:
        idx = range(e - 7, e + 1)
        clips.append(np.stack([frames[i] if i >= 0 else np.full_like(frames[0], -1.0) for i in idx]))
    x = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3)  # [C, 3, 8, 112, 112]
    with torch.no_grad():
        fmap = r3d.layer4(r3d.layer3(r3d.layer2(r3d.layer1(r3d.stem(x)))))
    video = fmap.mean(2).reshape(len(ends), -1).numpy()
    clip_face = np.array([mask[i:i + 8].any() for i in range(0, n, 8)])
    video[~clip_face] = 0.0
    audio_ex = get_extractor("spec_resnet18", weights=str(converted.parent / "backbones" / "audio_resnet18.pth"))
    audio = audio_ex.extract(dataclasses.replace(rec, times=rec.times[ends], labels=rec.labels[ends],
                                                 face_mask=rec.face_mask[ends], extra={}))
    # windows of L clips every L clips, the last one end-aligned (docs/design.md §2: no padding where the video
    # is longer than a window), overlapping predictions averaged
    c = len(ends)
    starts = sorted(set(list(range(0, c - L + 1, L)) + [c - L])) if c > L else [0]
    total, count = np.zeros((c, 2)), np.zeros(c)
    for s in starts:
        k = min(L, c - s)
        a = np.zeros((L, 512), np.float32)
        v = np.zeros((L, 512 * 49), np.float32)
        m = np.zeros(L, bool)
        a[:k], v[:k], m[:k] = audio[s:s + k], video[s:s + k], True
        with torch.no_grad():
            y = model(torch.from_numpy(a)[None], torch.from_numpy(v)[None], torch.from_numpy(m)[None])[0]
        total[s:s + k] += y[:k].numpy()
        count[s:s + k] += 1
    preds = [total / count[:, None]]
    expected = np.concatenate(preds)[np.arange(n) // 8]
    assert len(csv) == n and csv["face_detected"].to_numpy().tolist() == mask.tolist()
    np.testing.assert_allclose(csv[["valence", "arousal"]].to_numpy(), expected, atol=2e-4)


@pytest.mark.slow
@pytest.mark.parametrize("detect_every", [None, 4])
def test_the_streamed_authors_path_equals_the_whole_video_one(converted, crema_d, monkeypatch, detect_every):
    """One decode, chunks of 2 clips (16 frames) with the clip's 7 frames of context before each: the same
    per-frame values and faces as holding every crop of the video first (also with ``--detect-every``)."""
    clip = sorted(crema_d.glob("*.flv"))[1]
    whole = Predictor(converted, PredictorOptions(stream=False, detect_every=detect_every))(clip)
    monkeypatch.setattr(Predictor, "CLIP_CHUNK", 2)
    streamed = Predictor(converted, PredictorOptions(detect_every=detect_every))(clip)
    assert streamed.summary.streamed and not whole.summary.streamed
    assert streamed.summary.detect_every == whole.summary.detect_every == (detect_every or 1)
    assert streamed.summary.frames > 3 * 16  # several chunks
    np.testing.assert_array_equal(streamed.frame["face_detected"], whole.frame["face_detected"])
    np.testing.assert_allclose(streamed.frame[["valence", "arousal"]], whole.frame[["valence", "arousal"]], atol=1e-5)
    np.testing.assert_allclose(streamed.boxes, whole.boxes, equal_nan=True)
    assert {"decode", "detect", "features"} <= set(streamed.summary.timings_s.stages)


def test_without_the_backbone_files_predict_says_which_file_and_where(authors_files, tmp_path, monkeypatch):
    d, _, _ = authors_files
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    dst = convert_official(d / "rja.pth.tar", "rja_icassp23", tmp_path / "conv")
    with pytest.raises(AvaffectError, match=r"r3d_18-b3b3357e\.pth|resnet18-f37072fd\.pth"):
        Predictor(dst)
    with pytest.raises(AvaffectError, match="not found"):
        convert_official(d / "rja.pth.tar", "rja_icassp23", tmp_path / "c2", video_weights=tmp_path / "nope.pth")


def test_the_golden_authors_modules_convert_and_predict_explains_their_sizes(tmp_path):
    golden = torch.load(require(GOLDEN_OFFICIAL, "the golden official outputs"), weights_only=True)
    entry = golden["rja_icassp23"]
    torch.save(entry["state_dict"], tmp_path / "golden.pt")
    dst = convert_official(tmp_path / "golden.pt", "rja_icassp23", tmp_path / "conv")
    module = load_converted(dst)  # the converted golden module still gives the authors' outputs
    with torch.no_grad():
        y = module(entry["audio"], entry["video"])
    assert torch.allclose(y, torch.stack([entry["valence"], entry["arousal"]], dim=-1), atol=1e-5)
    with pytest.raises(AvaffectError, match="records no preprocessing"):  # D = 32: not the released inputs
        Predictor(dst)


def test_evaluate_still_refuses_a_converted_model_and_says_what_runs_it(converted):
    from avaffect.models.checkpoint import load_checkpoint

    with pytest.raises(AvaffectError, match=r"format 'avaffect-official-1', expected 'avaffect-checkpoint-1'.*predict"):
        load_checkpoint(converted)
