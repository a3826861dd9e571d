"""AsySG-con: asynchronous parallel stochastic gradient with consistent reads (lian15).

Lian, Huang, Li, Liu. Asynchronous Parallel Stochastic Gradient for Nonconvex Optimization.
NIPS 2015. "The procedure of AsySG", consistent read (Figure 1: computing cluster):

    every worker, concurrently:
      1. (Read)    x_hat <- x                      # the whole vector, consistent
      2. (Compute) sample M training data xi_1..xi_M; G = (1/M) sum_m grad F(x_hat; xi_m)
      3. (Update)  x <- x - gamma * G               # applied by the server, one update at a time
    so that  x_{k+1} = x_k - gamma * G(x_{k - tau_k}),  tau_k = the update's staleness

Symbols -> config: M = ``algo.batch_size``, gamma = ``algo.lr`` (per mini-batch *mean*
gradient; the paper's sum over M corresponds to gamma_paper = lr / M), workers =
``topology.workers``, the l2 weight of the objective = ``objective.l2`` (added to G).
Consistent reads and writes: a lock on shared memory (thread, process), the server rank on MPI.
"""

from __future__ import annotations

from hdist.algos._ps import run_ps
from hdist.schedules import lr_at, plain
from hdist.types import AlgoSpec

FAMILIES = ("ps",)
CONSISTENT = True


def worker_loop(ctx, problem, fm, w, snaps, consistent: bool = CONSISTENT) -> None:
    cfg, comm = ctx.cfg, ctx.comm
    l2 = problem.l2
    algo = plain(cfg.algo)  # read every step: a plain dict, not OmegaConf
    for x, y in w.batches():
        version = comm.pull(fm.flat, consistent=consistent)  # 1. read x_hat (version k - tau)
        w.pulled(version, fm.flat, snaps)
        with comm.compute(x.shape[0]):
            lr = lr_at(algo, version / w.spe_global)
            loss = problem.data_loss(fm.model(x), y)  # 2. compute G on M samples, as the step -gamma G
            step = fm.grad(loss, scale=-lr)
            if l2:
                step.add_(fm.flat, alpha=-lr * l2)
        # 3. x <- x - gamma G; step is this iteration's own tensor, never touched again: donated.
        staleness = comm.push(step, version, consistent=consistent, donate=True)
        w.log_step(loss, version + 1, staleness)


def run(ctx) -> None:
    run_ps(ctx, worker_loop)


SPEC = AlgoSpec(FAMILIES, run, precisions=("fp32", "bf16", "fp16"))
