"""Shared-AsySVRG: asynchronous mini-batch SVRG on shared memory, lock-free (huo17, Algorithm 1).

Huo, Huang. Asynchronous Mini-Batch Gradient Descent with Variance Reduction for Non-Convex
Optimization. AAAI 2017 (= thesis ch. 2), Algorithm 1:

    initialise x^0
    for s = 0, 1, ..., S-1:
      x~ <- x^s                                          # snapshot
      mu <- grad f(x~) = 1/n sum_i grad f_i(x~)          # full gradient
      in parallel on every thread, m iterations in all:
        x^ <- x                                          # lock-free read (may be torn, eq. 6)
        I_t <- a mini-batch;  k_t <- random coordinates
        v <- 1/|I_t| sum_{i in I_t} (grad f_i(x^) - grad f_i(x~)) + mu     # eq. 5
        (x)_{k_t} <- (x)_{k_t} - eta (v)_{k_t}           # lock-free write of those coordinates
      x^{s+1} <- x

Symbols -> config: eta = ``algo.lr`` (constant, as the paper), |I_t| = ``algo.batch_size``,
m = ``algo.m`` (inner iterations per snapshot, all workers together; null = one pass over the
data, n / |I_t|, which is huo17's m = 1000 for 10k samples and batch 10), the coordinates
written per iteration = ``algo.coords`` (huo17: 1000; null = all), threads = ``topology.workers``,
the l2 weight C = ``objective.l2`` (its exact gradient C x^ is added to v; it cancels in the
difference, so this is eq. 5 for f_i + C/2 ||x||^2), S = enough snapshots for ``scale.epochs``
passes of inner updates. SGD_SVRG (``algo.pretrain_epochs`` > 0, :mod:`hdist.algos.sgd_svrg`)
first runs that many epochs of SGD and starts the SVRG stages from there.

How the snapshot phase runs (design): the paper computes the full gradient before the threads
start. Here every worker takes part: at a barrier the stage's updates are all in x; every
worker reads x~ (a consistent copy), computes the sum of grad f_i(x~) over its own shard, and
an all-reduce over the workers sums the shards' parts (/ n gives mu). Then each worker runs
its ceil(m / P) share of the m inner iterations, lock-free (``pull``/``push`` with
``consistent=False``: x^ may mix coordinates of concurrent writes, as eq. 6 allows). A write of
k_t coordinates is pushed as a full-length delta that is zero off k_t (one lock-free vector
add). Epochs on the x axis count inner updates (m |I_t| samples = one epoch); the full-gradient
pass is not counted there, but its time is in ``wall_s``/``sim_s`` (and on the sim backend it
costs n_k / |I_t| steps of the cost model, an inner iteration two: it takes two gradients).
Runs on thread, process, sim (shared memory) and serial (one worker).
"""

from __future__ import annotations

import math

import torch

from hdist.algos._ps import FlatModel
from hdist.algos._vr import Grad, run_frame, worker_allreduce
from hdist.devices import synchronize
from hdist.rules import finite_nonneg, finite_pos, int_at_least, opt
from hdist.train import Sampler, steps_per_epoch
from hdist.types import AlgoSpec, ConfigError, seed_for

FAMILIES = ("shared",)

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.m": (opt(int_at_least(1)), "null or an integer >= 1 (inner iterations per snapshot)"),
    "algo.coords": (opt(int_at_least(1)), "null or an integer >= 1 (coordinates written per iteration)"),
    "algo.pretrain_epochs": (finite_nonneg, "a finite number >= 0 (epochs of SGD pretraining)"),
    "algo.pretrain_lr": (finite_pos, "a finite number > 0"),
}


def validate(cfg) -> None:
    if cfg.algo.get("schedule", "constant") != "constant":
        raise ConfigError(f"algo.schedule={cfg.algo.schedule}: not allowed; expected constant (SVRG keeps eta fixed)")


def inner_m(cfg, n: int) -> int:
    """m: inner iterations per snapshot (all workers together)."""
    m = cfg.algo.get("m")
    return int(m) if m else steps_per_epoch(n, int(cfg.algo.batch_size))


def pretrain_sgd(ctx, problem, fm: FlatModel, epochs: float, lr: float) -> int:
    """SGD_SVRG's start: ``epochs`` passes of plain mini-batch SGD on the whole training set
    (its own sample order from the run seed); returns the steps taken. Changes fm in place."""
    cfg = ctx.cfg
    train = problem.data.train
    b = int(cfg.algo.batch_size)
    spe = steps_per_epoch(len(train), b)
    total = max(0, math.ceil(float(epochs) * spe))
    gen = torch.Generator(device="cpu").manual_seed(seed_for(cfg.seed, 10_007))
    order = Sampler(len(train), b, gen)
    for step in range(total):
        x, y = train[order.indices(step)]
        if problem.has_transform:
            x = problem.train_batch(x, gen)
        with ctx.comm.compute(x.shape[0]):
            g = fm.grad(problem.data_loss(fm.model(x), y))
            if problem.l2:
                g.add_(fm.flat, alpha=problem.l2)
            with torch.no_grad():
                fm.flat.add_(g, alpha=-lr)
    return total


