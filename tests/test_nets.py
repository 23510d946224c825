"""Our torch-only ResNets against torchvision's own networks (the independent reference), loaded with the same
weights: the same parameter names and shapes, the same outputs. torchvision is needed for the tests only
(the ``reference`` extra, which ``make install`` installs and a CPU-only install leaves out)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from shareddata import torchvision_reference
from torch import nn

from avaffect.features.backbones.nets import VIDEO_ARCHS, resnet_features, video_resnet_features


@pytest.fixture(scope="module")
def tv_models():
    return torchvision_reference("torchvision.models")



def _randomise_bn(net: nn.Module, seed: int) -> None:
    """Non-trivial batch-norm statistics and affine parameters, so that eval mode is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


def _reference(ctor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = ctor(weights=None)
    _randomise_bn(net, seed)
    return net.eval()


def _load_into(ours: nn.Module, ref: nn.Module) -> None:
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert sorted(state) == sorted(ours.state_dict())  # the public names, nothing more, nothing less
    ours.load_state_dict(state, strict=True)
    ours.eval()


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_equals_torchvision(arch, tv_models):
    ref = _reference(getattr(tv_models, arch), seed=3)
    ours = resnet_features(arch)
    _load_into(ours, ref)
    ref.fc = nn.Identity()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))  # a 4 x 4 last map
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
        # the region-major spatial map: torchvision's last map pooled to 2 x 2 by hand
        spatial = resnet_features(arch, spatial=2)
        _load_into(spatial, ref)
        m = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
        c = m.shape[1]
        regions = [m[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(dim=(2, 3)) for i in range(2) for j in range(2)]
        torch.testing.assert_close(spatial(x), torch.cat(regions, dim=1), rtol=1e-5, atol=1e-5)
        assert spatial(x).shape == (2, 4 * c)


def test_resnet_one_channel_input_has_the_gray_stem():
    net = resnet_features("resnet18", in_channels=1)
    assert net.conv1.weight.shape == (64, 1, 7, 7)
    assert net(torch.randn(1, 1, 64, 64)).shape == (1, 512)


@pytest.mark.parametrize("arch", VIDEO_ARCHS)
def test_video_resnet_equals_torchvision(arch, tv_models):
    ref = _reference(getattr(tv_models.video, arch), seed=5)
    ours = video_resnet_features(arch)
    _load_into(ours, ref)
    ref.fc = nn.Identity()
    x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
        mapped = video_resnet_features(arch, spatial_map=True)
        _load_into(mapped, ref)
        m = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.stem(x)))))  # [B, 512, T', 2, 2]
        torch.testing.assert_close(mapped(x), m.mean(dim=2).flatten(1), rtol=1e-5, atol=1e-5)


def test_r2plus1d_mid_channels_follow_the_paper():
    """M_i = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i)), t = d = 3 (Tran et al. 2018, Sec. 3.5)."""
    net = video_resnet_features("r2plus1d_18")
    for name, (n_in, n_out) in {"layer1.0": (64, 64), "layer2.0": (64, 128), "layer3.1": (256, 256)}.items():
        block = net.get_submodule(name)
        mid = block.conv1[0][0].out_channels
        assert mid == (27 * n_in * n_out) // (9 * n_in + 3 * n_out)
        spatial, temporal = block.conv1[0][0].weight, block.conv1[0][3].weight
        assert spatial.shape[2:] == (1, 3, 3) and temporal.shape[2:] == (3, 1, 1)


def test_networks_and_the_end_to_end_model_import_no_torchvision():
    code = ("import sys; import avaffect.features.backbones.nets, avaffect.models.e2e, avaffect.cli.main; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'torchvision']; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("arch,in_channels", [("resnet18", 3), ("resnet18", 1), ("resnet50", 3),
                                              *[(a, 3) for a in VIDEO_ARCHS]])
def test_random_weights_are_torchvisions_for_the_same_seed(arch, in_channels, tv_models):
    """allow_random extractors keep the features they had when built on torchvision (same seed, same draws)."""
    torch.manual_seed(11)
    if arch in VIDEO_ARCHS:
        ours = video_resnet_features(arch)
        torch.manual_seed(11)
        ref = getattr(tv_models.video, arch)(weights=None)
    else:
        ours = resnet_features(arch, in_channels=in_channels)
        torch.manual_seed(11)
        ref = getattr(tv_models, arch)(weights=None)
        if in_channels != 3:  # what the torchvision-based extractor did: a fresh grey first layer after init
            ref.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    want = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    got = ours.state_dict()
    assert sorted(got) == sorted(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)
