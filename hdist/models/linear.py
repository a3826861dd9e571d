"""A linear model w'x (+ b): ridge regression, the PCA objective, logistic regression."""

from __future__ import annotations

import math

from torch import nn

from hdist.models import register


@register("linear", num_classes=1, input_shape=(22,), description="linear model w'x (ridge, PCA, logistic)")
def linear(num_classes: int = 1, input_shape=(22,), bias: bool = False) -> nn.Sequential:
    d_in = math.prod(input_shape)
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    return nn.Sequential(*layers, nn.Linear(d_in, num_classes, bias=bias))
