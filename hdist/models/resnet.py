"""Residual networks (He et al. 2016), each a sequence ``stem, block, block, ..., head``.

Every residual block is one item of the sequence (a block cannot be cut inside: its shortcut
spans it); the stem (conv + BN + ReLU [+ maxpool]) and the head (global average pooling +
flatten + linear) are one item each.

CIFAR ResNets (``resnet8/20/56/110``, "Deep residual learning", sec. 4.2): a 3x3 conv with 16
channels, then three stages of n = (depth - 2) / 6 basic blocks with 16, 32 and 64 channels
(stages 2 and 3 start with stride 2), global average pooling and a linear classifier. Where a
block changes the shape, its shortcut is a 1x1 convolution (stride 2) + BN: the paper's
*option B* (projection shortcuts). The paper's CIFAR nets use option A (zero-padded identity,
no parameters), so our counts are a little higher: ResNet-20 has 272,474 parameters (269,722
with option A; the paper says 0.27M), ResNet-56 855,770, ResNet-110 1,730,714.

``resnet164``: the CIFAR bottleneck ResNet of He et al. 2016 ("Identity mappings in deep residual
networks"; original post-activation form): n = (depth - 2) / 9 bottleneck blocks per stage,
widths 16/32/64 with expansion 4 (outputs 64/128/256), 1.7M parameters.

``bn=False`` drops every BatchNorm and gives the convolutions a bias instead (thesis fig. 9 trains
ResNet-8 without BN).

``resnet101`` / ``resnet152`` (thesis ch. 6): ImageNet bottleneck layouts [3, 4, 23, 3] and
[3, 8, 36, 3] (widths 64/128/256/512, expansion 4) on a CIFAR stem: a 3x3 stride-1 conv with 64
channels, no maxpool, so 32x32 inputs reach the last stage at 4x4.

``resnet50`` is torchvision's ``resnet50`` layer for layer (ResNet v1.5: stride in the 3x3 conv
of the bottleneck; 7x7 stride-2 stem + 3x3 stride-2 maxpool; 25,557,032 parameters at 1000
classes); its default input is 3x64x64 to keep it cheap, any resolution works.

ResNet-8 has 8 weight layers: conv1 (1), block 1 (2, 3), block 2 (4, 5), block 3 (6, 7), fc (8)
but only 5 items (stem, 3 blocks, head). The thesis splits it "at layer 1, 3, 5 or 7", i.e.
after that layer; :data:`RESNET8_SPLIT_POINTS` maps the thesis' layer to the cut index for
:func:`hdist.models.split_stages` (``cuts=[RESNET8_SPLIT_POINTS[layer]]``).
"""

from __future__ import annotations

from torch import Tensor, nn

from hdist.models import register

# Thesis layer index (split after this layer) -> cut index into resnet8's sequence.
RESNET8_SPLIT_POINTS: dict[int, int] = {1: 1, 3: 2, 5: 3, 7: 4}


def _norm(c: int, bn: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if bn else nn.Identity()


def _conv(cin: int, cout: int, k: int, stride: int = 1, bn: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not bn)


def _shortcut(cin: int, cout: int, stride: int, bn: bool) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, 1, stride, bn), _norm(cout, bn))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; output channels = ``width``."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, bn: bool = True):
        super().__init__()
        self.conv1 = _conv(cin, width, 3, stride, bn)
        self.bn1 = _norm(width, bn)
        self.conv2 = _conv(width, width, 3, 1, bn)
        self.bn2 = _norm(width, bn)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(cin, width, stride, bn)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 (reduce to ``width``) - 3x3 (stride) - 1x1 (expand to 4 * ``width``), as torchvision."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, bn: bool = True):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv(cin, width, 1, 1, bn)
        self.bn1 = _norm(width, bn)
        self.conv2 = _conv(width, width, 3, stride, bn)
        self.bn2 = _norm(width, bn)
        self.conv3 = _conv(width, cout, 1, 1, bn)
        self.bn3 = _norm(cout, bn)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(cin, cout, stride, bn)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _resnet(
    block: type[BasicBlock] | type[Bottleneck],
    layers: list[int],
    widths: list[int],
    num_classes: int,
    in_channels: int,
    bn: bool,
    imagenet_stem: bool,
) -> nn.Sequential:
    c = widths[0]
    if imagenet_stem:
        stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 7, stride=2, padding=3, bias=not bn),
            _norm(c, bn),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    else:
        stem = nn.Sequential(_conv(in_channels, c, 3, 1, bn), _norm(c, bn), nn.ReLU())
    items: list[nn.Module] = [stem]
    for s, (n, width) in enumerate(zip(layers, widths, strict=True)):
        for i in range(n):
            stride = 2 if (s > 0 and i == 0) else 1
            items.append(block(c, width, stride, bn))
            c = width * block.expansion
    items.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)))
    model = nn.Sequential(*items)
    for m in model.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def _cifar_basic(depth: int, num_classes: int, input_shape, bn: bool) -> nn.Sequential:
    assert (depth - 2) % 6 == 0, depth
    n = (depth - 2) // 6
    return _resnet(BasicBlock, [n] * 3, [16, 32, 64], num_classes, input_shape[0], bn, imagenet_stem=False)


