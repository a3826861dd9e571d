"""kavg18 Theorem 3.4: the bound B(K) of eq. (3.44), the K that minimises it, and estimates of L, M, F(w1) - F*.

Zhou and Cong, On the Convergence Properties of a K-Step Averaging SGD Algorithm for Nonconvex Optimization
(IJCAI 2018), section 3.4. With S = N * K local steps per learner held fixed (the same number of epochs for
every K), a fixed step size gamma and batch size B, Theorem 3.1's bound (3.2) on the average squared gradient
norm reads (3.43)

    (1/N) E sum_j ||grad F(w~_j)||^2  <=  B(K) := (alpha + beta K + eta (2K - 1)(K - 1)) * K / (K - 1 + delta)  (3.44)

    alpha = 2 (F(w~_1) - F*) / (S gamma),   beta = L gamma M / (P B),   eta = L^2 gamma^2 M / (6 B)       (3.45)

under Assumptions 1-4 (L: Lipschitz constant of grad F; M: bound on the variance of one sample's stochastic
gradient) and the step-size conditions (3.41)

    1 >= L^2 gamma^2 (K + 1)(K - 2) / 2 + L gamma K     and     1 - delta >= L^2 gamma^2,   0 < delta < 1.

K_opt = argmin over K in N* of B(K) (3.46). The first factor of B grows with K and K / (K - 1 + delta)
falls, so B(2) < B(1), i.e. (3.47)

    (1 - delta) / (2 delta) alpha  >  (3 delta - 1) / (2 delta) beta + 3 eta,

is sufficient for K_opt > 1; it holds exactly when delta < delta* = (alpha + beta) / (alpha + 3 beta + 6 eta)
(:func:`delta_star`). (The paper's (3.42) writes the last term as L^2 gamma^2 M / (3 B); substituting
(3.45) into (3.47) gives 3 eta = L^2 gamma^2 M / (2 B): :func:`k_opt_above_one` uses (3.47), which is what
B(2) < B(1) is, and the unit test checks the two agree.)

delta: this module uses the largest delta the second condition allows, delta = 1 - (L gamma)^2 (B falls as delta
grows, so this is the tightest bound); it exists only when L gamma < 1. Where L gamma >= 1 the theorem does not
apply: :func:`delta_of` returns NaN and so do B and K_opt. The first condition limits K: :func:`k_max` is the
largest K it admits at a given gamma (:func:`conditions_hold`), :func:`gamma_admissible` the largest gamma at which
it admits every K of a sweep. Deep networks trained at useful step sizes have L gamma far above 1 (the probe
finds L ~ 76 for VGG-16 at w~_1 on the CIFAR-10 stand-in, so gamma = 0.1 gives L gamma ~ 7.6), so the
figures evaluate B(K) at
min(gamma, :func:`gamma_admissible`) and say which gamma that was.

Estimates (what the figures feed in; :func:`probe` and :func:`gap_from_runs`):

- F(w~_1) - F*: F(w~_1) is the full training loss every K-AVG run logs at update 0 (``train_loss_full``;
  all runs of a seed start from the same w~_1); F* is not known, so the lowest training loss any run of
  the sweep reaches stands in for it (a lower value, e.g. 0 for the cross-entropy, can be passed instead).
- S: the local steps per learner, logged by every K-AVG run as ``updates_total``.
- gamma, B, P: the run's ``algo.lr`` (gamma_0: the theorem assumes a fixed step; smoke and small runs end
  before the first halving), ``algo.batch_size``, ``topology.workers``.
- L and M: a short probe at w~_1 (:func:`probe`), on the run's own problem and model:
  M = B x the sample variance of ``batches`` independent mini-batch gradients of size B (so it is the
  per-sample variance the theorem divides by B, measured the way the algorithm draws its gradients:
  BatchNorm normalises over the mini-batch, so per-sample gradients would be a different quantity);
  L = the largest |eigenvalue| of the Hessian of the loss on a fixed batch of ``hvp_samples`` samples
  (power iteration on central-difference Hessian-vector products, ``iters`` of them), the local smoothness at
  w~_1 - a lower estimate of the global L of Assumption 1, which no finite probe can give. Dropout masks are
  the same in every product, so the Hessian is of one fixed function. The probe's cost is ``batches``
  mini-batch gradients plus 2 x ``iters`` gradients on ``hvp_samples`` samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class Setting:
    """The quantities B(K) depends on: constants of the problem (L, M, gap = F(w~_1) - F*) and of the run."""

    L: float  # Lipschitz constant of the gradient (Assumption 1)
    M: float  # variance bound of one sample's stochastic gradient (Assumption 4)
    gap: float  # F(w~_1) - F* (Assumption 2)
    gamma: float  # fixed step size
    B: int  # mini-batch size per learner step
    P: int  # learners
    S: int  # local steps per learner, S = N * K (fixed as K varies)

    def as_dict(self) -> dict:
        return asdict(self)


def coefficients(s: Setting) -> tuple[float, float, float]:
    """(alpha, beta, eta) of eq. (3.45)."""
    alpha = 2.0 * s.gap / (s.S * s.gamma)
    beta = s.L * s.gamma * s.M / (s.P * s.B)
    eta = s.L ** 2 * s.gamma ** 2 * s.M / (6.0 * s.B)
    return alpha, beta, eta


def delta_of(s: Setting) -> float:
    """The largest delta of (3.41): 1 - (L gamma)^2; NaN where L gamma >= 1 (no delta in (0, 1) exists)."""
    lg2 = (s.L * s.gamma) ** 2
    return 1.0 - lg2 if lg2 < 1.0 else math.nan


def bound(k, s: Setting, delta: float | None = None):
    """B(K) of eq. (3.44) at K = ``k`` (a number or an array); ``delta`` defaults to :func:`delta_of`."""
    d = delta_of(s) if delta is None else float(delta)
    a, b, e = coefficients(s)
    k = np.asarray(k, dtype=float)
    out = (a + b * k + e * (2 * k - 1) * (k - 1)) * k / (k - 1 + d)
    return float(out) if out.ndim == 0 else out


def x_max(k: int) -> float:
    """Largest L gamma at which the first condition of (3.41) holds at K = ``k``: the positive root of
    (K + 1)(K - 2)/2 x^2 + K x = 1 (x = 1/2 at K = 2; no limit at K = 1, where the second condition's L gamma < 1
    is the only one, so 1 is returned)."""
    k = int(k)
    a, b = (k + 1) * (k - 2) / 2.0, float(k)
    if a < 0:  # K = 1: -x^2 + x <= 1 for every x
        return 1.0
    if a == 0:  # K = 2
        return 1.0 / b
    return (-b + math.sqrt(b * b + 4 * a)) / (2 * a)


def gamma_admissible(L: float, ks: Iterable[int], margin: float = 0.99) -> float:
    """The largest step size at which Theorem 3.4's conditions (3.41) hold for every K in ``ks`` (with some delta
    in (0, 1)): min over K of :func:`x_max` / L, times ``margin`` where that would make L gamma = 1 (delta = 0)."""
    x = min(x_max(k) for k in ks)
    return (x if x < 1.0 else margin) / L


def k_max(L: float, gamma: float, cap: int = 1 << 20) -> int:
    """Largest K with 1 >= (L gamma)^2 (K + 1)(K - 2) / 2 + L gamma K (3.41); 0 if even K = 1 fails."""
    x = L * gamma

    def ok(k: int) -> bool:
        return x * x * (k + 1) * (k - 2) / 2 + x * k <= 1.0

    if not ok(1):
        return 0
    lo, hi = 1, 2
    while hi < cap and ok(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # ok(lo), not ok(hi): the left side grows with K for K >= 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def conditions_hold(k: int, s: Setting) -> bool:
    """Both conditions of (3.41) at K = ``k`` with delta = :func:`delta_of`."""
    return math.isfinite(delta_of(s)) and k <= k_max(s.L, s.gamma)


def k_opt(s: Setting, ks: Iterable[int] | None = None, k_limit: int = 4096, delta: float | None = None) -> float:
    """K_opt = argmin B(K) (3.46) over ``ks`` (default 1..``k_limit``); the smallest K on ties; NaN if B is."""
    ks = list(range(1, k_limit + 1)) if ks is None else sorted(int(k) for k in ks)
    vals = np.asarray(bound(ks, s, delta), dtype=float).reshape(-1)
    if not len(ks) or not np.isfinite(vals).any():
        return math.nan
    return int(ks[int(np.nanargmin(vals))])


def delta_star(s: Setting) -> float:
    """The delta below which (3.47) holds: rearranged, (1 - delta) alpha > (3 delta - 1) beta + 6 delta eta reads
    delta < (alpha + beta) / (alpha + 3 beta + 6 eta). With delta = 1 - (L gamma)^2, K_opt > 1 is guaranteed once
    (L gamma)^2 > 1 - delta_star (the paper's reading: a larger L gives a larger K_opt)."""
    a, b, e = coefficients(s)
    return (a + b) / (a + 3 * b + 6 * e)


def k_opt_above_one(s: Setting, delta: float | None = None) -> bool:
    """The sufficient condition (3.47) for K_opt > 1 (equivalently B(2) < B(1))."""
    d = delta_of(s) if delta is None else float(delta)
    if not math.isfinite(d):
        return False
    a, b, e = coefficients(s)
    return (1 - d) / (2 * d) * a > (3 * d - 1) / (2 * d) * b + 3 * e


# ---------------------------------------------------------------------------------------------------------------
# Estimates
# ---------------------------------------------------------------------------------------------------------------


def gap_from_runs(df, f_star: float | None = None) -> tuple[float, float]:
    """(F(w~_1), F*) from a results table's ``train_loss_full`` rows: F(w~_1) is the mean over runs of the value
    at update 0, F* the lowest value any run reaches (unless ``f_star`` is given). NaN without rows."""
    d = df[(df["metric"] == "train_loss_full") & np.isfinite(df["value"].astype(float))]
    if d.empty:
        return math.nan, math.nan
    starts = d[d["updates"] == 0].groupby("run_id")["value"].first()
    f1 = float(starts.mean()) if len(starts) else math.nan
    fs = float(d["value"].min()) if f_star is None else float(f_star)
    return f1, fs


def _flat_grad(params, loss):
    import torch

    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def _shift(params, v, alpha: float) -> None:
    """params += alpha v (v flat, in the parameters' order), in place."""
    import torch

    off = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.add_(v[off:off + n].view_as(p), alpha=alpha)
            off += n


def probe(problem, model, batch_size: int, *, batches: int = 8, hvp_samples: int = 64, iters: int = 10,
          seed: int = 0, eval_samples: int | None = 1024, rel_step: float = 1e-3) -> dict[str, float]:
    """Estimates of L, M and F at the model's weights (see the module doc for what each one is).

    Returns ``L`` (power-iteration estimate of the Hessian's spectral norm, plus the l2 weight), ``M``
    (B x the sample variance of ``batches`` mini-batch gradients), ``grad_norm_sq`` (||mean gradient||^2 minus
    its variance's share: an unbiased estimate of ||grad F||^2), ``F1`` (full training loss on at most
    ``eval_samples`` samples, plus the regulariser) and the probe's sizes. Gradients are taken in training mode
    (BatchNorm batch statistics, dropout, augmentation), as the algorithm takes them. A Hessian-vector product is
    the central difference (grad F(w + h v) - grad F(w - h v)) / (2 h), h = ``rel_step`` x max(1, ||w||) with
    ||v|| = 1 (exact for a quadratic; two gradients instead of a double backward pass, which is several times
    dearer on a CPU), with the same batch and the same dropout masks each time. The weights are restored
    (BatchNorm running statistics move).
    """
    import torch

    train = problem.data.train
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    # Batches, masks and the power iteration's start from a CPU generator: the same draws on every device.
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    b = max(1, min(int(batch_size), len(train)))
    model.eval()  # F first, as a run's evaluation at update 0 sees the model (before any BatchNorm statistics move)
    with torch.no_grad():
        F1 = float(problem.evaluate(model, train, eval_samples)["loss"])
    if problem.l2:
        F1 += problem.reg_value(model)
    model.train()
    # torch.manual_seed seeds every device's generator: a GPU's (dropout there) is restored too.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        grads = []
        for _ in range(max(2, int(batches))):
            x, y = train[torch.randperm(len(train), generator=gen, device="cpu")[:b]]
            if problem.has_transform:
                x = problem.train_batch(x, gen)
            grads.append(_flat_grad(params, problem.data_loss(model(x), y)).detach())
        mean = torch.stack(grads).mean(0)
        # E||g_B - grad F||^2 = M / B, estimated by the sample variance (float32 sums are pairwise: accurate enough)
        var = sum(float(torch.linalg.vector_norm(g - mean)) ** 2 for g in grads) / (len(grads) - 1)
        M = b * var
        grad_norm_sq = float(torch.linalg.vector_norm(mean)) ** 2 - var / len(grads)
        del grads

        n = max(1, min(int(hvp_samples), len(train)))
        x, y = train[torch.randperm(len(train), generator=gen, device="cpu")[:n]]
        if problem.has_transform:
            x = problem.eval_batch(x)
        mask_seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device="cpu"))
        w_norm = float(torch.linalg.vector_norm(torch.cat([p.detach().reshape(-1) for p in params])))
        h = rel_step * max(1.0, w_norm)

        def grad_at(v, alpha):
            _shift(params, v, alpha)
            torch.manual_seed(mask_seed)  # the same dropout masks at w + h v and w - h v
            try:
                return _flat_grad(params, problem.data_loss(model(x), y)).detach()
            finally:
                _shift(params, v, -alpha)

        v = torch.randn(mean.numel(), generator=gen, dtype=mean.dtype, device="cpu").to(mean.device)
        v /= torch.linalg.vector_norm(v)
        norm = 0.0
        for _ in range(max(1, int(iters))):
            hv = (grad_at(v, h) - grad_at(v, -h)) / (2 * h)
            norm = float(torch.linalg.vector_norm(hv))  # ||H v|| with ||v|| = 1: rises to the spectral norm of H
            if norm == 0.0 or not math.isfinite(norm):
                break
            v = hv / norm
        L = norm + float(problem.l2)
    model.eval()
    return {"L": float(L), "M": float(M), "grad_norm_sq": grad_norm_sq, "F1": F1, "B": float(b),
            "batches": float(max(2, int(batches))), "hvp_samples": float(n), "iters": float(iters)}
