"""mNAG: mini-batch Nesterov accelerated gradient, thesis eq. (4.2), per layer as eq. (4.6).

    v_{t+1} = w_t - sum_k gamma_k U_k (1/B) sum_{i in I_t} grad_k f_i(w_t)
    w_{t+1} = v_{t+1} + beta (v_{t+1} - v_t)

Symbols -> arguments: gamma_k = the parameter group's ``lr`` (mNAG: one rate per group; LARS and
CLARS override :meth:`MNAG.layer_rates`), beta = ``momentum`` (0 gives mini-batch gradient
descent, mGD), v = ``state[p]["v"]`` with v_0 = w_0, the averaged gradient = ``p.grad`` (plus
``weight_decay * w`` when set: the gradient of (wd/2)||w||^2). After each step
``state[p]["lr"]`` holds the gamma_k used, for logging.

Parameter groups may carry ``names`` (one per tensor, for logging) and ``layerwise`` (False:
the layer keeps the plain rate ``lr`` under LARS/CLARS); see :func:`layer_param_groups`.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class MNAG(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        if not lr > 0:
            raise ValueError(f"lr={lr}: expected > 0")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum}: expected in [0, 1)")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, layerwise=True,
                                      names=None))

    def ordered_params(self) -> list[torch.Tensor]:
        """Every parameter in group order: the order ``CLARS.step(sample_norms=...)`` expects."""
        return [p for g in self.param_groups for p in g["params"]]

    def layer_rates(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor],
                    extra: list | None) -> list[float]:
        """gamma_k for each tensor of ``group`` (mNAG: the group's rate for all)."""
        return [float(group["lr"])] * len(params)

    @torch.no_grad()
    def step(self, closure=None, **kwargs):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        extra = self._extra(kwargs)
        i = 0
        for group in self.param_groups:
            n = len(group["params"])
            idx = [j for j, p in enumerate(group["params"]) if p.grad is not None]
            params = [group["params"][j] for j in idx]
            ex = [extra[i + j] for j in idx] if extra is not None else None
            i += n
            if not params:
                continue
            wd = float(group["weight_decay"])
            grads = [p.grad.add(p, alpha=wd) if wd else p.grad for p in params]
            rates = self.layer_rates(group, params, grads, ex)
            beta = float(group["momentum"])
            for p, g, rate in zip(params, grads, rates):
                st = self.state[p]
                v_old = st.get("v")
                if v_old is None:
                    v_old = st["v"] = p.detach().clone()  # v_0 = w_0
                v_new = p.add(g, alpha=-rate)  # v_{t+1} = w_t - gamma_k g_k
                p.copy_(v_new).add_(v_new - v_old, alpha=beta)  # w_{t+1} = v_{t+1} + beta (v_{t+1} - v_t)
                v_old.copy_(v_new)
                st["lr"] = rate
        return loss

    def _extra(self, kwargs) -> list | None:
        if kwargs:
            raise TypeError(f"{type(self).__name__}.step: unexpected arguments {sorted(kwargs)}")
        return None


def _rate_ratio(w: float, d: float) -> float:
    """||w|| / d with the zero guard: 1 when either norm is 0 (a zero-initialised bias, a layer
    without gradient), so a rate is always finite and no NaN reaches the weights."""
    return w / d if w > 0 and d > 0 else 1.0


def _rate_ratios(w_norms: list[torch.Tensor], d_norms: list[torch.Tensor]) -> list[float]:
    """:func:`_rate_ratio` of each pair of 0-dim norm tensors. The rates are Python numbers (the ``alpha`` of
    the update), so the norms are read to the host: in two transfers a parameter group, not two device syncs a
    layer (161 tensors in ResNet-50); each value is the one ``float(norm)`` reads."""
    if not w_norms:
        return []
    return [_rate_ratio(a, b) for a, b in zip(_floats(w_norms), _floats(d_norms))]


def _floats(ts: list[torch.Tensor]) -> list[float]:
    """``[float(t) for t in ts]``, in one transfer where the tensors share a dtype and a device."""
    if all(t.dtype == ts[0].dtype and t.device == ts[0].device for t in ts):
        return torch.stack(ts).tolist()
    return [float(t) for t in ts]


def top_level_layers(model: nn.Module) -> list[list[str]]:
    """Parameter names of each top-level child that holds parameters (FCN5: 4, CNN5: 5, ResNet-8:
    5): the "layers" of thesis fig. 9, whose learning rates are probed one at a time."""
    out = []
    for name, child in model.named_children():
        names = [f"{name}.{n}" for n, _ in child.named_parameters()]
        if names:
            out.append(names)
    return out


def layer_param_groups(model: nn.Module, layer_params: str = "all", probe_layer: int | None = None,
                       probe_scale: float = 1.0) -> list[dict]:
    """Parameter groups for MNAG/LARS/CLARS: one entry per parameter tensor (a layer k).

    layer_params: ``all`` (thesis eq. 4.3/4.7: every tensor gets its own layer-wise rate) or
    ``weights`` (tensors with >= 2 dims, i.e. conv and linear weights; biases and BatchNorm
    scale/shift keep the plain rate, as the reference LARS implementation's skip list does).
    probe_layer / probe_scale: the tensors of top-level layer ``probe_layer`` (see
    :func:`top_level_layers`) get ``probe_scale`` times the rate of the others (thesis fig. 9).
    Each group has ``lr_scale``: its rate relative to the base rate the caller sets.
    """
    if layer_params not in ("all", "weights"):
        raise ValueError(f"layer_params={layer_params!r}: expected all or weights")
    probe = set()
    if probe_layer is not None:
        layers = top_level_layers(model)
        if not 0 <= int(probe_layer) < len(layers):
            raise ValueError(f"probe_layer={probe_layer}: the model has {len(layers)} layers (0..{len(layers) - 1})")
        probe = set(layers[int(probe_layer)])
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layerwise = layer_params == "all" or p.dim() >= 2
        scale = float(probe_scale) if name in probe else 1.0
        g = groups.setdefault((layerwise, scale), {"params": [], "names": [], "layerwise": layerwise,
                                                   "lr_scale": scale})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def named_rates(opt: torch.optim.Optimizer) -> Iterable[tuple[str, float]]:
    """(tensor name, gamma_k of the last step) for every parameter that has taken a step."""
    for g in opt.param_groups:
        names = g.get("names") or [str(i) for i in range(len(g["params"]))]
        for name, p in zip(names, g["params"]):
            rate = opt.state[p].get("lr") if p in opt.state else None
            if rate is not None:
                yield name, rate