_CIFAR = (3, 32, 32)


@register("resnet8", 10, _CIFAR, "ResNet-8 for CIFAR (He et al. 2016), basic blocks, option-B shortcuts")
def resnet8(num_classes: int = 10, input_shape=_CIFAR, bn: bool = True) -> nn.Sequential:
    return _cifar_basic(8, num_classes, input_shape, bn)


@register("resnet20", 10, _CIFAR, "ResNet-20 for CIFAR (He et al. 2016), basic blocks, option-B shortcuts")
def resnet20(num_classes: int = 10, input_shape=_CIFAR, bn: bool = True) -> nn.Sequential:
    return _cifar_basic(20, num_classes, input_shape, bn)


@register("resnet56", 10, _CIFAR, "ResNet-56 for CIFAR (He et al. 2016), basic blocks, option-B shortcuts")
def resnet56(num_classes: int = 10, input_shape=_CIFAR, bn: bool = True) -> nn.Sequential:
    return _cifar_basic(56, num_classes, input_shape, bn)


@register("resnet110", 10, _CIFAR, "ResNet-110 for CIFAR (He et al. 2016), basic blocks, option-B shortcuts")
def resnet110(num_classes: int = 10, input_shape=_CIFAR, bn: bool = True) -> nn.Sequential:
    return _cifar_basic(110, num_classes, input_shape, bn)


@register("resnet164", 10, _CIFAR, "ResNet-164 for CIFAR (He et al. 2016), bottleneck blocks")
def resnet164(num_classes: int = 10, input_shape=_CIFAR, bn: bool = True) -> nn.Sequential:
    n = (164 - 2) // 9
    return _resnet(Bottleneck, [n] * 3, [16, 32, 64], num_classes, input_shape[0], bn, imagenet_stem=False)


@register("resnet101", 10, _CIFAR, "ResNet-101, bottleneck [3,4,23,3], CIFAR stem (3x3 conv, no maxpool)")
def resnet101(num_classes: int = 10, input_shape=_CIFAR, bn: bool = True) -> nn.Sequential:
    return _resnet(Bottleneck, [3, 4, 23, 3], [64, 128, 256, 512], num_classes, input_shape[0], bn, False)


@register("resnet152", 10, _CIFAR, "ResNet-152, bottleneck [3,8,36,3], CIFAR stem (3x3 conv, no maxpool)")
def resnet152(num_classes: int = 10, input_shape=_CIFAR, bn: bool = True) -> nn.Sequential:
    return _resnet(Bottleneck, [3, 8, 36, 3], [64, 128, 256, 512], num_classes, input_shape[0], bn, False)


@register("resnet50", 1000, (3, 64, 64), "ResNet-50 for ImageNet, torchvision's architecture (25.6M params)")
def resnet50(num_classes: int = 1000, input_shape=(3, 64, 64), bn: bool = True) -> nn.Sequential:
    return _resnet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], num_classes, input_shape[0], bn, True)
