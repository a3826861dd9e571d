"""Benchmark ``bench-pool``: steps/s of 1 vs 2 torch threads, on a tiny and on a big model.

The measurement behind :data:`hdist.threads.SMALL_STEP_FLOP` (the thread rule of ``backend.threads``
and ``backend.threads_per_rank`` when left null). Both sides run in this one process on the same
model (``model``), batch (``algo.batch_size``) and data, alternating for ``algo.reps`` repetitions of
``algo.steps`` training steps each (forward, backward, SGD step); the only difference is
``torch.set_num_threads``.

Rows: ``metric=steps_per_s``, ``role`` = threads1 | threads2, ``step`` = repetition index; one
``event`` row ``step_flop`` (forward FLOPs of one step, as the rule counts them).
"""

from __future__ import annotations

import copy
import time

import torch

from hdist import devices
from hdist.bench import alternate
from hdist.problems import build_problem
from hdist.threads import step_flop
from hdist.types import AlgoSpec

FAMILIES = ("bench",)
SIDES = {"threads1": 1, "threads2": 2}


def steps_per_s(model, opt, problem, x, y, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    devices.synchronize(x.device)  # both clock reads wait for the GPU's queue (nothing on the CPU)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=False)
        problem.data_loss(model(x), y).backward()
        opt.step()
    devices.synchronize(x.device)
    return steps / (time.perf_counter() - t0)


def run(ctx) -> None:
    cfg = ctx.cfg
    a = cfg.algo
    threads = torch.get_num_threads()
    try:
        problem = build_problem(cfg, ctx.device)
        base = problem.build_model(ctx.seed)
        x, y = problem.data.train[torch.arange(int(a.batch_size), device="cpu")]
        if problem.has_transform:
            x = problem.eval_batch(x)
        sides = {}
        for role, n in SIDES.items():  # a model and optimizer per side: the same start, no shared state
            m = copy.deepcopy(base)
            sides[role] = (m, torch.optim.SGD(m.parameters(), lr=float(a.lr)), n)
        for m, opt, n in sides.values():  # untimed: allocator, thread pool start-up, caches
            steps_per_s(m, opt, problem, x, y, int(a.warmup_steps), n)
        ctx.log.log("event", "step_flop", step_flop(cfg) or float("nan"))

        def timed(role: str):
            m, opt, n = sides[role]
            return lambda rep: steps_per_s(m, opt, problem, x, y, int(a.steps), n)

        alternate(ctx, int(a.reps), {role: timed(role) for role in SIDES}, "steps_per_s")
    finally:
        torch.set_num_threads(threads)


SPEC = AlgoSpec(FAMILIES, run)
