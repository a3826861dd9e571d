"""The serial baseline of ``bench-sim-cost``: the gradients an 8-worker AsySG-con run computes,
computed in a plain loop with no simulator.

P replicas of the model (one per worker, as the sim keeps them), each with its own shard and
sample order; update i is worker (i mod P)'s: read the shared x into its replica, take the
gradient of its next mini-batch, x <- x - lr g. What the sim adds on top of exactly this work
(events, greenlets, the cost model, the server's bookkeeping) is its cost.
"""

from __future__ import annotations

import math
import time

import torch

from hdist.algos._ps import FlatModel
from hdist.problems import build_problem
from hdist.train import steps_per_epoch
from hdist.types import seed_for

FAMILIES = ("bench",)


def run(ctx) -> None:
    cfg, log = ctx.cfg, ctx.log
    problem = build_problem(cfg)
    p = int(cfg.algo.replicas)
    b = int(cfg.algo.batch_size)
    lr = float(cfg.algo.lr)
    x = FlatModel(problem.build_model(seed_for(cfg.seed, 0))).flat.clone()
    replicas = [FlatModel(problem.build_model(seed_for(cfg.seed, 0))) for _ in range(p)]
    shards = [problem.data.train.shard(w, p) for w in range(p)]
    gens = [torch.Generator().manual_seed(seed_for(cfg.seed, w)) for w in range(p)]
    orders = [torch.randperm(len(s), generator=g) for s, g in zip(shards, gens)]
    pos = [0] * p
    total = p * math.ceil(float(cfg.scale.epochs) * steps_per_epoch(len(shards[0]), b))
    ctx.progress.start(total)
    log.restart_clock()
    t0 = time.perf_counter()
    for i in range(total):
        w = i % p
        fm = replicas[w]
        if pos[w] >= len(shards[w]):
            orders[w] = torch.randperm(len(shards[w]), generator=gens[w])
            pos[w] = 0
        xb, yb = shards[w][orders[w][pos[w]:pos[w] + b]]
        pos[w] += b
        fm.flat.copy_(x)
        g = fm.grad(problem.data_loss(fm.model(xb), yb))
        x.add_(g, alpha=-lr)
        log.step = log.updates = i + 1
    log.log("train", "s_per_update", (time.perf_counter() - t0) / total)
