"""Neural extractors: public parameter names, weight loading from a local file, shapes, zeros, alignment.

Weights are random (saved in the public naming to a temp file): nothing is ever downloaded.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.io import wavfile
from shareddata import torchvision_reference

from avaffect.data.recording import Recording
from avaffect.errors import AvaffectError, ConfigError
from avaffect.features import weights as W
from avaffect.features.backbones.base import gather_windows, window_starts
from avaffect.features.backbones.nets import resnet_features, video_resnet_features
from avaffect.features.backbones.vggish import VGGISH_PARAMETER_NAMES, VGGish, vggish_examples
from avaffect.features.backbones.video import clip_indices
from avaffect.features.extractors import get_extractor, list_extractors
from avaffect.features.faces.crops import face_crops
from avaffect.features.faces.pipeline import FacePipeline

T, FPS, SR = 12, 25.0, 16000
NO_FACE = (0, 7)


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Recording:
    root = tmp_path_factory.mktemp("bb_rec")
    crops = root / "crops"
    crops.mkdir()
    rng = np.random.default_rng(1)
    mask = np.ones(T, bool)
    mask[list(NO_FACE)] = False
    yy, xx = np.mgrid[:64, :64]
    for i in np.flatnonzero(mask):
        img = 120 + 60 * np.sin(xx / (4 + i % 3))[..., None] * np.cos(yy / 6)[..., None] + rng.normal(0, 8, (64, 64, 3))
        cv2.imwrite(str(crops / f"{i + 1:05d}.jpg"), img.clip(0, 255).astype(np.uint8))
    t = np.arange(int(1.5 * SR)) / SR
    audio = 0.3 * np.sin(2 * np.pi * (150 + 200 * t) * t) * (t > 0.2) + 0.01 * rng.normal(size=len(t))
    wavfile.write(root / "audio.wav", SR, (audio * 32767).astype(np.int16))
    return Recording(
        name="bb", times=np.arange(T) / FPS, labels=np.zeros((T, 2), np.float32), face_mask=mask,
        audio_path=root / "audio.wav", crops_dir=crops, fps=FPS,
    )


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w18") / "resnet18-random.pth"
    torch.manual_seed(1)
    # torchvision's naming (our network's, tests/test_nets.py), incl. a classifier and a 3-channel conv1
    state = {**resnet_features("resnet18").state_dict(), "fc.weight": torch.zeros(1000, 512),
             "fc.bias": torch.zeros(1000)}
    # like torchvision's older ImageNet files: no BatchNorm num_batches_tracked entries
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    return path


@pytest.fixture(scope="module")
def vggish_random():
    ex = get_extractor("vggish", allow_random=True, device="cpu", batch_size=16)
    ex.network()
    return ex


def _check(feats: np.ndarray, dim: int, zero_rows=NO_FACE) -> None:
    assert feats.shape == (T, dim) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    assert sorted(np.flatnonzero(~feats.any(axis=1))) == sorted(zero_rows)


def test_registry_knows_backbones():
    names = set(list_extractors())
    assert {"vggish", "spec_resnet18", "resnet18_face", "resnet50_face", "r2plus1d18_clip", "egemaps"} <= names
    assert "vggish" in list_extractors("audio") and "resnet50_face" in list_extractors("video")
    dims = {n: get_extractor(n).dim for n in ("vggish", "spec_resnet18", "resnet18_face", "resnet50_face")}
    assert dims == {"vggish": 128, "spec_resnet18": 512, "resnet18_face": 512, "resnet50_face": 2048}
    assert get_extractor("resnet18_face", spatial=7).dim == 49 * 512
    assert get_extractor("r2plus1d18_clip").dim == 512 and get_extractor("egemaps").dim == 25


def test_identity_ignores_runtime_params():
    a = get_extractor("resnet18_face")
    assert a.id == get_extractor("resnet18_face", device="cpu", batch_size=3).id
    ids = {w: get_extractor("resnet18_face", weights=w).id for w in ("/a/x.pth", "/b/x.pth", "/a/y.pth")}
    assert ids["/a/x.pth"] == ids["/b/x.pth"] != ids["/a/y.pth"]  # the file name counts, not its folder
    assert get_extractor("resnet18_face", allow_random=True).id != a.id
    for bad in ({"batch_size": 0}, {"resize": "stretch"}, {"context": "sideways"}, {"input_size": 8}):
        name = "vggish" if "context" in bad else "resnet18_face"
        with pytest.raises(ConfigError):
            get_extractor(name, **bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            get_extractor("resnet18_face", device="cuda", allow_random=True).network()


def test_vggish_parameter_names_match_the_port():
    with torch.device("meta"):
        net = VGGish()
    state = net.state_dict()
    assert tuple(state) == VGGISH_PARAMETER_NAMES
    assert tuple(state["features.0.weight"].shape) == (64, 1, 3, 3)
    assert tuple(state["features.13.weight"].shape) == (512, 512, 3, 3)
    assert tuple(state["embeddings.0.weight"].shape) == (4096, 512 * 24)
    assert tuple(state["embeddings.4.weight"].shape) == (128, 4096)


def test_vggish_examples_and_windows():
    logmel = np.repeat(np.arange(300, dtype=np.float32)[:, None], 64, axis=1)
    ex = vggish_examples(logmel, np.array([0.0, 0.5, -0.2, 2.5]))
    assert ex.shape == (4, 96, 64)
    assert ex[0, :, 0].tolist() == list(range(96)) and ex[1, 0, 0] == 50
    assert np.allclose(ex[2, :20, 0], np.log(0.01)) and ex[2, 20, 0] == 0  # before the audio: silence
    assert ex[3, 49, 0] == 299 and np.allclose(ex[3, 50:, 0], np.log(0.01))  # past the end: silence
    t = np.array([1.0])
    assert window_starts(t, 0.96, "causal")[0] == pytest.approx(0.04)
    assert window_starts(t, 0.96, "forward")[0] == 1.0 and window_starts(t, 0.96, "centered")[0] == pytest.approx(0.52)
    g = gather_windows(np.arange(5.0)[:, None], np.array([-2, 3]), 3, -1.0)
    assert g[:, :, 0].tolist() == [[-1, -1, 0], [3, 4, -1]]


def test_vggish_extract_contexts_hop_and_pca(rec, vggish_random, tmp_path):
    feats = vggish_random.extract(rec)
    _check(feats, 128, zero_rows=())
    variants = {}
    for kw in ({"context": "causal"}, {"hop": 0.24}, {"hop": 0.24, "context": "centered"}):
        ex = get_extractor("vggish", allow_random=True, batch_size=16, **kw)
        ex._net = vggish_random.network()  # same seed-0 random network: skip rebuilding it
        variants[str(kw)] = ex.extract(rec)
        assert variants[str(kw)].shape == (T, 128) and np.isfinite(variants[str(kw)]).all()
    assert not np.allclose(variants["{'context': 'causal'}"], feats)
    # examples start at 0, 0.24, 0.48 s; forward: a step takes the first example starting at or after it
    hop = variants["{'hop': 0.24}"]
    assert np.allclose(hop[0], feats[0], atol=1e-5) and np.allclose(hop[6], feats[6], atol=1e-5)
    assert all(np.array_equal(hop[i], hop[6]) for i in range(1, 7))
    assert all(np.array_equal(hop[i], hop[7]) for i in range(7, T)) and not np.allclose(hop[6], hop[7])

    pca = tmp_path / "pca.pth"
    torch.save({"pca_eigen_vectors": torch.eye(128) * 50.0, "pca_means": torch.zeros(128, 1)}, pca)
    for quantize in (False, True):
        ex = get_extractor("vggish", allow_random=True, pca_params=str(pca), quantize=quantize)
        ex._net = vggish_random.network()
        out = ex.extract(rec)
        if quantize:
            assert out.min() >= 0 and out.max() <= 255 and np.array_equal(out, np.round(out))
        else:
            assert np.allclose(out, np.clip(50.0 * feats, -2, 2), atol=1e-4)
    torch.save({"pca_eigen_vectors": torch.eye(3), "pca_means": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(AvaffectError, match="wrong shape"):
        get_extractor("vggish", allow_random=True, pca_params=str(tmp_path / "bad.pth")).pca()
    with pytest.raises(ConfigError):
        get_extractor("vggish", quantize=True)


def test_vggish_weights_from_cache_and_path(rec, vggish_random, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("AVAFFECT_HOME", str(home))
    with pytest.raises(AvaffectError) as err:  # nothing there: say what to download, where, and the weights parameter
        get_extractor("vggish").extract(rec)
    target = home / "weights" / "vggish-10086976.pth"
    msg = str(err.value)
    assert W.WEIGHTS["vggish"].source.url in msg and str(target) in msg and "params.weights" in msg

    target.parent.mkdir(parents=True)
    state = {k: v.half() for k, v in vggish_random.network().state_dict().items()}  # fp16: half the disk
    assert tuple(state) == VGGISH_PARAMETER_NAMES
    torch.save(state, target)
    reference = vggish_random.extract(rec)
    for ex in (get_extractor("vggish"), get_extractor("vggish", weights=str(target))):
        out = ex.extract(rec)
        _check(out, 128, zero_rows=())
        assert np.allclose(out, reference, rtol=0.02, atol=0.02 * np.abs(reference).max())
        assert ex.network().features[0].weight.dtype == torch.float32


def test_spec_resnet18(rec, resnet18_file):
    ex = get_extractor("spec_resnet18", weights=str(resnet18_file), batch_size=8)
    feats = ex.extract(rec)
    _check(feats, 512, zero_rows=())
    conv1 = torch.load(resnet18_file, weights_only=True)["conv1.weight"]
    assert torch.allclose(ex.network().conv1.weight, conv1.sum(dim=1, keepdim=True))  # RGB kernels summed
    fwd = get_extractor("spec_resnet18", weights=str(resnet18_file), context="forward")
    fwd._net = ex.network()
    assert not np.allclose(fwd.extract(rec), feats)
    assert not np.allclose(feats[0], feats[-1])


def test_resnet18_face_pooled_spatial_and_pickle(rec, resnet18_file):
    ex = get_extractor("resnet18_face", weights=str(resnet18_file), crop_size=64, input_size=64, batch_size=4)
    pooled = ex.extract(rec)
    _check(pooled, 512)
    sp = get_extractor("resnet18_face", weights=str(resnet18_file), crop_size=64, input_size=64, spatial=2)
    maps = sp.extract(rec)  # 64 px → a 2 x 2 layer4 map: the region mean is the global pool
    _check(maps, 4 * 512)
    assert np.allclose(maps.reshape(T, 4, 512).mean(axis=1), pooled, atol=1e-4)
    clone = pickle.loads(pickle.dumps(ex))  # picklable with the network built; the network is rebuilt lazily
    assert "_net" not in clone.__dict__ and clone.id == ex.id
    with pytest.raises(AvaffectError, match="do not match"):
        get_extractor("resnet50_face", weights=str(resnet18_file)).network()
    # missing faces as black frames through the network (ABAW6/8) instead of zero features
    black = get_extractor("resnet18_face", weights=str(resnet18_file), crop_size=64, input_size=64, batch_size=4,
                          missing_face="black_frame")
    assert black.id != ex.id and ex.id == get_extractor("resnet18_face", weights=str(resnet18_file), crop_size=64,
                                                         input_size=64, batch_size=4, missing_face="zeros").id
    on_black = black.extract(rec)
    _check(on_black, 512, zero_rows=())
    np.testing.assert_allclose(on_black[list(NO_FACE)[0]], on_black[list(NO_FACE)[1]], atol=1e-5)
    face = [i for i in range(T) if i not in NO_FACE]
    np.testing.assert_allclose(on_black[face], pooled[face], atol=1e-5)


def test_resnet50_face_abaw_crops(rec, tmp_path):
    path = tmp_path / "resnet50.safetensors"
    from safetensors.torch import save_file

    save_file(resnet_features("resnet50").state_dict(), str(path))
    ex = get_extractor("resnet50_face", weights=str(path))  # 48 px crops → 40 px centre crop (ABAW)
    assert ex.params["crop_size"] == 48 and ex.params["input_size"] == 40
    _check(ex.extract(rec), 2048)


def test_r2plus1d18_clip(rec, tmp_path):
    path = tmp_path / "r2p1d.pth"
    torch.save({"state_dict": video_resnet_features("r2plus1d_18").state_dict()}, path)  # a wrapped checkpoint
    ex = get_extractor("r2plus1d18_clip", weights=str(path), crop_size=32, input_size=32, batch_size=4)
    feats = ex.extract(rec)
    _check(feats, 512)
    idx = clip_indices(5, 3, 1, "causal")
    assert idx[0].tolist() == [-1, -1, 0] and idx[4].tolist() == [2, 3, 4]
    assert clip_indices(5, 3, 2, "centered")[2].tolist() == [0, 2, 4]
    assert clip_indices(5, 2, 1, "forward")[4].tolist() == [4, -1]
    # the crops a streamed chunk carries around its steps: the clip's reach
    for context, stride, want in (("causal", 1, (2, 0)), ("forward", 1, (0, 2)), ("centered", 2, (2, 2))):
        reach = get_extractor("r2plus1d18_clip", clip_len=3, frame_stride=stride, context=context).crop_context()
        assert reach == want, (context, reach)
    assert get_extractor("r2plus1d18_clip", clip_len=4, context="centered").crop_context() == (2, 1)
    assert ex.crop_request(rec) is None  # a crops folder: nothing to stream


def test_face_crops_read_the_crops_folder(rec):
    crops, mask = face_crops(rec, FacePipeline(crop_size=32))
    assert crops.shape == (T, 32, 32, 3) and mask.tolist() == rec.face_mask.tolist()
    assert not crops[list(NO_FACE)].any() and crops[1].any()


def _fake_opensmile(n_lld: int = 25):
    class Smile:
        def __init__(self, feature_set, feature_level):
            self.feature_set = feature_set

        def process_signal(self, signal, sampling_rate):
            n = 1 + (len(signal) - int(0.02 * sampling_rate)) // int(0.01 * sampling_rate)
            start = pd.to_timedelta(np.arange(n) * 0.01, unit="s")
            end = start + pd.to_timedelta(0.02, unit="s")
            centre = np.arange(n) * 0.01 + 0.01
            values = np.repeat(centre[:, None], n_lld, axis=1)
            values[3, 0] = np.nan
            return pd.DataFrame(values, index=pd.MultiIndex.from_arrays([start, end], names=["start", "end"]))

    names = ["eGeMAPSv02", "eGeMAPSv01b", "GeMAPSv01b", "ComParE_2016"]
    return types.SimpleNamespace(
        Smile=Smile,
        FeatureSet=types.SimpleNamespace(**{n: n for n in names}),
        FeatureLevel=types.SimpleNamespace(LowLevelDescriptors="lld"),
    )


def test_egemaps_optional_extra(rec, monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)
    with pytest.raises(AvaffectError, match=r"pip install 'avaffect\[opensmile\]'"):
        get_extractor("egemaps").extract(rec)

    monkeypatch.setitem(sys.modules, "opensmile", _fake_opensmile())
    feats = get_extractor("egemaps", window=0.03, context="centered").extract(rec)
    assert feats.shape == (T, 25) and np.isfinite(feats).all()
    # each LLD frame's value is its own centre time: the centred window average is the step time
    assert np.allclose(feats[2:, 1], rec.times[2:], atol=1e-6)
    both = get_extractor("egemaps", std=True, context="causal").extract(rec)
    assert both.shape == (T, 50) and (both[:, 25:] >= 0).all()
    assert np.all(both[3:, 1] <= rec.times[3:] + 1e-9)  # causal: only frames up to the step


def _vgg16_reference():
    """torchvision's own VGG-16 convolution stack (config "D"), the independent reference for vggface_face."""
    vgg = torchvision_reference("torchvision.models.vgg")

    torch.manual_seed(3)
    return vgg.make_layers(vgg.cfgs["D"]).eval()  # ... conv5_3, ReLU, pool5 (index 30)


