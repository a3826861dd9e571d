"""The model zoo: every registered model builds, has the pinned size, and splits into stages exactly."""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from hdist.config import load_option
from hdist.models import build_model, get_spec, model_names, n_params, split_stages
from hdist.types import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"

# Parameters at each model's default num_classes (1000 for the ImageNet models, else 10; mlp
# 10, linear 1). The ImageNet ones equal torchvision's resnet50 / densenet121 / mobilenet_v2.
PARAMS = {
    "linear": 22,
    "mlp": 79_510,
    "fcn5": 335_114,
    "cnn5": 239_306,
    "resnet8": 78_042,
    "resnet20": 272_474,  # option-B shortcuts; 269,722 with option A (paper: 0.27M)
    "resnet56": 855_770,  # paper: 0.85M
    "resnet110": 1_730_714,  # paper: 1.7M
    "resnet164": 1_704_154,  # paper: 1.7M
    "resnet101": 42_512_970,
    "resnet152": 58_156_618,
    "resnet50": 25_557_032,
    "densenet121": 7_978_856,
    "mobilenetv2": 3_504_872,
    "vgg11_bn": 9_491_018,
    "vgg": 14_986_698,
    "nin": 966_986,
    "cifar10_full": 89_578,
}

NAMES = model_names()


@functools.cache
def _model(name: str) -> nn.Sequential:
    torch.manual_seed(0)
    return build_model(name).eval()


def _input(name: str, shape=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, *(shape or get_spec(name).input_shape), generator=g)


def test_every_model_is_pinned():
    assert sorted(PARAMS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_model(name, one_torch_thread):
    spec = get_spec(name)
    model = _model(name)
    assert isinstance(model, nn.Sequential)
    assert n_params(model) == PARAMS[name]
    x = _input(name)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, spec.num_classes)
        assert torch.isfinite(y).all()
        for k in (2, 3):
            if len(model) < k:
                with pytest.raises(ConfigError):
                    split_stages(model, k)
                continue
            stages = split_stages(model, k)
            assert len(stages) == k
            assert sum(len(s) for s in stages) == len(model)
            assert sum(n_params(s) for s in stages) == n_params(model)
            h = x
            for s in stages:
                h = s(h)
            assert torch.allclose(h, y)


CONV_NETS = [n for n in NAMES if len(get_spec(n).input_shape) == 3 and n != "fcn5"]


@pytest.mark.parametrize("name", CONV_NETS)
def test_conv_nets_take_any_resolution(name):
    c, h, w = get_spec(name).input_shape
    with torch.no_grad():
        y = _model(name)(_input(name, (c, h + 8, w + 16)))
    assert y.shape == (2, get_spec(name).num_classes)


def test_num_classes_and_channels():
    model = build_model("resnet20", num_classes=100, input_shape=(1, 28, 28)).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 100)
    model = build_model("mobilenetv2", num_classes=7)
    assert n_params(model) == PARAMS["mobilenetv2"] - 993 * 1281


def test_resnet_without_bn():
    model = build_model("resnet8", bn=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.bias is not None for m in convs)
    assert n_params(model) == 77_706
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet8_split_points():
    from hdist.models.resnet import RESNET8_SPLIT_POINTS

    model = _model("resnet8")
    assert len(model) == 5  # stem, 3 basic blocks, head
    assert sorted(RESNET8_SPLIT_POINTS) == [1, 3, 5, 7]
    x = _input("resnet8")
    with torch.no_grad():
        y = model(x)
        for layer, cut in RESNET8_SPLIT_POINTS.items():
            a, b = split_stages(model, cuts=[cut])
            # weight layers before the cut (3x3 convs; the 1x1 shortcuts do not count)
            n_weight = sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in a.modules())
            assert n_weight == layer
            assert torch.allclose(b(a(x)), y)


@pytest.mark.parametrize("name", NAMES)
def test_conf_file(name):
    path = CONF / f"{name}.yaml"
    text = path.read_text()
    assert text.startswith("# "), "first line: a comment describing the model"
    for line in text.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            assert re.search(r"\s#\s\S", line), f"{path.name}: key without a comment: {line!r}"
    # The option as composed: a file may inherit its family's keys (defaults: [_resnet_cifar, _self_]).
    cfg = OmegaConf.to_container(load_option("model", name)[1])
    spec = get_spec(cfg.pop("name"))
    assert spec.name == name
    assert cfg.pop("num_classes") == spec.num_classes
    assert tuple(cfg.pop("input_shape")) == spec.input_shape
    inspect.signature(spec.build).bind(**cfg)  # every other key is a builder argument
