"""AsySG-incon: asynchronous stochastic gradient with inconsistent reads, lock-free (lian15).

Lian, Huang, Li, Liu. NIPS 2015. "The procedure of AsySG", inconsistent read (Figure 2:
multicore machine; Hogwild-like):

    every thread, concurrently and without locks:
      1. (Read)    x_hat <- x           # coordinate by coordinate while others write:
                                        #   x_hat_k = x_k - sum_{j in J(k)} (x_{j+1} - x_j)
      2. (Compute) G = (1/M) sum_m grad F(x_hat; xi_m)
      3. (Update)  [x]_{i} <- [x]_{i} - gamma [G]_{i}   for each coordinate (block) i, no lock

Symbols -> config: M = ``algo.batch_size``, gamma = ``algo.lr`` (mean gradient, as in
asysg_con), the coordinate block written at once = ``algo.block`` (null: one vectorised
lock-free write in which coordinates land individually; B: blocks of B coordinates written
in random order). Needs shared memory: thread, process (and sim).
"""

from __future__ import annotations

from hdist.algos import asysg_con
from hdist.algos._ps import run_ps
from hdist.rules import int_at_least, opt
from hdist.types import AlgoSpec

FAMILIES = ("shared",)

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.block": (opt(int_at_least(1)), "null or an integer >= 1 (coordinates per lock-free write)"),
}


def worker_loop(ctx, problem, fm, w, snaps) -> None:
    # Same three steps as AsySG-con; only the reads and writes skip the lock.
    asysg_con.worker_loop(ctx, problem, fm, w, snaps, consistent=False)


def run(ctx) -> None:
    run_ps(ctx, worker_loop)


SPEC = AlgoSpec(FAMILIES, run, keys=KEYS, precisions=("fp32", "bf16", "fp16"))