def svrg_loop(ctx, problem, fm, w, snaps, distributed: bool = False) -> None:
    """The stages of Algorithm 1 (``distributed=False``) or Algorithms 2-3 (True; see dist_svrg)."""
    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    lr = float(cfg.algo.lr)
    l2 = problem.l2
    n = len(problem.data.train)
    P = comm.n_workers
    m = inner_m(cfg, n)
    m_local = max(1, math.ceil(m / P))
    # S snapshots: enough stages for scale.epochs passes of inner updates (the same S on every
    # worker: the snapshot phase is collective).
    S = max(1, math.ceil(float(cfg.scale.epochs) * w.spe_global / (m_local * P)))
    if cfg.algo.get("max_steps"):
        S = max(1, min(S, math.ceil(int(cfg.algo.max_steps) / (m_local * P))))
    w.total_local, w.total_global = S * m_local, S * m_local * P
    d = fm.numel
    coords = cfg.algo.get("coords")
    coords = None if distributed or not coords or int(coords) >= d else int(coords)
    grad = Grad(cfg, problem)
    snap = FlatModel(problem.build_model(seed_for(cfg.seed, 0)))  # the model at x~
    mu = torch.zeros(d, device=fm.flat.device)
    delta = torch.zeros(d, device=fm.flat.device)
    version = 0

    pre = float(cfg.algo.get("pretrain_epochs") or 0)
    if pre > 0 and not distributed:
        # SGD_SVRG: worker 0 pre-trains from x^0 and writes the result; the others wait.
        if comm.worker_index == 0:
            with comm.compute():  # the pre-training is this worker's compute, its messages included
                x0 = fm.flat.clone()
                steps = pretrain_sgd(ctx, problem, fm, pre, float(cfg.algo.get("pretrain_lr") or lr))
                version = comm.push(fm.flat - x0, 0, consistent=True) or 0
                version = comm.pull(fm.flat, consistent=True)
                if snaps is not None:
                    synchronize(ctx.device)  # the pre-training's queued steps are in the snapshot's time
                    snaps.add(version, fm.flat, log.wall_s())
            log.log("event", "pretrain_steps", steps)
        with comm.untimed():  # the others' wait for worker 0's pre-training is in no account
            comm.barrier()

    batches = w.batches()
    for _s in range(S):
        # --- snapshot and full gradient: collective over the workers ----------------------------
        comm.mark_step()  # a stage's snapshot phase is a step of its own
        if distributed:
            # the workers meet: every push of the stage is applied
            worker_allreduce(comm, torch.zeros(1, device=mu.device))
        else:
            comm.barrier()  # every update of the previous stage is in x
        version = comm.pull(snap.flat, consistent=True)  # x~ <- x^s (Alg. 2: the server's broadcast)
        b = max(1, int(cfg.algo.batch_size))
        with comm.compute():
            mu.copy_(grad.shard_sum(snap, w.shard))  # this shard's sum of grad f_i(x~)
            for _ in range(math.ceil(len(w.shard) / b)):
                comm.compute_done(b)  # sim: the pass costs n_k / b steps
        worker_allreduce(comm, mu)  # sum over shards (Alg. 2: gathered by the server)
        mu.div_(n)
        fm.flat.copy_(snap.flat)
        log.log("train", "full_grad_norm_sq", float(mu @ mu))
        # --- m inner iterations (this worker's share) ----------------------------------------
        for _t in range(m_local):
            x, y = next(batches)
            if not distributed:
                version = comm.pull(fm.flat, consistent=False)  # x^ (lock-free, possibly torn)
                w.pulled(version, fm.flat, snaps)
            with comm.compute(x.shape[0]):
                loss, g = grad.batch(fm, x, y)  # grad f_I(x^)
                _, g_snap = grad.batch(snap, x, y)  # grad f_I(x~)
                g.sub_(g_snap).add_(mu)  # v (eq. 5 / 16)
                if l2:
                    g.add_(fm.flat, alpha=l2)
                comm.compute_done(x.shape[0])  # two gradients per inner iteration: the block charges the other
                if coords is None:
                    delta.copy_(g).mul_(-lr)
                else:
                    # k_t, drawn on the host from the worker's generator (the same coordinates on every device)
                    k = torch.randperm(d, generator=w.gen, device="cpu")[:coords].to(delta.device)
                    delta.zero_()
                    delta[k] = g[k] * -lr
            if distributed:
                staleness, version = comm.push_pull(delta, version, fm.flat)  # send v; receive fresh x
                if comm.has_server:
                    staleness = None  # the server logs it
                w.pulled(version, fm.flat, snaps)
                applied = version
            else:
                staleness = comm.push(delta, version, consistent=False)  # (x)_k <- (x)_k - eta (v)_k
                applied = version + 1 + (staleness or 0)
            w.log_step(loss, applied, staleness)


def worker_loop(ctx, problem, fm, w, snaps) -> None:
    svrg_loop(ctx, problem, fm, w, snaps, distributed=False)


def run(ctx) -> None:
    run_frame(ctx, worker_loop)


SPEC = AlgoSpec(FAMILIES, run, validate=validate, keys=KEYS, precisions=("fp32", "bf16"))
