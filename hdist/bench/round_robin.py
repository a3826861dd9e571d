"""The serial baseline of ``bench-sim-cost``: the gradients an 8-worker AsySG-con run computes,
computed in a plain loop with no simulator.

P replicas of the model (one per worker, as the sim keeps them), each with its own shard and
sample order; update i is worker (i mod P)'s: read the shared x into its replica, take the
gradient of its next mini-batch, x <- x - lr g. What the sim adds on top of exactly this work
(events, greenlets, the cost model, the server's bookkeeping) is its cost.

``algo.delay`` = d > 0 applies each gradient d updates after it was taken, as an asynchronous
run does (the sim's 8 workers: staleness 7): each replica then reads an x that lacks the d
updates still in flight, the gradients are stale ones, and d + 1 of them are alive at once. What
that costs a plain loop is part of asynchrony, not of simulating it (a reference arm).

``algo.interleave`` > 0 runs that many rounds of plain interpreter work (a heap of closures, a
dict of rows: the kind of code an event loop runs) between updates, untimed: the updates' own
seconds then show what Python run between torch calls does to the torch calls that follow (the
sim runs its events there; :func:`interleaved_python` is the work).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque

import torch

from hdist import devices
from hdist.algos._ps import FlatModel
from hdist.problems import build_problem
from hdist.rules import int_at_least
from hdist.train import steps_per_epoch
from hdist.types import AlgoSpec, seed_for

FAMILIES = ("bench",)

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.replicas": (int_at_least(1), "an integer >= 1 (model replicas of bench_round_robin)"),
    "algo.interleave": (int_at_least(0), "an integer >= 0 (rounds of Python between updates; 0 = none)"),
    "algo.delay": (int_at_least(0), "an integer >= 0 (updates a gradient waits before it is applied; 0 = none)"),
}


def interleaved_python(rounds: int) -> None:
    """Interpreter work like an event loop's, touching no tensor: push ``rounds`` closures on a heap
    and pop and call them, then record a row per round in a dict."""
    q: list = []
    seq = itertools.count()
    rows = {}
    for i in range(rounds):
        heapq.heappush(q, ((i * 7919) % rounds * 1e-6, next(seq), lambda i=i: i + 1))
    while q:
        t, n, action = heapq.heappop(q)
        rows[f"e{n}"] = (t, action(), "done")


def run(ctx) -> None:
    cfg, log = ctx.cfg, ctx.log
    # The run's device (bench-sim-cost's GPU arm: every replica on the one GPU, as the sim keeps its workers).
    device = devices.cfg_device(cfg, 0)
    problem = build_problem(cfg, device)
    p = int(cfg.algo.replicas)
    b = int(cfg.algo.batch_size)
    lr = float(cfg.algo.lr)
    x = FlatModel(problem.build_model(seed_for(cfg.seed, 0))).flat.clone()
    replicas = [FlatModel(problem.build_model(seed_for(cfg.seed, 0))) for _ in range(p)]
    shards = [problem.data.train.shard(w, p) for w in range(p)]
    # Sample orders from CPU generators: the same batches on every device.
    gens = [torch.Generator(device="cpu").manual_seed(seed_for(cfg.seed, w)) for w in range(p)]
    orders = [torch.randperm(len(s), generator=g, device="cpu") for s, g in zip(shards, gens)]
    pos = [0] * p
    total = p * math.ceil(float(cfg.scale.epochs) * steps_per_epoch(len(shards[0]), b))
    rounds = int(cfg.algo.interleave)
    delay = int(cfg.algo.delay)
    in_flight: deque[torch.Tensor] = deque()
    peak = 1  # the most gradients alive at once (delay + 1 once the loop is past its first updates)
    ctx.progress.start(total)
    log.restart_clock()
    devices.synchronize(x.device)  # the clock reads close the GPU's work (nothing on the CPU)
    t0 = time.perf_counter()
    between_s = 0.0
    for i in range(total):
        if rounds:
            # Untimed: only its effect on the update that follows is measured (the GPU's queue keeps
            # running meanwhile, as it would under a simulator's Python).
            tb = time.perf_counter()
            interleaved_python(rounds)
            between_s += time.perf_counter() - tb
        w = i % p
        fm = replicas[w]
        if pos[w] >= len(shards[w]):
            orders[w] = torch.randperm(len(shards[w]), generator=gens[w], device="cpu")
            pos[w] = 0
        xb, yb = shards[w][orders[w][pos[w]:pos[w] + b]]
        pos[w] += b
        fm.flat.copy_(x)
        g = fm.grad(problem.data_loss(fm.model(xb), yb))
        if delay:
            # Stale by design: g lands after the next `delay` gradients are taken, each from an x
            # that lacks it (x_{k+1} = x_k - lr g(x_{k-delay})), the staleness an asynchronous run logs.
            in_flight.append(g)
            peak = max(peak, len(in_flight))
            if len(in_flight) > delay:
                x.add_(in_flight.popleft(), alpha=-lr)
        else:
            x.add_(g, alpha=-lr)
        log.step = log.updates = i + 1
    while in_flight:
        # The updates still in flight when the last gradient is taken land too: as many adds as delay 0.
        x.add_(in_flight.popleft(), alpha=-lr)
    devices.synchronize(device)  # a GPU's queued updates belong to the timed loop
    log.log("train", "s_per_update", (time.perf_counter() - t0 - between_s) / total)
    if rounds:
        log.log("train", "interleaved_s_per_update", between_s / total)
    log.log("train", "gradients_alive_peak", peak)


SPEC = AlgoSpec(FAMILIES, run, keys=KEYS)
