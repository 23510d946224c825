"""The torch networks behind the backbone extractors (imported lazily: importing torch is slow).

Written here from the architectures' papers, on torch alone (no torchvision: a CPU-only install needs only a CPU
build of torch, which has no matching torchvision on every index). Every network keeps the public parameter names
of the weight files it loads (torchvision's ResNet / VideoResNet files, the torchvggish port's VGGish), so those
files load unchanged; classifier layers are left out, so a file's ``fc.*`` entries are dropped on loading. The
tests check each network against torchvision's own, loaded with the same weights, where torchvision is installed.

* ResNet (He et al., CVPR 2016): a 7x7/2 convolution and 3x3/2 max-pool stem, four stages of residual blocks
  (64, 128, 256, 512 planes; stride 2 from the second), ``y = relu(F(x) + P(x))`` with ``P`` the identity or a
  1x1 strided convolution + BN where the shape changes. Basic block ``F``: two 3x3 convolutions; bottleneck
  ``F``: 1x1, 3x3 (carrying the stride, the "v1.5" variant of torchvision's files), 1x1 with 4x expansion.
* Video ResNets (Tran et al., CVPR 2018), 18 layers: R3D (3x3x3 convolutions throughout), MC3 (3-D in the
  stem and first stage, 1x3x3 after) and R(2+1)D, where each 3x3x3 convolution from ``N_{i-1}`` to ``N_i``
  channels is a 1x3x3 spatial convolution to ``M_i = floor(27 N_{i-1} N_i / (9 N_{i-1} + 3 N_i))`` channels,
  BN, ReLU, then a 3x1x1 temporal one (same parameter count as the 3-D kernel). Stems: 3x7x7 (R3D, MC3) or
  1x7x7 to 45 channels then 3x1x1 to 64 (R(2+1)D), spatial stride 2, no pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VGGishNet", "ResNetFeatures", "resnet_features", "VGG16Features", "VGG16_CONV_INDICES",
           "VideoResNetFeatures", "VIDEO_ARCHS", "video_resnet_features", "conv1_to_gray", "pixel_normalizer"]


class VGGishNet(nn.Module):
    """VGGish; input ``[B, 1, 96, 64]`` (or ``[B, 96, 64]``) log-mel examples, output ``[B, 128]``.

    Layer layout and names: see :mod:`avaffect.features.backbones.vggish`.
    """

    def __init__(self, final_relu: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for block in ((64,), (128,), (256, 256), (512, 512)):
            for out in block:
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = out
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
        ]
        if final_relu:
            head.append(nn.ReLU(inplace=True))
        self.embeddings = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.features(x)  # [B, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # flatten in (H, W, C) order, as the TF original
        return self.embeddings(x)


def _init_weights(net: nn.Module, classes: int, features: int) -> None:
    """He initialisation (fan-out, ReLU) of the convolutions; batch norms start as the identity.

    Random weights are drawn as torchvision draws them for the same seed (its constructors also build a
    ``features -> classes`` classifier before initialising, which we leave out but whose draws we make and drop),
    so that an ``allow_random`` extractor gives the features it gave when it was built on torchvision."""
    nn.Linear(features, classes)  # the classifier's default initialisation: its random draws, then dropped
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _Residual2d(nn.Module):
    """One 2-D residual block, ``relu(F(x) + P(x))``: basic (``conv1, bn1, conv2, bn2``) or bottleneck (``conv1 ..
    bn3``, 4x expansion); ``downsample`` (1x1 convolution + BN) where stride or width change."""

    def __init__(self, inplanes: int, planes: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        out = planes * (4 if bottleneck else 1)
        self.bottleneck = bottleneck
        if bottleneck:
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
        else:
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
                           if stride != 1 or inplanes != out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.bottleneck:
            y = self.bn3(self.conv3(self.relu(y)))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNetFeatures(nn.Module):
    """ResNet without the classifier (parameter names ``conv1, bn1, layer1 .. layer4``), returning either the
    global average pool ``[B, C]`` (``spatial=0``) or the last feature map average-pooled to ``spatial x spatial``
    and flattened region-major ``[B, spatial^2 * C]`` (region r's C features at ``[r*C:(r+1)*C]``)."""

    def __init__(self, bottleneck: bool, layers: tuple[int, ...], in_channels: int = 3, spatial: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(_Residual2d(inplanes, planes, 2 if (i and not j) else 1, bottleneck))
                inplanes = planes * (4 if bottleneck else 1)
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_dim = inplanes
        self.spatial = int(spatial)
        _init_weights(self, classes=1000, features=inplanes)
        if in_channels != 3:  # a grey stem (spec_resnet18): a fresh layer with torch's default initialisation
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.spatial:
            x = F.adaptive_avg_pool2d(x, self.spatial)  # [B, C, s, s]
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return x.mean(dim=(2, 3))


_RESNETS = {"resnet18": (False, (2, 2, 2, 2)), "resnet50": (True, (3, 4, 6, 3))}


def resnet_features(arch: str, in_channels: int = 3, spatial: int = 0) -> ResNetFeatures:
    bottleneck, layers = _RESNETS[arch]
    return ResNetFeatures(bottleneck, layers, in_channels=in_channels, spatial=spatial)


# torchvision's VGG-16 ("D") convolution stack up to relu5_3: 13 convolutions (3x3, padding 1) with ReLUs, a 2x2
# max-pool after the first four blocks; pool5 and the classifier are left out. Module indices = torchvision's.
_VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # features.<i> of conv1_1 ... conv5_3


class VGG16Features(nn.Module):
    """VGG-16 up to the last convolutional layer (conv5_3 + ReLU), in torchvision's naming (``features.0`` ...
    ``features.28``). Returns the global average pool of the conv5_3 activations ``[B, 512]`` (``spatial=0``) or
    the map average-pooled to ``spatial x spatial`` and flattened region-major ``[B, spatial^2 * 512]``."""

    def __init__(self, spatial: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for b, block in enumerate(_VGG16_BLOCKS):
            for out in block:
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = out
            if b < len(_VGG16_BLOCKS) - 1:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.spatial = int(spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [B, 512, H/16, W/16]: 14 x 14 at 224 x 224
        if self.spatial:
            x = F.adaptive_avg_pool2d(x, self.spatial)
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return x.mean(dim=(2, 3))


def _conv3d(cin: int, cout: int, kind: str, stride: int, mid: int) -> nn.Module:
    """The 3x3x3-equivalent convolution of a video block: ``"3d"`` (3x3x3), ``"2d"`` (1x3x3, no temporal extent,
    MC3) or ``"2+1d"`` (1x3x3 to ``mid`` channels, BN, ReLU, 3x1x1; parameter names ``0, 1, 3``)."""
    if kind == "3d":
        return nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
    if kind == "2d":
        return nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False))


class _Residual3d(nn.Module):
    """A basic video block: ``conv1 = (conv, BN, ReLU)``, ``conv2 = (conv, BN)``, ``relu(conv2(conv1(x)) + P(x))``,
    ``P`` a 1x1x1 strided convolution + BN where the shape changes (no temporal stride for MC3's 2-D stages)."""

    def __init__(self, inplanes: int, planes: int, stride: int, kind: str) -> None:
        super().__init__()
        mid = (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)  # M_i of R(2+1)D, both convolutions
        self.conv1 = nn.Sequential(_conv3d(inplanes, planes, kind, stride, mid), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_conv3d(planes, planes, kind, 1, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        ds = (1, stride, stride) if kind == "2d" else (stride,) * 3
        self.downsample = (nn.Sequential(nn.Conv3d(inplanes, planes, 1, stride=ds, bias=False), nn.BatchNorm3d(planes))
                           if stride != 1 or inplanes != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


# arch -> (stem, convolution kind of each of the four stages)
_VIDEO_RESNETS = {"r3d_18": ("3d", ("3d",) * 4), "mc3_18": ("3d", ("3d", "2d", "2d", "2d")),
                  "r2plus1d_18": ("2+1d", ("2+1d",) * 4)}
VIDEO_ARCHS = tuple(_VIDEO_RESNETS)


class VideoResNetFeatures(nn.Module):
    """An 18-layer video ResNet without the classifier (parameter names ``stem, layer1 .. layer4``):
    ``[B, 3, T, H, W]`` → ``[B, 512]`` (average over time and space), or with ``spatial_map`` the average over
    time only, ``[B, 512 * H/16 * W/16]``, flattened channel-major."""

    def __init__(self, arch: str = "r2plus1d_18", spatial_map: bool = False) -> None:
        super().__init__()
        stem, kinds = _VIDEO_RESNETS[arch]
        if stem == "2+1d":
            self.stem = nn.Sequential(
                nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False), nn.BatchNorm3d(45),
                nn.ReLU(inplace=True),
                nn.Conv3d(45, 64, (3, 1, 1), padding=(1, 0, 0), bias=False), nn.BatchNorm3d(64), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False), nn.BatchNorm3d(64),
                nn.ReLU(inplace=True))
        inplanes = 64
        for i, (planes, kind) in enumerate(zip((64, 128, 256, 512), kinds, strict=True)):
            stride = 2 if i else 1
            setattr(self, f"layer{i + 1}", nn.Sequential(_Residual3d(inplanes, planes, stride, kind),
                                                         _Residual3d(planes, planes, 1, kind)))
            inplanes = planes
        self.spatial_map = bool(spatial_map)
        _init_weights(self, classes=400, features=512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))  # [B, 512, T', H', W']
        if self.spatial_map:
            return x.mean(dim=2).flatten(1)
        return x.mean(dim=(2, 3, 4))


def video_resnet_features(arch: str = "r2plus1d_18", spatial_map: bool = False) -> VideoResNetFeatures:
    """R(2+1)D-18 / R3D-18 / MC3-18 features (see :class:`VideoResNetFeatures`)."""
    return VideoResNetFeatures(arch, spatial_map=spatial_map)


def conv1_to_gray(weight: torch.Tensor) -> torch.Tensor:
    """Adapt a ``[O, 3, k, k]`` RGB first-layer kernel to one input channel by summing over the
    colour channels: the 1-channel conv on x equals the RGB conv on (x, x, x)."""
    return weight.sum(dim=1, keepdim=True)


def pixel_normalizer(mean, std):
    """uint8 channels-last pixels → float channels-first, ``(x / 255 - mean) / std`` per RGB channel: images
    ``[N, H, W, 3] → [N, 3, H, W]``, clips ``[N, T, H, W, 3] → [N, 3, T, H, W]`` (torchvision's layouts). The one
    input normalisation of the face and clip networks, frozen (extractors) and fine-tuned (end-to-end) alike."""
    mean_t, std_t = torch.tensor(mean), torch.tensor(std)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        # permute with explicit dims (movedim's -1 reaches ONNX as an invalid Transpose perm)
        x = x.permute(0, x.dim() - 1, *range(1, x.dim() - 1)).float().div_(255.0)
        shape = (1, 3) + (1,) * (x.dim() - 2)
        return (x - mean_t.to(x.device).view(shape)) / std_t.to(x.device).view(shape)

    return prepare
