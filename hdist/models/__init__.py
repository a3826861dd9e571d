"""hdist's model zoo: every model is an ``nn.Sequential`` of layers or blocks.

Being a sequence is what lets DDG, Features Replay and the thesis' split experiments cut a
model into K sequential stages at chosen points (:func:`split_stages`). Models register
themselves with :func:`register`; ``conf/model/<name>.yaml`` holds each one's defaults.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from hdist.types import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Sequential]
    num_classes: int  # default number of outputs
    input_shape: tuple[int, ...]  # default input shape of one sample (no batch dimension)
    description: str


MODELS: dict[str, ModelSpec] = {}

# Modules that register models on import; a module listed here that is missing is skipped so
# that the zoo can grow file by file.
_MODULES = ("mlp", "linear", "small", "resnet", "vgg", "nin", "densenet", "mobilenetv2", "cifar10_full")


def register(name: str, num_classes: int, input_shape: tuple[int, ...], description: str):
    def deco(fn: Callable[..., nn.Sequential]):
        MODELS[name] = ModelSpec(name, fn, num_classes, tuple(input_shape), description)
        return fn

    return deco


def _load_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"hdist.models.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"hdist.models.{mod}":
                raise


def model_names() -> list[str]:
    _load_all()
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    _load_all()
    if name not in MODELS:
        raise ConfigError(f"model={name}: unknown model; allowed: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, **kwargs: Any) -> nn.Sequential:
    """Build model ``name``; kwargs are its config keys (num_classes, input_shape, ...)."""
    spec = get_spec(name)
    kwargs.setdefault("num_classes", spec.num_classes)
    kwargs.setdefault("input_shape", spec.input_shape)
    kwargs["input_shape"] = tuple(kwargs["input_shape"])
    return spec.build(**kwargs)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def split_stages(model: nn.Sequential, k: int | None = None, cuts: list[int] | None = None) -> list[nn.Sequential]:
    """Cut ``model`` into sequential stages.

    ``cuts`` are indices into the model's top-level sequence where a new stage begins
    (``cuts=[3]`` gives ``model[:3]`` and ``model[3:]``); without them, ``k`` stages of nearly
    equal numbers of parameters are chosen. Composing the stages in order equals the model.
    """
    n = len(model)
    if cuts is None:
        if k is None or k < 1:
            raise ConfigError(f"topology.stages={k}: must be an integer >= 1")
        if k > n:
            raise ConfigError(f"topology.stages={k}: the model has only {n} blocks to split")
        cuts = _balanced_cuts(model, k)
    cuts = sorted(int(c) for c in cuts)
    if any(c <= 0 or c >= n for c in cuts) or len(set(cuts)) != len(cuts):
        raise ConfigError(f"algo.cuts={cuts}: each cut must be a distinct block index in 1..{n - 1}")
    bounds = [0, *cuts, n]
    return [nn.Sequential(*[model[i] for i in range(a, b)]) for a, b in zip(bounds, bounds[1:])]


def _balanced_cuts(model: nn.Sequential, k: int) -> list[int]:
    # Balance by parameter count (+1 per block so parameter-free blocks still count).
    weights = [n_params(m) + 1 for m in model]
    total = sum(weights)
    cuts, acc, target = [], 0, total / k
    for i, w in enumerate(weights[:-1]):
        acc += w
        if len(cuts) < k - 1 and acc >= target * (len(cuts) + 1) and (len(weights) - i - 1) >= (k - 1 - len(cuts)):
            cuts.append(i + 1)
    # Too few cuts (very uneven blocks): take the last free indices.
    i = len(model) - 1
    while len(cuts) < k - 1:
        if i not in cuts:
            cuts.append(i)
        i -= 1
    return sorted(cuts)
