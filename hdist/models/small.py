"""Small sigmoid networks for MNIST (1x28x28): ``fcn5`` and ``cnn5`` (thesis fig. 9 and 12).

Both are sequences of *layers*: item ``i`` of the sequence is the network's layer ``i + 1`` (a
weight layer with its activation and pooling), so cutting before item ``i`` splits the network
after its layer ``i``.

``fcn5``: a 5-layer fully connected network, counted as in the FCN-5 of Shi et al. 2016
("Benchmarking state-of-the-art deep learning software tools"): input, three hidden layers and
the output layer, i.e. four weight layers 784-256-256-256-10 with sigmoid activations. The
thesis does not give the width; we choose 256 (``width``) and keep it configurable
(``hidden_layers`` as well).

``cnn5``: a 5-layer convolutional network with sigmoid activations, three convolutions and two
fully connected layers (our choice; the thesis gives only "5-layer CNN"):

    conv5x5 32 (pad 2) - sigmoid - maxpool 2     28x28 -> 14x14
    conv5x5 64 (pad 2) - sigmoid - maxpool 2     14x14 -> 7x7
    conv3x3 64 (pad 1) - sigmoid - adaptive avgpool to 3x3 (any input resolution works)
    linear 576 -> 256 - sigmoid
    linear 256 -> num_classes
"""

from __future__ import annotations

import math

from torch import nn

from hdist.models import register


@register("fcn5", 10, (1, 28, 28), "FCN-5: 784-256-256-256-10, sigmoid (MNIST)")
def fcn5(
    num_classes: int = 10, input_shape=(1, 28, 28), width: int = 256, hidden_layers: int = 3
) -> nn.Sequential:
    d_in = math.prod(input_shape)
    items: list[nn.Module] = []
    for i in range(int(hidden_layers)):
        layer = [nn.Flatten()] if i == 0 else []
        items.append(nn.Sequential(*layer, nn.Linear(d_in, int(width)), nn.Sigmoid()))
        d_in = int(width)
    out = [nn.Flatten()] if not items else []
    items.append(nn.Sequential(*out, nn.Linear(d_in, num_classes)))
    return nn.Sequential(*items)


@register("cnn5", 10, (1, 28, 28), "CNN-5: 3 conv + 2 linear, sigmoid (MNIST)")
def cnn5(num_classes: int = 10, input_shape=(1, 28, 28), width: int = 256) -> nn.Sequential:
    c = input_shape[0]
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(c, 32, 5, padding=2), nn.Sigmoid(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(32, 64, 5, padding=2), nn.Sigmoid(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Sigmoid(), nn.AdaptiveAvgPool2d(3)),
        nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, int(width)), nn.Sigmoid()),
        nn.Linear(int(width), num_classes),
    )