def test_vggface_face_is_vgg16_conv5_3_in_either_naming(rec, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))  # an empty cache: the default file is missing
    ref = _vgg16_reference()
    tv_state = {f"features.{k}": v for k, v in ref.state_dict().items()}
    tv_path = tmp_path / "vgg16_tv.pth"
    torch.save({**tv_state, "classifier.0.weight": torch.zeros(2, 2)}, tv_path)  # torchvision naming + a classifier
    conv = [i for i, m in enumerate(ref) if isinstance(m, torch.nn.Conv2d)]
    names = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]
    dag = {f"{nm}.{p}": ref[i].state_dict()[p] for nm, i in zip(names, conv, strict=True) for p in ("weight", "bias")}
    dag_path = tmp_path / "vgg_face_dag.safetensors"
    from safetensors.torch import save_file

    save_file({**dag, "fc8.weight": torch.zeros(3, 4)}, str(dag_path))  # the release's layer names, fc ignored

    ex = get_extractor("vggface_face", weights=str(tv_path), crop_size=64, input_size=64, batch_size=4)
    assert ex.dim == 512 and get_extractor("vggface_face", spatial=7).dim == 49 * 512
    feats = ex.extract(rec)
    _check(feats, 512)
    crops, mask = face_crops(rec, FacePipeline(crop_size=64))
    # the reference: 0-255 RGB minus VGG-Face's mean pixel, conv stack up to relu5_3 (pool5 left out), spatial mean
    mean = torch.tensor([129.186279296875, 104.76238250732422, 93.59396362304688]).view(1, 3, 1, 1)
    x = torch.from_numpy(crops[mask]).permute(0, 3, 1, 2).float() - mean
    with torch.no_grad():
        want = ref[:30](x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(feats[mask], want, rtol=1e-4, atol=1e-4)
    dag_feats = get_extractor("vggface_face", weights=str(dag_path), crop_size=64, input_size=64).extract(rec)
    np.testing.assert_allclose(dag_feats, feats, rtol=1e-5, atol=1e-5)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1_1.weight": dag["conv1_1.weight"]}, bad)
    with pytest.raises(AvaffectError, match="do not match.*conv1_1 ... conv5_3"):
        get_extractor("vggface_face", weights=str(bad)).network()
    with pytest.raises(AvaffectError) as err:  # the registered, user-supplied default
        get_extractor("vggface_face").network()
    msg = str(err.value)
    assert "vggface_vgg16.pth" in msg and "robots.ox.ac.uk/~vgg/software/vgg_face" in msg and "conv1_1" in msg


def test_r2plus1d18_clip_every_k_runs_every_kth_clip_and_shares_it(rec, tmp_path, monkeypatch):
    path = tmp_path / "r2p1d.pth"
    torch.save(video_resnet_features("r2plus1d_18").state_dict(), path)
    kw = {"weights": str(path), "crop_size": 32, "input_size": 32, "batch_size": 4}
    exact = get_extractor("r2plus1d18_clip", **kw)
    assert exact.id == get_extractor("r2plus1d18_clip", clip_every=1, **kw).id  # the old feature id
    every = get_extractor("r2plus1d18_clip", clip_every=3, **kw)
    assert every.id != exact.id
    with pytest.raises(ConfigError):
        get_extractor("r2plus1d18_clip", clip_every=0)
    seen = []
    real = type(every).run_batches

    def counting(self, inputs):
        seen.append(len(inputs))
        return real(self, inputs)

    monkeypatch.setattr(type(every), "run_batches", counting)
    full = exact.extract(rec)
    n_full = sum(seen)
    seen.clear()
    shared = every.extract(rec)
    faces = [i for i in range(T) if i not in NO_FACE]
    assert n_full == len(faces) and sum(seen) == len(faces[::3])
    _check(shared, 512)
    anchors = faces[::3]
    for pos, step in enumerate(faces):  # each face step has its nearest anchor's features
        anchor = anchors[min(round(pos / 3), len(anchors) - 1)]
        np.testing.assert_allclose(shared[step], full[anchor], atol=1e-5, rtol=1e-5)
