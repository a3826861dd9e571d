"""Downpour SGD: asynchronous SGD with local steps and K-step push/fetch (kavg18's baseline).

Dean, Corrado, Monga, Chen, Devin, Le, Mao, Ranzato, Senior, Tucker, Yang, Ng. Large Scale
Distributed Deep Networks. NIPS 2012, section 4.1 "Downpour SGD" (client procedure): each model
replica fetches the parameters every n_fetch steps and pushes its accrued gradients every
n_push steps, applying its own gradients to its local copy in between. Zhou & Cong (kavg18,
section 4.1) use it as an ASGD baseline whose "updates to the central parameter server can also
have a K-step delay": n_fetch = n_push = K.

    every replica i, concurrently:
      x_i <- x; delta <- 0                              # the first fetch
      repeat:
        for K steps:
          g <- (1/b) sum_{m in B} grad f(x_i; xi_m) + l2 x_i   # mini-batch B of b samples
          x_i <- x_i - eta g                            # its own gradient, applied locally
          delta <- delta - eta g                        # the accrued update
        x <- x + delta; x_i <- x; delta <- 0            # push, then fetch (one round trip)
      at the end: x <- x + delta                        # push what remains (< K steps)

Symbols -> config: eta = ``algo.lr`` (with ``algo.schedule``/``algo.beta``, by the worker's own
epoch: worker w makes ``scale.epochs`` passes over its shard), K = ``algo.k`` (K=1 is plain
asynchronous SGD, AsySG-con), b = ``algo.batch_size``, replicas = ``topology.workers``, l2 =
``objective.l2``. One push is one update of x (one version); the staleness logged is the
number of other replicas' pushes between this replica's fetch and its push.

Differences from Dean et al.: their client fetches and pushes in background threads and the
server applies its own rule (Adagrad in their experiments); here the push and the fetch are one
blocking round trip on the same K-step boundary, and the server adds the pushed delta as it is
(the replica's learning rate, so with K=1 and one worker this is serial SGD step for step).
"""

from __future__ import annotations

import torch

from hdist.algos._ps import run_ps
from hdist.schedules import lr_at, plain
from hdist.types import AlgoSpec, ConfigError

FAMILIES = ("ps",)


def validate(cfg) -> None:
    m = cfg.algo.get("momentum", 0.0)
    if m:
        raise ConfigError(f"algo.momentum={m!r}: not allowed; expected 0 (Downpour takes plain SGD steps)")


def worker_loop(ctx, problem, fm, w, snaps) -> None:
    cfg, comm = ctx.cfg, ctx.comm
    k = int(cfg.algo.get("k", 1) or 1)
    l2 = problem.l2
    version = comm.pull(fm.flat)  # x_i <- x: the first fetch
    w.pulled(version, fm.flat, snaps)
    delta = torch.zeros_like(fm.flat)
    accrued = 0
    algo = plain(cfg.algo)  # read every step: a plain dict, not OmegaConf
    for x, y in w.batches():
        with comm.compute(x.shape[0]):
            loss = problem.data_loss(fm.model(x), y)  # g at the local copy x_i
            g = fm.grad(loss)
            if l2:
                g.add_(fm.flat, alpha=l2)
            lr = lr_at(algo, (w.step - 1) / w.spe_local)  # this step's epoch index, as serial SGD
            g.mul_(-lr)
            reg = w.reg_to_log()  # the logged objective is at the point the gradient was taken
            fm.flat.add_(g)  # x_i <- x_i - eta g
            delta.add_(g)  # delta <- delta - eta g
        accrued += 1
        staleness = None
        if accrued == k:
            staleness, version = comm.push_pull(delta, version, fm.flat)  # x += delta; x_i <- x
            if comm.has_server:
                staleness = None  # the server logs it (run_ps's on_apply)
            w.pulled(version, fm.flat, snaps)
            delta.zero_()
            accrued = 0
        w.log_step(loss, version, staleness, reg=reg)
    if accrued:
        staleness = comm.push(delta, version)  # the remainder (< K steps)
        log = ctx.log
        log.updates = version + 1 + (staleness or 0)
        if staleness is not None:
            log.log("comm", "staleness", staleness)


def run(ctx) -> None:
    # One update of x stands for K local steps.
    run_ps(ctx, worker_loop, steps_per_update=int(ctx.cfg.algo.get("k", 1) or 1))


SPEC = AlgoSpec(FAMILIES, run, validate=validate, precisions=("fp32", "bf16", "fp16"))
