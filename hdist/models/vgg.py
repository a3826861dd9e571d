"""VGG networks for CIFAR (Simonyan & Zisserman 2015, with BatchNorm), one item per convolution.

Each item of the sequence is ``conv3x3 - BN - ReLU`` (followed by the 2x2 maxpool where the
configuration has one), and the last item is the head: adaptive average pooling to 1x1 (the
identity for 32x32 inputs, which reach it at 1x1; any resolution works), flatten, and a 512-d
classifier ``linear 512 -> 512 - ReLU - linear 512 -> num_classes`` (``hidden=0``: a single
linear layer). No dropout.

``vgg11_bn``: configuration A (VGG-11) with BN, 10 classes, 3x32x32.

``vgg``: the VGG used by kavg18 for CIFAR-10. The paper does not pin the depth; we choose the
common CIFAR VGG-16-BN: configuration D (13 convolutions) with BN and the same 512-d head
(``depth`` in 11, 13, 16, 19 picks another configuration).
"""

from __future__ import annotations

from torch import nn

from hdist.models import register

_CFG: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"] + [512, 512, 512, 512, "M"] * 2,
}


def _vgg(cfg: list[int | str], num_classes: int, in_channels: int, bn: bool, hidden: int) -> nn.Sequential:
    items: list[nn.Sequential] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            items[-1].append(nn.MaxPool2d(2))
            continue
        layers: list[nn.Module] = [nn.Conv2d(c, int(v), 3, padding=1, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU())
        items.append(nn.Sequential(*layers))
        c = int(v)
    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if hidden:
        head += [nn.Linear(c, int(hidden)), nn.ReLU()]
        c = int(hidden)
    head.append(nn.Linear(c, num_classes))
    model = nn.Sequential(*items, nn.Sequential(*head))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


@register("vgg11_bn", 10, (3, 32, 32), "VGG-11 with BN for CIFAR, 512-d classifier head")
def vgg11_bn(num_classes: int = 10, input_shape=(3, 32, 32), hidden: int = 512) -> nn.Sequential:
    return _vgg(_CFG[11], num_classes, input_shape[0], True, hidden)


@register("vgg", 10, (3, 32, 32), "kavg18's CIFAR-10 VGG: VGG-16 with BN, 512-d classifier head")
def vgg(
    num_classes: int = 10, input_shape=(3, 32, 32), depth: int = 16, bn: bool = True, hidden: int = 512
) -> nn.Sequential:
    return _vgg(_CFG[int(depth)], num_classes, input_shape[0], bn, hidden)
