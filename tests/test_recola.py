"""The RECOLA / AVEC 2016 reader and its ARFF reader on small fixtures in the real on-disk layout."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest

from avaffect.data.datasets import load_dataset
from avaffect.data.recola import load_recola, read_arff, read_gold_standard
from avaffect.errors import DataError

SR = 16000


def write_wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * SR)
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / SR) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(x.tobytes())
    return path


def write_mp4(path: Path, n_frames: int, fps: int = 25) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i % 256, np.uint8), format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
    return path


def write_arff(path: Path, name: str, values, step: float = 0.04, comment: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["% gold standard (AVEC 2016)" if comment else "", "@relation GoldStandard", "",
             "@attribute Instance_name string", "@attribute frameTime numeric", "@attribute GoldStandard numeric",
             "", "@data", ""]
    lines += [f"'{name}',{i * step:.2f},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_recola(root: Path, n: int = 51) -> Path:
    """train_1, train_2 (audio only), dev_1 with labels; test_1 with media only. 2 s = 51 label steps."""
    rng = np.random.default_rng(0)
    for name in ("train_1", "train_2", "dev_1", "test_1"):
        write_wav(root / "recordings_audio" / f"{name}.wav", (n - 1) * 0.04)
        if name != "train_2":
            write_mp4(root / "recordings_video" / f"{name}.mp4", n - 1)
        if not name.startswith("test"):
            for dim in ("valence", "arousal"):
                vals = np.round(rng.uniform(-0.5, 0.5, n), 4).astype(str).tolist()
                vals[3] = "?"
                write_arff(root / "ratings_gold_standard" / dim / f"{name}.arff", name, vals)
    return root


@pytest.fixture(scope="module")
def recola_root(tmp_path_factory) -> Path:
    return make_recola(tmp_path_factory.mktemp("recola"))


def test_reads_splits_timeline_and_labels(recola_root):
    recs = {r.name: r for r in load_recola(recola_root)}
    assert list(recs) == ["train_1", "train_2", "dev_1", "test_1"]
    r = recs["train_1"]
    assert r.split == "train" and r.subject == "train_1" and r.num_steps == 51
    np.testing.assert_allclose(r.times, np.arange(51) * 0.04, atol=1e-9)
    assert r.fps == pytest.approx(25.0)
    assert r.label_mask.sum() == 50 and not r.label_mask[3]
    v_times, v = read_gold_standard(recola_root / "ratings_gold_standard/valence/train_1.arff")
    np.testing.assert_allclose(r.labels[:, 0], v, equal_nan=True)
    assert r.audio_path.name == "train_1.wav" and r.video_path.name == "train_1.mp4"
    assert recs["train_2"].video_path is None and recs["train_2"].audio_path.name == "train_2.wav"
    assert recs["dev_1"].split == "validation"
    t = recs["test_1"]
    assert t.split == "test" and not t.has_labels and t.num_steps == 51  # 25 Hz over the 2 s media
    assert [r.name for r in load_dataset("recola", recola_root, splits=("validation",))] == ["dev_1"]


def test_arff_reader_quoted_names_comments_missing(tmp_path):
    p = tmp_path / "x.arff"
    p.write_text("% a comment\n@RELATION 'my rel'\n@attribute 'frame Time' numeric\n@attribute lab {a,b}\n"
                 "@attribute v REAL\n@data\n% mid comment\n0.0,'a',0.5\n0.04,\"b\",?\n")
    arff = read_arff(p)
    assert arff.relation == "my rel" and [a for a, _ in arff.attributes] == ["frame Time", "lab", "v"]
    assert arff.columns["lab"] == ["a", "b"]
    np.testing.assert_allclose(arff.column("V"), [0.5, np.nan])


@pytest.mark.parametrize("text,match", [
    ("@relation r\n@attribute frameTime numeric\n@attribute GoldStandard numeric\n@data\n0.0,0.1,0.3\n",
     "3 values but 2 attributes"),
    ("@relation r\n@attribute frameTime numeric\n@attribute GoldStandard numeric\n@data\n0.0,abc\n",
     "not a number"),
    ("@relation r\n@attribute frameTime numeric\n@attribute Other numeric\n@data\n0.0,0.1\n", "GoldStandard"),
    ("@relation r\n@attribute frameTime numeric\n@attribute GoldStandard numeric\n@data\n0.0,1.5\n", "outside"),
    ("@relation r\n@attribute frameTime numeric\n@attribute GoldStandard numeric\n@data\n0.04,0.1\n0.0,0.1\n",
     "does not increase"),
    ("@relation r\n@attribute frameTime numeric\n@attribute GoldStandard numeric\n", "no @data"),
])
def test_malformed_gold_standard_names_file(tmp_path, text, match):
    p = tmp_path / "bad.arff"
    p.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        read_gold_standard(p)
    assert "bad.arff" in str(e.value)


def test_valence_arousal_disagree_names_both_files(tmp_path):
    root = make_recola(tmp_path, n=11)
    write_arff(root / "ratings_gold_standard/arousal/train_1.arff", "train_1", [0.1] * 10)
    with pytest.raises(DataError, match="rows but the arousal file") as e:
        load_recola(root, check_media=False)
    assert "valence/train_1.arff" in str(e.value) and "arousal/train_1.arff" in str(e.value)
    write_arff(root / "ratings_gold_standard/arousal/train_1.arff", "train_1", [0.1] * 11, step=0.05)
    with pytest.raises(DataError, match="frameTime") as e:
        load_recola(root, check_media=False)
    assert "arousal/train_1.arff" in str(e.value)


def test_collects_every_problem_with_on_error(tmp_path):
    root = make_recola(tmp_path, n=11)
    (root / "ratings_gold_standard/arousal/dev_1.arff").unlink()  # valence without arousal
    write_wav(root / "recordings_audio/session3.wav", 0.4)  # no split in the name
    write_arff(root / "ratings_gold_standard/valence/train_9.arff", "train_9", [0.0] * 11)  # no media
    write_arff(root / "ratings_gold_standard/arousal/train_9.arff", "train_9", [0.0] * 11)
    (root / "recordings_video/train_1.mp4").write_bytes(b"not a video")
    errors = []
    recs = load_recola(root, on_error=errors.append)
    assert sorted(r.name for r in recs) == ["test_1", "train_2"]
    text = "\n".join(map(str, errors))
    assert len(errors) == 4
    assert "without its arousal file" in text and "cannot tell the split" in text
    assert "neither audio nor video" in text and "train_1.mp4" in text
    with pytest.raises(DataError):
        load_recola(root)


def test_labels_longer_than_media(tmp_path):
    root = make_recola(tmp_path, n=11)
    for dim in ("valence", "arousal"):
        write_arff(root / f"ratings_gold_standard/{dim}/train_1.arff", "train_1", [0.0] * 100)
    with pytest.raises(DataError, match="labels run to"):
        load_recola(root, splits=("train",))
    assert len(load_recola(root, splits=("train",), check_media=False)) == 2


def test_empty_root(tmp_path):
    with pytest.raises(DataError, match="no RECOLA recording"):
        load_recola(tmp_path)


def test_recola_without_its_media_reads_the_timelines_of_a_feature_store(recola_root, tmp_path):
    """Extracted where the media are, then read from the gold standard and the store alone (test recordings from
    the store's index): the same timelines and labels."""
    import shutil

    from avaffect.cli.main import main
    from avaffect.features.store import FeatureStore

    store = tmp_path / "store"
    # train_2 has no video: its face features fail (exit 1), its audio features and its timeline are stored
    assert main(["extract", str(recola_root), "--dataset", "recola", "--out", str(store), "-q"]) == 1
    bare = tmp_path / "bare"
    shutil.copytree(recola_root / "ratings_gold_standard", bare / "ratings_gold_standard")
    index = FeatureStore(store).timelines
    full = {r.name: r for r in load_recola(recola_root)}
    got = {r.name: r for r in load_dataset("recola", bare, timelines=index)}
    assert list(got) == list(full) == ["train_1", "train_2", "dev_1", "test_1"]
    for name, rec in got.items():
        assert rec.stored is not None and rec.audio_path is None and rec.split == full[name].split
        for field in ("times", "labels", "face_mask"):
            np.testing.assert_array_equal(getattr(rec, field), getattr(full[name], field))
    index.path("dev_1").unlink()
    with pytest.raises(DataError, match="neither audio nor video here") as err:
        load_recola(bare, timelines=index)
    assert "'dev_1'" in str(err.value) and "avaffect extract" in str(err.value)
