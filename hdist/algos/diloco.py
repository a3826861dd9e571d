"""DiLoCo: K-AVG's local steps with an outer Nesterov step on the averaged delta.

Douillard, Feng, Rusu, Chhaparia, Donchev, Kuncoro, Ranzato, Szlam, Shen. DiLoCo: Distributed
Low-Communication Training of Language Models. arXiv:2311.08105, 2023. Algorithm 1:

    for outer step t = 1 .. T:
        every worker i, concurrently:
            theta_i <- theta^(t-1)
            for inner step h = 1 .. H:
                x ~ D_i
                theta_i <- InnerOpt(theta_i, grad L(x; theta_i))
        Delta^(t) = (1/k) sum_i (theta^(t-1) - theta_i)          # one all-reduce (mean)
        theta^(t) <- OuterOpt(theta^(t-1), Delta^(t))           # Nesterov momentum

The inner steps are K-AVG's (hdist/algos/kavg.py, plain SGD on each worker's shard); the paper's
inner optimizer is AdamW, which hdist leaves out so that DiLoCo is K-AVG plus an outer optimizer.
OuterOpt is SGD with Nesterov momentum on the "outer gradient" Delta, as torch.optim.SGD writes it:
v <- mu v + Delta;  theta <- theta^(t-1) - eta (Delta + mu v).  With eta = 1 and mu = 0 this is
theta <- theta^(t-1) - Delta = the average of the theta_i: K-AVG exactly.

Symbols -> config: k = ``topology.workers``, H = ``algo.k`` (inner steps per round), the inner step
size = ``algo.lr`` under ``algo.schedule``, eta = ``algo.outer_lr``, mu = ``algo.outer_momentum``,
the inner batch = ``algo.batch_size``.
"""

from __future__ import annotations

import torch

from hdist.algos import kavg
from hdist.rules import finite_pos, is_num
from hdist.types import AlgoSpec

FAMILIES = kavg.FAMILIES

#: the value rules of this algorithm's own keys (hdist.rules); K-AVG's keys have theirs in hdist.config.RULES
KEYS = {
    "algo.outer_lr": (finite_pos, "a finite number > 0 (outer step size eta)"),
    "algo.outer_momentum": (lambda v: is_num(v) and 0 <= v < 1, "a number in [0, 1) (Nesterov momentum mu)"),
}


class NesterovOuter:
    """OuterOpt of Algorithm 1: Nesterov momentum on Delta = theta^(t-1) - average(theta_i)."""

    def __init__(self, lr: float, momentum: float):
        self.lr, self.mu = lr, momentum
        self.anchor: torch.Tensor | None = None  # theta^(t-1)
        self.v: torch.Tensor | None = None

    def start(self, theta: torch.Tensor) -> None:
        self.anchor = theta.clone()
        self.v = torch.zeros_like(theta)

    def step(self, theta: torch.Tensor) -> None:
        """``theta`` holds the average of the theta_i on entry and theta^(t) on return."""
        delta = self.anchor - theta  # Delta^(t)
        self.v.mul_(self.mu).add_(delta)
        # theta^(t-1) - eta (Delta + mu v), written from the average: average + (1 - eta) Delta - eta mu v,
        # so that eta = 1, mu = 0 leaves the average's bits untouched (K-AVG exactly).
        theta.add_(delta, alpha=1.0 - self.lr).add_(self.v, alpha=-self.lr * self.mu)
        self.anchor.copy_(theta)


def run(ctx) -> None:
    kavg.run(ctx, outer=NesterovOuter(float(ctx.cfg.algo.outer_lr), float(ctx.cfg.algo.outer_momentum)))


SPEC = AlgoSpec(FAMILIES, run, keys=KEYS, precisions=("fp32", "bf16", "fp16"))
