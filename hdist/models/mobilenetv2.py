"""MobileNetV2 (Sandler et al. 2018), torchvision's architecture (3,504,872 parameters at 1000 classes).

Width multiplier 1.0: a 3x3 stride-2 conv with 32 channels, 17 inverted residual blocks
(expansion t, output channels c, repeats n, first stride s):

    t  c    n  s
    1  16   1  1
    6  24   2  2
    6  32   3  2
    6  64   4  2
    6  96   3  1
    6  160  3  2
    6  320  1  1

then a 1x1 conv to 1280 channels, global average pooling, dropout 0.2 and a linear classifier.
Every conv is followed by BN and (except the block's linear 1x1 projection) ReLU6; a block has
a residual connection when its stride is 1 and its input and output channels agree. Sequence:
stem, each inverted residual block, the 1x1 conv, head (pool - flatten - dropout - linear); 20
items. Default input 3x64x64 to keep it cheap; any resolution works.
"""

from __future__ import annotations

from torch import Tensor, nn

from hdist.models import register

# (expansion t, channels c, repeats n, first stride s)
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to a multiple of ``divisor``, never going below 90% of it (as torchvision)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_relu6(cin, hidden, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, cout, 1, bias=False),  # linear projection
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res else out


@register("mobilenetv2", 1000, (3, 64, 64), "MobileNetV2 (ImageNet), torchvision's architecture")
def mobilenetv2(
    num_classes: int = 1000, input_shape=(3, 64, 64), width_mult: float = 1.0, dropout: float = 0.2
) -> nn.Sequential:
    c = _make_divisible(32 * width_mult)
    last = _make_divisible(1280 * max(1.0, width_mult))
    items: list[nn.Module] = [_conv_bn_relu6(input_shape[0], c, 3, 2)]
    for t, ch, n, s in _SETTINGS:
        cout = _make_divisible(ch * width_mult)
        for i in range(n):
            items.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
            c = cout
    items.append(_conv_bn_relu6(c, last, 1))
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(last, num_classes)]
    items.append(nn.Sequential(*head))
    model = nn.Sequential(*items)
    for m in model.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model
