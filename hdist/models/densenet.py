"""DenseNet-121 (Huang et al. 2017), torchvision's architecture (7,978,856 parameters at 1000 classes).

Growth rate 32, dense blocks of (6, 12, 24, 16) layers, bottleneck width 4 x 32 = 128, 64 stem
features, compression 0.5 in the transitions, no dropout. To make the network a *sequence*, every
dense layer is one item that returns its input concatenated with its 32 new feature maps
(``cat([x, new], 1)``), which is what a dense block computes one layer at a time; the sequence is

    stem (conv7x7/2 - BN - ReLU - maxpool 3/2),
    6 dense layers, transition, 12 dense layers, transition, 24 dense layers, transition,
    16 dense layers, final BN - ReLU, head (global average pooling - flatten - linear)

(64 items). Default input 3x64x64 to keep it cheap; any resolution works.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hdist.models import register


class DenseLayer(nn.Module):
    """BN - ReLU - conv1x1 (bn_size * growth) - BN - ReLU - conv3x3 (growth), concatenated to the input."""

    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        new = self.conv1(self.relu1(self.norm1(x)))
        new = self.conv2(self.relu2(self.norm2(new)))
        return torch.cat([x, new], 1)


def _transition(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2, stride=2)
    )


def _densenet(
    growth: int, blocks: tuple[int, ...], init_features: int, bn_size: int, num_classes: int, in_channels: int
) -> nn.Sequential:
    c = init_features
    items: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(in_channels, c, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    ]
    for b, n in enumerate(blocks):
        for _ in range(n):
            items.append(DenseLayer(c, growth, bn_size))
            c += growth
        if b != len(blocks) - 1:
            items.append(_transition(c, c // 2))
            c //= 2
    items.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()))
    items.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)))
    model = nn.Sequential(*items)
    for m in model.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model


@register("densenet121", 1000, (3, 64, 64), "DenseNet-121 (ImageNet), torchvision's architecture")
def densenet121(num_classes: int = 1000, input_shape=(3, 64, 64)) -> nn.Sequential:
    return _densenet(32, (6, 12, 24, 16), 64, 4, num_classes, input_shape[0])
