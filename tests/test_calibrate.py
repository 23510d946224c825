"""``avaffect calibrate``: labels onto frames, the fit raising the held-out CCC of labels that were delayed and
scaled, and the calibrated model that ``predict`` applies (and refuses for another checkpoint)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from avaffect.cli.main import main
from avaffect.evaluation.postprocess import PostProcessor, shift
from avaffect.workflows.calibrate import frame_labels
from avaffect.workflows.predict import load_predictor


def test_labels_go_onto_the_frames(tmp_path):
    times = np.arange(10) / 10
    f = tmp_path / "l.csv"
    f.write_text("time,valence,arousal\n0.0,0.1,0.2\n0.31,0.3,0.4\n0.9,0.5,0.6\n")
    y = frame_labels(f, times)
    assert y[0].tolist() == pytest.approx([0.1, 0.2]) and y[3].tolist() == pytest.approx([0.3, 0.4])
    assert np.isnan(y[1]).all() and y[9].tolist() == pytest.approx([0.5, 0.6])
    f.write_text("frame,valence,arousal\n2,0.1,0.2\n4,0.3,0.4\n")
    y = frame_labels(f, times)
    assert y[2, 0] == pytest.approx(0.1) and np.isnan(y[3]).all()
    t = tmp_path / "a.txt"
    t.write_text("valence,arousal\n" + "\n".join(["0.5,-0.5"] * 5 + ["-5,-5"] * 5) + "\n")
    y = frame_labels(t, times)
    assert y[0, 1] == pytest.approx(-0.5) and np.isnan(y[7]).all()


@pytest.mark.slow
def test_calibrate_raises_the_held_out_ccc_and_predict_applies_it(tiny_run, synth_root, tmp_path, capsys):
    video = sorted((synth_root / "videos").glob("*.mp4"))[0]
    ckpt = tiny_run / "model.safetensors"
    values = load_predictor(ckpt)(video).values(["valence", "arousal"])
    # labels that follow the model 12 frames later, at half its scale and 0.3 higher, with a little noise: a
    # delayed, scaled annotation of what the model sees
    noise = np.random.default_rng(0).normal(0, 1, values.shape) * 0.05 * values.std(axis=0)
    labels = np.clip(0.5 * shift(values, 12) + 0.3 + noise, -1, 1)
    f = tmp_path / "labels.csv"
    f.write_text("valence,arousal\n" + "\n".join(f"{a:.6f},{b:.6f}" for a, b in labels) + "\n")
    out = tmp_path / "calibrated"
    assert main(["calibrate", str(ckpt), str(video), "--labels", str(f), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "calibration.json").read_text())
    before, after = record["heldout_ccc"]["before"], record["heldout_ccc"]["after"]
    for t in ("valence", "arousal"):
        assert after[t] > before[t] + 0.5, (t, before, after)  # about 0 before: the offset and the scale
        assert f"{t}: CCC on the held-out 30% of each video" in printed
    assert all(abs(d - 12) <= 2 for d in record["postprocess"]["delay"].values()), record["postprocess"]
    # predict on the calibrated model: the chain applied to the model's values, said in the JSON
    run = load_predictor(out / "model.safetensors")(video)
    pp = PostProcessor.from_dict(record["postprocess"])
    np.testing.assert_allclose(run.values(["valence", "arousal"]), pp.apply(values), atol=1e-6)
    assert run.summary.as_json()["calibration"]["delay"] == record["postprocess"]["delay"]
    # a calibration fitted for another checkpoint is not applied
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    record["checkpoint_sha256"] = "0" * 64
    (other / "calibration.json").write_text(json.dumps(record))
    run = load_predictor(other / "model.safetensors")(video)
    np.testing.assert_array_equal(run.values(["valence", "arousal"]), values)
    assert "calibration" not in run.summary.as_json()


def test_calibrate_refuses_bad_requests_before_any_work(tmp_path):
    from avaffect.errors import AvaffectError
    from avaffect.workflows.calibrate import calibrate

    ckpt = tmp_path / "run" / "model.safetensors"
    with pytest.raises(AvaffectError, match="one label file per video"):
        calibrate(ckpt, [tmp_path / "a.mp4"], [], tmp_path / "out")
    with pytest.raises(AvaffectError, match="--holdout"):
        calibrate(ckpt, [tmp_path / "a.mp4"], [tmp_path / "a.csv"], tmp_path / "out", holdout=0.95)
    with pytest.raises(AvaffectError, match="own folder"):
        calibrate(ckpt, [tmp_path / "a.mp4"], [tmp_path / "a.csv"], tmp_path / "run")
