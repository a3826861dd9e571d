"""Distributed-AsySVRG: asynchronous mini-batch SVRG with a parameter server (huo17, Algorithms 2-3).

Huo, Huang. AAAI 2017 (= thesis ch. 2); also the "distributed SVRG" baseline of thesis fig. 8.

    server (Alg. 2):                               worker k (Alg. 3):
      for s = 0, 1, ..., S-1:
        x~ <- x^s; broadcast x~                      receive x~
        mu <- 1/n sum_k grad^k f(x~)                 send grad^k f(x~) = sum_{i in shard k} grad f_i(x~)
        broadcast mu                                 receive mu
        for t = 0..m-1:                              repeat: receive x_{t-tau}
          receive v from a worker                      I_t <- mini-batch of shard k
          x <- x - eta v                               v <- 1/|I_t| sum (grad f_i(x_{t-tau}) - grad f_i(x~)) + mu
                                                       send v

Symbols -> config: eta = ``algo.lr`` (constant), |I_t| = ``algo.batch_size``, m = ``algo.m``
(all workers together; null = n / |I_t|), K = ``topology.workers``, l2 = ``objective.l2`` (its
gradient at x_{t-tau} added to v), S = enough stages for ``scale.epochs`` passes of inner updates.
``algo.objective``: ``auto`` optimises the model's loss, or the PCA objective (3.40) on the
``pca`` dataset (thesis fig. 8; ``algo.pca_mu`` = mu, ``objective.l2`` = lambda).

Against :class:`~hdist.types.Comm` (design): the server rank runs the parameter server
(``serve``) for the whole run and applies each pushed -eta v as one consistent update (the
worker's ``push_pull`` is "send v, receive the fresh x": Alg. 3's next "receive x_{t-tau}").
The snapshot phase is done by the workers: they meet (a reduce over the workers), each pulls
x~ from the server (the broadcast), the shard sums of grad f_i(x~) are reduced over the workers
and handed back to each (the server's gather and broadcast of mu, relayed by worker 0, since the
server rank is busy serving). Each worker then makes its ceil(m / K) inner iterations. On
backends without a server rank (process, thread) the shared vector is the server.
Runs on mpi, process and sim (and thread, serial).
"""

from __future__ import annotations

from hdist.algos import svrg
from hdist.algos._vr import run_frame
from hdist.types import AlgoSpec

FAMILIES = ("ps",)


def validate(cfg) -> None:
    svrg.validate(cfg)


def worker_loop(ctx, problem, fm, w, snaps) -> None:
    svrg.svrg_loop(ctx, problem, fm, w, snaps, distributed=True)


def run(ctx) -> None:
    run_frame(ctx, worker_loop, zero_init=bool(ctx.cfg.algo.get("zero_init")))


SPEC = AlgoSpec(FAMILIES, run, validate=validate, keys={"algo.m": svrg.KEYS["algo.m"]}, precisions=("fp32", "bf16"))
