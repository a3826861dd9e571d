"""CLARS: complete layer-wise adaptive rate scaling, thesis Algorithm 8, eq. (4.7) / (4.8).

    gamma_k = gamma_scale * eta * ||(w_t)_k||_2 / ( (1/B) sum_{i in I_t} ||grad_k f_i(w_t)||_2 )     (4.7)
            = LARS's rate (4.3) * ||(1/B) sum_i grad_k f_i|| / ((1/B) sum_i ||grad_k f_i||)            (4.8)

then the mNAG update (4.6). Symbols -> arguments: gamma_scale = the group's ``lr``, eta = ``eta``
(Algorithm 8: 0.01), beta = ``momentum``, k = one parameter tensor. The denominator, the mean
over the batch of the layer's per-sample gradient norms, is passed to each step:
``opt.step(sample_norms=[...])``, one value per tensor in :meth:`MNAG.ordered_params` order.
:class:`SampleGradStats` computes it with ``torch.func`` (vmap of per-sample gradients), over
the whole batch (eq. 4.7 exactly) or, as thesis section 4.4.4 does to save time, over a
subsample J of the batch (|J| = 512 there): (1/|J|) sum_{j in J} ||grad_k f_j||, an unbiased
estimate of the same mean. Zero norms: the ratio is taken as 1 (no NaN).

Weight decay (wd > 0): the step's gradient is ``g + wd w`` (mNAG adds the gradient of
(wd/2)||w||^2), so the per-sample gradients of the denominator are ``grad_k f_i + wd w_k`` too
(:class:`SampleGradStats` with ``weight_decay``): hdist's CLARS denominator is
(1/B) sum_i ||grad_k f_i + wd w_k||, and its LARS denominator ||(1/B) sum_i grad_k f_i + wd w_k||
(not You et al.'s ||g_k|| + wd ||w_k||). With these, identity (4.8) holds with weight decay, and
CLARS on a batch of one sample is LARS exactly.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn

from hdist.optim.mnag import MNAG, _rate_ratios


class CLARS(MNAG):
    def __init__(self, params, lr: float, eta: float = 1e-2, momentum: float = 0.9, weight_decay: float = 0.0):
        if not eta > 0:
            raise ValueError(f"eta={eta}: expected > 0")
        self.eta = float(eta)
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _extra(self, kwargs) -> list:
        norms = kwargs.pop("sample_norms", None)
        if kwargs:
            raise TypeError(f"CLARS.step: unexpected arguments {sorted(kwargs)}")
        n = len(self.ordered_params())
        if norms is None or len(norms) != n:
            raise ValueError(f"CLARS.step needs sample_norms: the mean per-sample gradient norm of each of the "
                             f"{n} parameter tensors (see hdist.optim.SampleGradStats); got "
                             f"{None if norms is None else len(norms)}")
        return list(norms)

    def layer_rates(self, group, params, grads, extra):
        lr = float(group["lr"])
        if not group.get("layerwise", True):
            return [lr] * len(params)
        denominators = [torch.as_tensor(d, device=p.device) for p, d in zip(params, extra)]
        ratios = _rate_ratios([p.norm() for p in params], denominators)
        return [lr * self.eta * r for r in ratios]


class SampleGradStats:
    """Per-layer statistics of per-sample gradients at the model's current weights.

    For a batch (x, y) it returns, per parameter tensor k (in the order of ``params``):
    ``norm_sum[k]`` = sum_i ||grad_k f_i||_2 (CLARS's denominator times n), ``sq_sum[k]`` =
    sum_i ||grad_k f_i||^2 and, when asked, ``grad_sum[k]`` = sum_i grad_k f_i (for the variance
    factor M_k of thesis 4.4.3), with ``n``. f_i is ``loss_fn`` on sample i alone, plus
    ``weight_decay`` times the weights: grad_k f_i + wd w_k, the per-sample version of the
    gradient the optimizer steps with (see the module doc).

    BatchNorm: a per-sample gradient needs each sample to pass the network alone, so a private
    copy of the model has its BatchNorm layers normalise each sample by its own statistics
    (``torch.func.replace_all_batch_norm_modules_``, the torch.func recipe; the live model's
    running statistics are never touched). Dropout draws independently per sample.
    Per-sample gradients are materialised ``chunk`` samples at a time, sized so that one chunk
    holds at most ``max_bytes`` (ResNet-50: 2 samples per 256 MiB).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, params: Sequence[torch.Tensor] | None = None,
                 max_bytes: int = 256 << 20, weight_decay: float = 0.0):
        from torch.func import replace_all_batch_norm_modules_

        self.weight_decay = float(weight_decay)

        self.model, self.loss_fn = model, loss_fn
        names = {id(p): n for n, p in model.named_parameters()}
        params = list(model.parameters()) if params is None else list(params)
        self.names = [names[id(p)] for p in params]
        self.params = params
        self.fmodel = copy.deepcopy(model)
        replace_all_batch_norm_modules_(self.fmodel)
        n_params = sum(p.numel() for p in params)
        self.chunk = max(1, int(max_bytes) // max(1, 4 * n_params))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, want_sum: bool = False) -> dict:
        from torch.func import functional_call, grad, vmap

        self.fmodel.train(self.model.training)
        live = dict(zip(self.names, (p.detach() for p in self.params)))
        buffers = {k: v for k, v in self.fmodel.named_buffers()}
        loss_fn = self.loss_fn

        def one(p, xi, yi):
            out = functional_call(self.fmodel, (p, buffers), (xi.unsqueeze(0),))
            return loss_fn(out, yi.unsqueeze(0))

        per_sample = vmap(grad(one), in_dims=(None, 0, 0), randomness="different")
        k = len(self.names)
        device = self.params[0].device if self.params else x.device  # the sums live beside the weights
        norm_sum = [torch.zeros((), dtype=torch.float64, device=device) for _ in range(k)]
        sq_sum = [torch.zeros((), dtype=torch.float64, device=device) for _ in range(k)]
        grad_sum = [torch.zeros_like(p) for p in self.params] if want_sum else None
        with torch.no_grad():
            for lo in range(0, x.shape[0], self.chunk):
                xs, ys = x[lo:lo + self.chunk], y[lo:lo + self.chunk]
                with torch.enable_grad():
                    g = per_sample(live, xs, ys)
                for j, name in enumerate(self.names):
                    if self.weight_decay:
                        g[name] = g[name] + self.weight_decay * live[name].unsqueeze(0)
                    gj = g[name].reshape(xs.shape[0], -1)
                    sq = gj.pow(2).sum(1, dtype=torch.float64)
                    sq_sum[j] += sq.sum()
                    norm_sum[j] += sq.sqrt().sum()
                    if want_sum:
                        grad_sum[j] += g[name].sum(0)
                del g
        return {"norm_sum": norm_sum, "sq_sum": sq_sum, "grad_sum": grad_sum, "n": int(x.shape[0])}

    def variance_factor(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Thesis 4.4.3: M_k ~= ((1/n) sum_i ||grad_k f_i||^2) / ||(1/n) sum_i grad_k f_i||^2 on
        the samples (x, y), per tensor name (inf when the mean gradient of a layer is 0)."""
        s = self(x, y, want_sum=True)
        n = s["n"]
        out = {}
        for name, sq, gs in zip(self.names, s["sq_sum"], s["grad_sum"]):
            mean_sq = float(gs.double().div(n).pow(2).sum())
            out[name] = float(sq) / n / mean_sq if mean_sq > 0 else float("inf")
        return out
