"""The torch networks behind the backbone extractors (imported lazily: importing torch is slow).

Every network keeps the public parameter names of its source (torchvision's ResNet / VideoResNet,
the torchvggish port's VGGish) so the public weight files load unchanged; classifier layers are
replaced by ``nn.Identity`` (no parameters), so a file's ``fc.*`` entries are dropped on loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["VGGishNet", "ResNetFeatures", "resnet_features", "VGG16Features", "VGG16_CONV_INDICES",
           "video_resnet_features", "conv1_to_gray", "pixel_normalizer"]


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


class ResNetFeatures(ResNet):
    """torchvision's ResNet without the classifier, returning either the global average pool
    ``[B, C]`` (``spatial=0``) or the last feature map average-pooled to ``spatial x spatial`` and
    flattened region-major ``[B, spatial^2 * C]`` (region r's C features at ``[r*C:(r+1)*C]``)."""

    def __init__(self, block, layers, in_channels: int = 3, spatial: int = 0) -> None:
        super().__init__(block, layers)
        self.fc = nn.Identity()
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.spatial = int(spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.spatial:
            x = F.adaptive_avg_pool2d(x, self.spatial)  # [B, C, s, s]
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return torch.flatten(self.avgpool(x), 1)


_RESNETS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}


def resnet_features(arch: str, in_channels: int = 3, spatial: int = 0) -> ResNetFeatures:
    block, layers = _RESNETS[arch]
    return ResNetFeatures(block, layers, in_channels=in_channels, spatial=spatial)


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


def video_resnet_features(arch: str = "r2plus1d_18", spatial_map: bool = False) -> nn.Module:
    """torchvision's R(2+1)D-18 / R3D-18 / MC3-18 with ``fc = Identity``: ``[B, 3, T, H, W]`` → ``[B, 512]``;
    with ``spatial_map`` the pooling averages over time only: ``[B, 512 * H/16 * W/16]``, the map flattened
    channel-major."""
    from torchvision.models import video

    net = getattr(video, arch)(weights=None)
    net.fc = nn.Identity()
    if spatial_map:
        net.avgpool = nn.AdaptiveAvgPool3d((1, None, None))
    return net


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
        x = x.movedim(-1, 1).float().div_(255.0)
        shape = (1, 3) + (1,) * (x.dim() - 2)
        return (x - mean_t.to(x.device).view(shape)) / std_t.to(x.device).view(shape)

    return prepare
