"""The run configuration is checked when it is read (before any expensive work), and the preprocessing spec
of a checkpoint is typed — including checkpoints written before it was."""

from __future__ import annotations

import json

import pytest
import torch

from avaffect.cli.features_cmds import worker_count
from avaffect.config import load_config, make_config
from avaffect.data.datasets import DATASET_NAMES, DATASETS
from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.extractors import EXTRACTORS, get_extractor
from avaffect.features.preprocessing_spec import PreprocessingSpec
from avaffect.models.checkpoint import FORMAT, load_checkpoint, read_checkpoint_meta, save_checkpoint
from avaffect.models.safetensors_io import write_tagged
from avaffect.models.wrapper import AVRegressor


def test_a_typo_in_model_params_fails_when_the_config_is_read(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: rjca\n  params:\n    hiden: 32\n")
    with pytest.raises(ConfigError, match="hiden"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown model 'rjcaa'"):
        make_config({"model": {"name": "rjcaa"}})


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_a_misspelled_extractor_param_fails_when_the_config_is_read_naming_the_allowed_keys(tmp_path, name):
    """#25 acceptance, for every registered extractor: the YAML is refused at read time, before any work."""
    cls = EXTRACTORS.get(name)
    first = next(iter(cls.Params.model_fields))
    path = tmp_path / "run.yaml"
    path.write_text(f"features:\n  {cls.modality}:\n    name: {name}\n    params:\n      {first}x: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{first}x" in message and str(path) in message
    assert all(key in message for key in cls.Params.model_fields), message  # the allowed keys, every one


def test_a_bad_extractor_value_fails_when_the_config_is_read():
    with pytest.raises(ConfigError, match=r"detect_every: Input should be greater than or equal to 1 \(got 0\)"):
        make_config({"features": {"video": {"name": "face_hog", "params": {"detect_every": 0}}}})
    with pytest.raises(ConfigError, match="block a multiple of cell"):
        make_config({"features": {"video": {"name": "face_hog", "params": {"block": 12}}}})
    with pytest.raises(ConfigError, match="unknown feature extractor 'hogg'"):
        make_config({"features": {"video": {"name": "hogg"}}})


def test_every_extractor_lists_its_typed_params_and_config_show_fills_them(capsys):
    from avaffect.cli.main import main

    assert main(["extractors"]) == 0
    out = capsys.readouterr().out
    for name in EXTRACTORS.names():
        cls = EXTRACTORS.get(name)
        assert f"{name} ({cls.modality}, dim " in out
        assert all(f"  {key} " in out for key in cls.Params.model_fields)
    assert "face_hog (video, dim 640)" in out and "detect_every   int >= 1" in out
    assert main(["config", "show"]) == 0
    import yaml

    shown = yaml.safe_load(capsys.readouterr().out)["features"]
    assert shown["video"]["params"]["detect_every"] == 1 and shown["audio"]["params"]["n_mels"] == 64


def test_model_sizes_must_agree_with_the_training_section():
    with pytest.raises(ConfigError, match="window_length=100 but training.window=300"):
        make_config({"model": {"name": "rjca", "params": {"window_length": 100}}})
    with pytest.raises(ConfigError, match="num_outputs=2"):
        make_config({"model": {"params": {"num_outputs": 2}}, "training": {"targets": ["arousal"]}})
    cfg = make_config({"model": {"name": "rjca"}, "training": {"window": 64, "targets": ["valence"]}})
    assert cfg.model_params() == {"num_outputs": 1, "window_length": 64}
    assert "window_length" not in make_config({"model": {"name": "concat"}}).model_params()


def test_dataset_names_come_from_the_dataset_table():
    assert set(DATASET_NAMES) == set(DATASETS) == {"affwild2", "synthetic", "recola", "manifest"}
    with pytest.raises(ConfigError, match="dataset"):
        make_config({"data": {"dataset": "affwild3"}})


def test_workers_zero_means_one_per_core(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 7)
    assert worker_count(0) == 7 and worker_count(3) == 3
    with pytest.raises(ConfigError):
        worker_count(-1)


def _model() -> AVRegressor:
    return AVRegressor("concat", 3, 4, {"hidden": 4, "head_hidden": 4})


def test_a_spec_written_before_the_face_pipeline_was_typed_still_loads():
    """Specs of version 2 stored ``faces: {source, detector, crop_size}``; they load into ``faces.pipeline``."""
    video = {"name": "face_hog", "params": {"crop_size": 64}, "id": ""}
    audio = {"name": "logmel_stats", "params": {}, "id": ""}
    old = {"version": 2, "audio_extractor": audio, "video_extractor": video, "window": 60, "hop": 30, "fps": 30.0,
           "targets": ["valence", "arousal"], "faces": {"source": "video", "detector": "yunet", "crop_size": 64}}
    spec = PreprocessingSpec.from_metadata(old)
    assert spec.faces.pipeline.detector == "yunet" and spec.faces.pipeline.crop_size == 64
    assert spec.faces.pipeline.detect_every == 1 and spec.faces.detector == "yunet"
    assert PreprocessingSpec.from_metadata(json.loads(spec.model_dump_json())) == spec


def test_one_face_pipeline_declares_every_face_setting():
    """#26: the face settings are declared (type, limits, description) in FacePipeline only; an extractor's
    Params take that declaration, and its face_pipeline() is built from them and checked there."""
    from avaffect.features.faces.pipeline import FacePipeline

    for name in EXTRACTORS.names():
        cls = EXTRACTORS.get(name)
        for key in set(cls.Params.model_fields) & set(FacePipeline.model_fields):
            ours, declared = cls.Params.model_fields[key], FacePipeline.model_fields[key]
            assert ours.description == declared.description and ours.metadata == declared.metadata, (name, key)
    with pytest.raises(ConfigError, match="detect_every"):
        make_config({"features": {"video": {"name": "resnet18_face", "params": {"detect_every": 0}}}})
    assert get_extractor("resnet50_face").face_pipeline() == FacePipeline(crop_size=48)


def test_spec_round_trips_typed(tmp_path):
    spec = PreprocessingSpec(audio_extractor={"name": "logmel_stats", "params": {"window": 1.0}, "id": "a-1"},
                             video_extractor={"name": "face_hog"}, faces={"source": "crops", "crop_size": 48},
                             window=60, hop=30, fps=30.0, targets=["valence"])
    path = save_checkpoint(tmp_path / "model.safetensors", _model(), spec)
    back = read_checkpoint_meta(path)["preprocessing"]
    assert back == spec and back.faces.source == "crops" and back.missing.no_audio == "training_mean"


def test_a_checkpoint_of_the_first_format_still_loads(tmp_path):
    """What main wrote before the spec was typed: an untyped dict, faces.source = cropped_aligned/detector."""
    model = _model()
    legacy = {"audio_extractor": {"name": "logmel_stats", "params": {}, "id": "logmel_stats-1"},
              "video_extractor": {"name": "face_hog", "params": {"crop_size": 64}, "id": "face_hog-2"},
              "faces": {"source": "cropped_aligned"}, "window": 300, "hop": 200, "fps": 30.0,
              "targets": ["valence", "arousal"]}
    meta = {"format": FORMAT, "avaffect_version": "0.1.0", "model": json.dumps(model.describe()),
            "preprocessing": json.dumps(legacy), "extra": "{}"}
    path = write_tagged(tmp_path / "old.safetensors", model.state_dict(), meta)
    loaded, meta = load_checkpoint(path)
    spec = meta["preprocessing"]
    assert spec.faces.source == "crops" and spec.faces.detector == "haar" and spec.faces.crop_size == 64
    assert (spec.window, spec.hop, spec.video_extractor.id) == (300, 200, "face_hog-2")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    legacy["faces"] = {"source": "detector"}
    assert PreprocessingSpec.from_metadata(legacy).faces.source == "video"


def test_a_broken_spec_names_the_checkpoint(tmp_path):
    with pytest.raises(AvaffectError, match="old.safetensors: invalid preprocessing spec"):
        PreprocessingSpec.from_metadata({"version": 2, "window": 0}, str(tmp_path / "old.safetensors"))


def test_missing_backbone_weights_are_listed_before_any_work(tmp_path, monkeypatch):
    from avaffect.training.run import train

    monkeypatch.setenv("AVAFFECT_HOME", str(tmp_path / "home"))
    cfg = make_config({"data": {"root": str(tmp_path / "nowhere")}, "features": {
        "audio": {"name": "vggish"}, "video": {"name": "resnet50_face"}}})
    with pytest.raises(AvaffectError) as e:
        train(cfg, tmp_path / "run", progress=False)
    msg = str(e.value)
    assert "vggish" in msg and "resnet50_face" in msg and "--weight-free" in msg and str(tmp_path / "home") in msg
    assert not (tmp_path / "run").exists()  # nothing written, nothing extracted
    free = cfg.weight_free()
    assert (free.features.audio.name, free.features.video.name) == ("logmel_stats", "face_hog")
    assert free.feature_pipeline().missing_weights() == []
    assert make_config({}).weight_free() == make_config({})


def test_config_show_prints_the_resolved_values(capsys, tmp_path):
    from avaffect.cli.main import main

    path = tmp_path / "row.yaml"
    path.write_text("training:\n  lr: 0.0001\n  warmup: {kind: linear, epochs: 5}\n")
    assert main(["config", "show", str(path), "--set", "training.batch_size=12"]) == 0
    import yaml

    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["training"]["lr"] == 1e-4 and shown["training"]["batch_size"] == 12
    assert shown["training"]["warmup"] == {"kind": "linear", "epochs": 5, "start_factor": 0.1}
    assert shown["model"]["name"] == "rjca" and "hop" in shown["training"]
    path.write_text("- a list\n")
    assert main(["config", "show", str(path)]) == 2
    assert "top level must be a mapping" in capsys.readouterr().err


def test_a_bad_command_line_value_is_blamed_on_the_command_line(tmp_path, capsys):
    from avaffect.cli.main import main

    path = tmp_path / "ok.yaml"
    path.write_text("training: {max_epochs: 3}\n")
    assert main(["train", str(tmp_path), "--config", str(path), "--max-epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "command-line options" in err and "max_epochs" in err
    path.write_text("training: {max_epochs: 0}\n")
    assert main(["train", str(tmp_path), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: invalid configuration" in err and "command-line" not in err


def test_seeds_zero_is_refused_not_quietly_one(tmp_path, capsys):
    from avaffect.cli.main import main

    assert main(["train", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("video", ["face_hog", "vggface_face"])
def test_end_to_end_refuses_video_extractors_it_cannot_fine_tune(video):
    """Every extractor answers features_from_crops now; only the networks with layer groups can be fine-tuned."""
    with pytest.raises(ConfigError, match="fine-tunes a face ResNet"):
        make_config({"features": {"video": {"name": video}, "audio": {"name": "spec_resnet18"}},
                     "end_to_end": {"enabled": True}})
