"""Benchmark ``bench-clars``: the step time of CLARS over LARS (thesis ch. 4; issue goal <= 1.5x).

Both sides run in this one process on the same model (``model``, resnet20 by default), batch
(``algo.batch_size``, B = 128) and data, alternating side by side for ``algo.reps`` repetitions of
``algo.steps`` steps each: forward and backward on the batch, then the optimizer step. CLARS adds
the per-sample gradient norms of the first ``algo.subsample`` samples of the batch
(:class:`hdist.optim.SampleGradStats`, the |J| estimate of thesis 4.4.4); ``algo.subsample: null``
times the exact eq. (4.7) (all B samples).

Rows: ``metric=step_s`` (median seconds per step of one repetition), ``role`` = lars | clars,
``step`` = repetition index.
"""

from __future__ import annotations

import copy
import time

import torch

from hdist import devices
from hdist.bench import alternate
from hdist.optim import CLARS, LARS, SampleGradStats, layer_param_groups
from hdist.problems import build_problem
from hdist.types import AlgoSpec

FAMILIES = ("bench",)


def _side(rule: str, model, problem, cfg):
    a = cfg.algo
    m = copy.deepcopy(model)
    groups = layer_param_groups(m, a.get("layer_params", "all"))
    if rule == "lars":
        return m, LARS(groups, lr=float(a.lr), eta=1e-3, momentum=0.9), None
    opt = CLARS(groups, lr=float(a.lr), eta=1e-2, momentum=0.9)
    return m, opt, SampleGradStats(m, problem.data_loss, opt.ordered_params())


def time_steps(model, opt, stats, problem, x, y, steps: int, sub: int | None) -> float:
    """Median seconds per step over ``steps`` steps."""
    times = []
    device = x.device
    for _ in range(steps):
        devices.synchronize(device)  # the clock reads close the step's GPU work (nothing on the CPU)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        problem.data_loss(model(x), y).backward()
        if stats is None:
            opt.step()
        else:
            xs, ys = (x, y) if sub is None else (x[:sub], y[:sub])
            s = stats(xs, ys)
            opt.step(sample_norms=[v / s["n"] for v in s["norm_sum"]])
        devices.synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(torch.tensor(times, device="cpu").median())


def run(ctx) -> None:
    cfg = ctx.cfg
    a = cfg.algo
    threads = torch.get_num_threads()
    torch.set_num_threads(int(a.threads))
    try:
        problem = build_problem(cfg, ctx.device)
        model = problem.build_model(ctx.seed)
        b = int(a.batch_size)
        x, y = problem.data.train[torch.arange(b, device="cpu")]
        if problem.has_transform:
            x = problem.eval_batch(x)
        sub = a.get("subsample")
        sides = {rule: _side(rule, model, problem, cfg) for rule in ("lars", "clars")}
        for m, opt, st in sides.values():  # untimed: allocator, vmap tracing, caches
            time_steps(m, opt, st, problem, x, y, int(a.warmup_steps), sub)
        def timed(rule: str):
            return lambda rep: time_steps(*sides[rule], problem, x, y, int(a.steps), sub)

        alternate(ctx, int(a.reps), {rule: timed(rule) for rule in ("lars", "clars")}, "step_s")
    finally:
        torch.set_num_threads(threads)


SPEC = AlgoSpec(FAMILIES, run)
