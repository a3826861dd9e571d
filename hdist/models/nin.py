"""Network in Network for CIFAR-10 (Lin, Chen & Yan 2014), as in their Caffe model.

Three mlpconv blocks, each one item of the sequence, then global average pooling:

    conv5x5 192 (pad 2) - ReLU - conv1x1 160 - ReLU - conv1x1 96 - ReLU - maxpool 3/2 - dropout 0.5
    conv5x5 192 (pad 2) - ReLU - conv1x1 192 - ReLU - conv1x1 192 - ReLU - avgpool 3/2 - dropout 0.5
    conv3x3 192 (pad 1) - ReLU - conv1x1 192 - ReLU - conv1x1 num_classes - ReLU
    global average pooling - flatten                        (no linear layer: the last mlpconv
                                                             has one map per class)

Pools round up as Caffe does (``ceil_mode``): 32x32 -> 16x16 -> 8x8. The ReLU on the class maps
follows the Caffe model. Weights keep PyTorch's default initialisation.
"""

from __future__ import annotations

from torch import nn

from hdist.models import register


def _mlpconv(cin: int, k: int, channels: tuple[int, int, int]) -> list[nn.Module]:
    c1, c2, c3 = channels
    return [
        nn.Conv2d(cin, c1, k, padding=k // 2),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 1),
        nn.ReLU(),
        nn.Conv2d(c2, c3, 1),
        nn.ReLU(),
    ]


@register("nin", 10, (3, 32, 32), "Network in Network for CIFAR-10 (Lin et al. 2014), global average pooling")
def nin(num_classes: int = 10, input_shape=(3, 32, 32), dropout: float = 0.5) -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(
            *_mlpconv(input_shape[0], 5, (192, 160, 96)),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            nn.Dropout(dropout),
        ),
        nn.Sequential(
            *_mlpconv(96, 5, (192, 192, 192)),
            nn.AvgPool2d(3, stride=2, ceil_mode=True),
            nn.Dropout(dropout),
        ),
        nn.Sequential(*_mlpconv(192, 3, (192, 192, num_classes))),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    )
