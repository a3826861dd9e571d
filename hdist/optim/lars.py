"""LARS: layer-wise adaptive rate scaling (You et al. 2017), thesis eq. (4.3), on mNAG (4.6).

    gamma_k = gamma_scale * eta * ||(w_t)_k||_2 / || (1/B) sum_{i in I_t} grad_k f_i(w_t) ||_2

Symbols -> arguments: gamma_scale = the group's ``lr`` (the caller sets gamma_base * B / B_base
times the schedule's factor, e.g. warmup), eta = ``eta`` (1e-3 in the thesis and [106]),
beta = ``momentum``, k = one parameter tensor. Groups with ``layerwise=False`` (see
:func:`hdist.optim.mnag.layer_param_groups`) get the plain rate gamma_scale. Zero norms: the
ratio is taken as 1 (rate gamma_scale * eta), so no NaN or inf ever reaches the weights.
With weight decay wd > 0 the gradient is g_k + wd w_k (mNAG's) and so is the denominator:
hdist uses ||g_k + wd w_k||, not You et al.'s ||g_k|| + wd ||w_k||.
"""

from __future__ import annotations

from hdist.optim.mnag import MNAG, _rate_ratios


class LARS(MNAG):
    def __init__(self, params, lr: float, eta: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0):
        if not eta > 0:
            raise ValueError(f"eta={eta}: expected > 0")
        self.eta = float(eta)
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def layer_rates(self, group, params, grads, extra):
        lr = float(group["lr"])
        if not group.get("layerwise", True):
            return [lr] * len(params)
        return [lr * self.eta * r for r in _rate_ratios([p.norm() for p in params], [g.norm() for g in grads])]
