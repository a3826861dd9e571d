"""Caffe's CIFAR10-full network (``examples/cifar10/cifar10_full.prototxt``), used by lian15.

    conv5x5 32 (pad 2) - maxpool 3/2 - ReLU - LRN        32x32 -> 16x16      item 0
    conv5x5 32 (pad 2) - ReLU - avgpool 3/2 - LRN        16x16 -> 8x8        item 1
    conv5x5 64 (pad 2) - ReLU - avgpool 3/2               8x8 -> 4x4         item 2
    linear 64*4*4 -> num_classes                                             item 3

Caffe details kept: pools round up (``ceil_mode``; 32 -> 16 -> 8 -> 4), and the LRN is Caffe's
``WITHIN_CHANNEL`` kind (local_size 3, alpha 5e-5, beta 0.75): each value is divided by
``(1 + alpha * mean of x^2 over its zero-padded 3x3 spatial neighbourhood) ** beta``, which is
not ``nn.LocalResponseNorm`` (that one normalises across channels). Initialisation
(``init``): ``torch`` (the default) keeps PyTorch's default initialisation; ``caffe`` is Caffe's
Gaussian weights with std 1e-4 (conv1) and 0.01 (conv2, conv3, linear) and zero biases. Caffe's
values assume raw 0-255 pixels; on the normalised inputs hdist feeds (std ~1) they leave the
first layer's output ~250x too small and the net does not train in the runs we can afford
(measured: loss flat at ln 10 after 2,000 SGD steps), hence the default.
(Caffe's solver also multiplies the linear layer's weight decay by 250; that belongs to the
optimiser, not to this model.) The last item starts with an adaptive average pooling to 4x4,
the identity for 32x32 inputs, so that any input resolution works. 89,578 parameters at 10
classes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from hdist.models import register


class WithinChannelLRN(nn.Module):
    """Caffe's LRN with ``norm_region: WITHIN_CHANNEL``."""

    def __init__(self, local_size: int = 3, alpha: float = 5e-5, beta: float = 0.75):
        super().__init__()
        self.local_size, self.alpha, self.beta = local_size, alpha, beta

    def forward(self, x: Tensor) -> Tensor:
        k = self.local_size
        mean_sq = F.avg_pool2d(x * x, k, stride=1, padding=k // 2, count_include_pad=True)
        return x * (1.0 + self.alpha * mean_sq).pow(-self.beta)

    def extra_repr(self) -> str:
        return f"local_size={self.local_size}, alpha={self.alpha}, beta={self.beta}"


@register("cifar10_full", 10, (3, 32, 32), "Caffe's CIFAR10-full: 3 conv (5x5) + within-channel LRN + linear")
def cifar10_full(num_classes: int = 10, input_shape=(3, 32, 32), init: str = "torch") -> nn.Sequential:
    conv1 = nn.Conv2d(input_shape[0], 32, 5, padding=2)
    conv2 = nn.Conv2d(32, 32, 5, padding=2)
    conv3 = nn.Conv2d(32, 64, 5, padding=2)
    fc = nn.Linear(64 * 4 * 4, num_classes)
    if init == "caffe":
        for layer, std in ((conv1, 1e-4), (conv2, 0.01), (conv3, 0.01), (fc, 0.01)):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)
    elif init != "torch":
        raise ValueError(f"model.init={init!r}: expected torch or caffe")
    return nn.Sequential(
        nn.Sequential(conv1, nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.ReLU(), WithinChannelLRN()),
        nn.Sequential(conv2, nn.ReLU(), nn.AvgPool2d(3, stride=2, ceil_mode=True), WithinChannelLRN()),
        nn.Sequential(conv3, nn.ReLU(), nn.AvgPool2d(3, stride=2, ceil_mode=True)),
        nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), fc),
    )
