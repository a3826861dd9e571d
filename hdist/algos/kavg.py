"""K-AVG: K-step averaging SGD (kavg18). K = 1 is synchronous parallel SGD.

Zhou and Cong. On the Convergence Properties of a K-Step Averaging Stochastic Gradient
Descent Algorithm for Nonconvex Optimization. IJCAI 2018. Algorithm 1:

    initialise w~_1
    for n = 1, ..., N:
        every processor P_j, j = 1..P, concurrently:
            w^j <- w~_n
            for k = 1, ..., K:
                sample a mini-batch of size B_n
                w^j <- w^j - (gamma_n / B_n) sum_s grad F(w^j; xi_{k,s}^j)
        synchronise: w~_{n+1} = (1/P) sum_j w^j          # one all-reduce (mean)

Symbols -> config: P = ``topology.workers``, K = ``algo.k``, B_n = ``algo.batch_size``,
gamma_n = ``algo.lr`` under ``algo.schedule`` (the paper: gamma_0 = 1 halved every 50 epochs:
``schedule: step``), the l2 weight of the objective = ``objective.l2``. Each learner draws its
mini-batches from its own shard of the data (seeded from (seed, learner)); an epoch is one pass
over all the data by all learners together. A final average closes a last, shorter round.
"""

from __future__ import annotations

import math

from hdist.algos._ps import FlatModel, Snapshots, Worker
from hdist.devices import synchronize
from hdist.problems import build_problem
from hdist.schedules import lr_at, plain
from hdist.types import AlgoSpec, seed_for

FAMILIES = ("collective",)


def run(ctx, outer=None) -> None:
    """``outer``: an outer optimizer applied to the average after each all-reduce (``start(w)`` before
    the first round, ``step(w)`` after each; DiLoCo's, hdist/algos/diloco.py). None: K-AVG itself."""
    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    problem = build_problem(cfg, ctx.device)
    fm = FlatModel(problem.build_model(seed_for(cfg.seed, 0)))  # w~_1, the same on every learner
    ctx.extra["model"] = fm.model
    w = Worker(ctx, problem)
    k = int(cfg.algo.k)
    l2 = problem.l2
    # Averaging rounds per pass over the data: all learners step together, each over its shard.
    rounds_per_epoch = w.spe_local / k
    total_rounds = math.ceil(w.total_local / k)
    w.spe_global, w.total_global = rounds_per_epoch, total_rounds
    snaps = Snapshots(ctx, rounds_per_epoch, total_rounds) if comm.rank == 0 else None
    ctx.progress.start(total_rounds)
    synchronize(ctx.device)  # the model's copy to the device is no training time
    comm.barrier()
    log.restart_clock()  # every learner's clock starts at the same barrier
    comm.restart_timing()
    if snaps is not None:
        snaps.add(0, fm.flat, 0.0)
    if outer is not None:
        outer.start(fm.flat)
    rounds, local = 0, 0
    algo = plain(cfg.algo)  # read every step: a plain dict, not OmegaConf
    for x, y in w.batches():
        with comm.compute(x.shape[0]):
            loss = problem.data_loss(fm.model(x), y)
            g = fm.grad(loss)
            if l2:
                g.add_(fm.flat, alpha=l2)
            lr = lr_at(algo, (w.step - 1) / w.spe_local)
            reg = w.reg_to_log()  # the logged objective is at the point the gradient was taken
            fm.flat.add_(g, alpha=-lr)  # w^j <- w^j - gamma grad
        local += 1
        if local == k or w.step == w.total_local:
            comm.allreduce(fm.flat, op="mean")  # w~ = (1/P) sum_j w^j: the synchronisation point
            if outer is not None:
                outer.step(fm.flat)  # every learner applies the same outer step to the same average
            rounds += 1
            local = 0
            if snaps is not None and snaps.due(rounds):
                synchronize(ctx.device)  # the snapshot's time counts the steps still queued on the device
                snaps.maybe(rounds, fm.flat, log.wall_s())
        w.log_step(loss, rounds, None, reg=reg)
    synchronize(ctx.device)  # the queued steps finish before the clocks stop
    timing = comm.timing()  # the closing barrier is no round's
    comm.barrier()
    train_s = comm.elapsed_s()
    w.log_totals(timing)
    if snaps is not None:
        snaps.add(rounds, fm.flat, log.wall_s())
        log.log("event", "train_s", train_s)
        snaps.evaluate(ctx, problem, fm)
    comm.barrier()


SPEC = AlgoSpec(FAMILIES, run, precisions=("fp32", "bf16", "fp16"))
