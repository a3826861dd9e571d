"""Multi-layer perceptrons, e.g. huo17's 784-100-10 and 384-50-10 ReLU networks."""

from __future__ import annotations

import math

from torch import nn

from hdist.models import register

_ACT = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


@register("mlp", num_classes=10, input_shape=(784,), description="MLP, ReLU hidden layers (huo17 784-100-10)")
def mlp(num_classes: int = 10, input_shape=(784,), hidden=(100,), activation: str = "relu") -> nn.Sequential:
    d_in = math.prod(input_shape)
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    for h in hidden:
        layers += [nn.Linear(d_in, int(h)), _ACT[activation]()]
        d_in = int(h)
    layers.append(nn.Linear(d_in, num_classes))
    return nn.Sequential(*layers)
