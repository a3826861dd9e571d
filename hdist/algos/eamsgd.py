"""EAMSGD: asynchronous elastic averaging SGD with Nesterov momentum (kavg18's baseline).

Zhang, Choromanska, LeCun. Deep learning with Elastic Averaging SGD. NIPS 2015, Algorithm 2
"Asynchronous EAMSGD: processing by worker i and the master". Zhou & Cong (kavg18, section
4.1) use it as an ASGD baseline in which an elastic force links each learner's parameters to a
centre variable x~ held by the parameter server, exchanged every K steps.

    initialise: x~ = x_0 (the shared x); every worker i: x_i = x~, v_i = 0, t_i = 0
    every worker i, concurrently:
      repeat:
        x <- x_i
        if tau divides t_i:                             # elastic exchange with the master
          read x~;  e <- alpha (x - x~)
          x_i <- x_i - e                                # a) the worker moves toward the centre
          x~  <- x~ + e                                 # b) the centre moves toward the worker
        v_i <- delta v_i - eta g(x + delta v_i)         # Nesterov momentum: gradient at the look-ahead
        x_i <- x_i + v_i
        t_i <- t_i + 1
      at the end: one last exchange (as at t_i = T), so that the last < tau local steps reach x~

Symbols -> config: eta = ``algo.lr`` (with ``algo.schedule``/``algo.beta``, by the worker's own
epoch), delta = ``algo.momentum`` (the paper's 0.9), tau = ``algo.k``, alpha = ``algo.alpha``,
null = beta / p with beta = ``algo.elastic_beta`` (the paper's 0.9) and p = ``topology.workers``
(``algo.beta`` stays the poly-schedule exponent, as in every other algorithm), g = mean
mini-batch gradient of ``algo.batch_size`` samples plus ``objective.l2`` times the point.

The shared x of the parameter-server frame is the centre x~: reads and elastic pushes are
consistent (lock / server), one push is one version, and the evaluation snapshots are of x~,
as in the paper's figures. The mini-batch loss logged is at the look-ahead point x + delta v_i,
where the gradient is taken.
"""

from __future__ import annotations

import torch

from hdist.algos._ps import run_ps
from hdist.rules import is_num, opt
from hdist.schedules import lr_at, plain
from hdist.types import AlgoSpec

FAMILIES = ("ps",)

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.alpha": (opt(lambda v: is_num(v) and 0 < v <= 1), "null or a number in (0, 1] (elastic moving rate)"),
    "algo.elastic_beta": (lambda v: is_num(v) and 0 < v <= 1, "a number in (0, 1] (EASGD's beta = workers * alpha)"),
}


def moving_rate(algo_cfg, n_workers: int) -> float:
    """alpha, or beta / p when ``algo.alpha`` is null (the paper's choice, beta = 0.9)."""
    alpha = algo_cfg.get("alpha")
    if alpha is None:
        alpha = float(algo_cfg.get("elastic_beta", 0.9)) / max(1, n_workers)
    return float(alpha)


def worker_loop(ctx, problem, fm, w, snaps) -> None:
    cfg, comm = ctx.cfg, ctx.comm
    tau = int(cfg.algo.get("k", 1) or 1)
    delta = float(cfg.algo.momentum)
    alpha = moving_rate(cfg.algo, comm.n_workers)
    l2 = problem.l2
    xi = torch.empty_like(fm.flat)
    v = torch.zeros_like(xi)  # v_i = 0
    center = torch.empty_like(xi)
    version = comm.pull(xi)  # x_i = x~

    def exchange() -> int | None:
        """Elastic exchange from the current x_i; returns the push's staleness."""
        nonlocal version
        version = comm.pull(center)  # read x~
        w.pulled(version, center, snaps)
        e = center.sub_(xi).mul_(-alpha)  # e = alpha (x_i - x~), in the read buffer
        xi.sub_(e)  # a) x_i <- x_i - e
        staleness = comm.push(e, version)  # b) x~ <- x~ + e
        version += 1 + (staleness or 0)
        return staleness

    algo = plain(cfg.algo)  # read every step: a plain dict, not OmegaConf
    for x, y in w.batches():
        t = w.step - 1  # t_i: local steps taken before this one
        fm.flat.copy_(xi).add_(v, alpha=delta)  # the look-ahead x + delta v_i, before the exchange
        staleness = exchange() if t % tau == 0 else None
        with comm.compute(x.shape[0]):
            loss = problem.data_loss(fm.model(x), y)
            g = fm.grad(loss)
            if l2:
                g.add_(fm.flat, alpha=l2)
            lr = lr_at(algo, t / w.spe_local)
            v.mul_(delta).sub_(g, alpha=lr)  # v_i <- delta v_i - eta g(x + delta v_i)
            xi.add_(v)  # x_i <- x_i + v_i
        w.log_step(loss, version, staleness)
    staleness = exchange()
    ctx.log.updates = version
    if staleness is not None:
        ctx.log.log("comm", "staleness", staleness)


def run(ctx) -> None:
    # One elastic exchange (update of the centre) every tau local steps.
    run_ps(ctx, worker_loop, steps_per_update=int(ctx.cfg.algo.get("k", 1) or 1))


SPEC = AlgoSpec(FAMILIES, run, keys=KEYS, precisions=("fp32", "bf16", "fp16"))
