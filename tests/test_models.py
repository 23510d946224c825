import numpy as np
import pytest
import torch

from avaffect.models import create_model, list_models
from avaffect.models.blocks.jca import RecursiveJCA, TimeMajorJCA

SIZES = [(2, 8, 5, 7, 2), (1, 12, 16, 4, 1), (3, 5, 3, 3, 2)]  # B, L, d_a, d_v, K


@pytest.mark.parametrize("b,l,da,dv,k", SIZES)
@pytest.mark.parametrize("name", ["audio_only", "video_only", "concat", "rjca"])
def test_preset_shapes_and_gradients(name, b, l, da, dv, k):
    torch.manual_seed(0)
    params = {"num_outputs": k, "hidden": 8, "head_hidden": 6, "dropout": 0.0}
    if name == "rjca":
        params["window_length"] = l
    model = create_model(name, da, dv, params)
    audio, video = torch.randn(b, l, da), torch.randn(b, l, dv)
    mask = torch.ones(b, l, dtype=torch.bool)
    mask[0, l // 2:] = False
    y = model(audio, video, mask)
    assert y.shape == (b, l, k)
    y[mask].sum().backward()
    unused = {"audio_only": "video", "video_only": "audio"}.get(name, "-")
    for pname, p in model.named_parameters():
        if unused in pname:
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} receives no gradient"


@pytest.mark.parametrize("name", ["concat", "rjca"])
def test_padded_inputs_do_not_change_valid_outputs(name):
    torch.manual_seed(1)
    l = 10
    params = {"hidden": 8, "dropout": 0.0, **({"window_length": l} if name == "rjca" else {})}
    model = create_model(name, 4, 6, params).eval()
    audio, video = torch.randn(2, l, 4), torch.randn(2, l, 6)
    mask = torch.ones(2, l, dtype=torch.bool)
    mask[:, 7:] = False
    y1 = model(audio, video, mask)
    audio2, video2 = audio.clone(), video.clone()
    audio2[:, 7:] = 100.0
    video2[:, 7:] = -100.0
    y2 = model(audio2, video2, mask)
    torch.testing.assert_close(y1[mask], y2[mask])


def test_time_major_jca_equations():
    torch.manual_seed(2)
    b, l, da, dv = 2, 6, 3, 4
    jca = TimeMajorJCA(da, dv, l)
    xa, xv = torch.randn(b, l, da), torch.randn(b, l, dv)
    ya, yv = jca(xa, xv)
    d = da + dv
    for i, (x, y) in enumerate([(xa, ya), (xv, yv)]):
        for n in range(b):
            J = torch.cat([xa[n], xv[n]], dim=1)
            C = torch.tanh(x[n].T @ jca.w_j[i] @ J / d**0.5)
            H = torch.relu(x[n] @ jca.w_c[i] @ C)
            torch.testing.assert_close(y[n], H @ jca.w_h[i] + x[n])
    with pytest.raises(ValueError, match="built for windows"):
        jca(torch.randn(1, l + 1, da), torch.randn(1, l + 1, dv))


def test_rjca_iterations_and_weight_sharing():
    r = RecursiveJCA(3, 4, 5, num_iterations=3)
    assert len(r.blocks) == 3
    shared = RecursiveJCA(3, 4, 5, num_iterations=3, share_weights=True)
    assert len(shared.blocks) == 1
    its = shared.iterates(torch.randn(1, 5, 3), torch.randn(1, 5, 4))
    assert len(its) == 4
    assert sum(p.numel() for p in shared.parameters()) * 3 == sum(p.numel() for p in r.parameters())


def test_registry_lists_and_validates():
    assert {"audio_only", "video_only", "concat", "rjca"} <= set(list_models())
    from avaffect.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model"):
        create_model("nope", 1, 1)
    with pytest.raises(ConfigError, match="bogus"):
        create_model("concat", 1, 1, {"bogus": 1})


def test_the_wrapper_zeroes_the_visual_input_where_there_is_no_face():
    """Missing-face rule: where ``face_mask`` is false the normalised visual vector is zero, so what the
    visual features hold there cannot change the output; where it is true it does."""
    import torch

    from avaffect.models.wrapper import AVRegressor

    torch.manual_seed(0)
    model = AVRegressor("concat", 3, 5, {"hidden": 8, "head_hidden": 8, "dropout": 0.0}).eval()
    model.set_normalization(np.random.default_rng(0).normal(2.0, 1.0, (50, 3)),
                            np.random.default_rng(1).normal(-1.0, 2.0, (50, 5)))
    audio = torch.randn(1, 6, 3)
    mask = torch.ones(1, 6, dtype=torch.bool)
    no_face = torch.zeros(1, 6, dtype=torch.bool)
    a, b = torch.randn(1, 6, 5), torch.randn(1, 6, 5) * 10
    with torch.no_grad():
        assert torch.equal(model(audio, a, mask, no_face), model(audio, b, mask, no_face))
        # zero after normalisation = the training mean: the same as feeding the mean with a face
        mean = model.video_mean.expand(1, 6, 5)
        torch.testing.assert_close(model(audio, a, mask, no_face), model(audio, mean, mask, ~no_face))
        assert not torch.allclose(model(audio, a, mask, ~no_face), model(audio, b, mask, ~no_face))


@pytest.mark.parametrize("name", list_models())
def test_shipped_yaml_is_generated_from_the_typed_defaults(name):
    """Each preset ships ``configs/models/<name>.yaml``, exactly what ``avaffect models --write-yaml`` makes
    from its typed config: the same key set (all fields less the preset's declared unused ones), the
    same values, the same comments — so the YAMLs cannot drift from the code."""
    from importlib import resources

    import yaml

    from avaffect.models.registry import get_entry, model_config, preset_yaml, yaml_keys

    text = resources.files("avaffect").joinpath("configs", "models", f"{name}.yaml").read_text()
    assert text == preset_yaml(name), f"regenerate: avaffect models --write-yaml src/avaffect/configs/models {name}"
    params = yaml.safe_load(text)
    assert list(params) == yaml_keys(name)
    assert set(yaml_keys(name)) | set(getattr(get_entry(name).config_cls, "yaml_exclude", ())) == set(
        get_entry(name).config_cls.model_fields)
    assert model_config(name, params) == get_entry(name).config_cls()
