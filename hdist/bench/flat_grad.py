"""Benchmark ``bench-flat-grad``: what does :meth:`FlatModel.grad` cost against the public call?

Both sides run in this one process on the same model (``model``), data, batch size and sample
order, alternating which goes first for ``reps`` repetitions; each takes ``steps`` gradients of
``scale`` times the mini-batch loss as one flat vector (what a parameter-server update needs):

- **hdist**: ``FlatModel.grad(loss, scale)``: the scale seeds the backward pass, and autograd's
  engine is called directly.
- **public**: ``torch.cat(torch.autograd.grad(scale * loss, params))``, the way one writes it
  with torch's public API (the way hdist wrote it before).

Both give the same bits (tests/test_async_algos.py). Rows: ``metric=us_per_step``, ``role`` =
hdist | public, ``step`` = repetition index.
"""

from __future__ import annotations

import time

import torch

from hdist import devices
from hdist.algos._ps import FlatModel
from hdist.bench import alternate
from hdist.problems import build_problem
from hdist.types import AlgoSpec

FAMILIES = ("bench",)


def _batches(n: int, b: int, steps: int, seed: int):
    """``steps`` index batches of ``b`` samples, epoch after epoch of a seeded order."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out: list[torch.Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen, device="cpu")
        out += [perm[i:i + b] for i in range(0, n - b + 1, b)][:steps - len(out)]
    return out


def time_side(side: str, fm: FlatModel, problem, X, y, batches, scale: float) -> float:
    """Real microseconds per gradient (forward, loss, backward, flatten) on ``side``."""
    params = fm.params
    devices.synchronize(fm.flat.device)  # both clock reads wait for the GPU's queue (nothing on the CPU)
    t0 = time.perf_counter()
    for idx in batches:
        loss = problem.data_loss(fm.model(X[idx]), y[idx])
        if side == "hdist":
            fm.grad(loss, scale=scale)
        else:
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(scale * loss, params)])
    devices.synchronize(fm.flat.device)
    return (time.perf_counter() - t0) / len(batches) * 1e6


def run(ctx) -> None:
    cfg = ctx.cfg
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.algo.threads))
    try:
        problem = build_problem(cfg, ctx.device)
        fm = FlatModel(problem.build_model(ctx.seed))
        # on the model's device (a no-op where the problem already keeps the training set there)
        X, y = problem.data.train.X.to(ctx.device), problem.data.train.y.to(ctx.device)
        b, scale = int(cfg.algo.batch_size), -float(cfg.algo.lr)
        batches = _batches(len(y), b, int(cfg.algo.steps), ctx.seed)
        warm = batches[:int(cfg.algo.warmup_steps)]
        for side in ("hdist", "public"):
            time_side(side, fm, problem, X, y, warm, scale)
        def timed(side: str):
            return lambda rep: time_side(side, fm, problem, X, y, batches, scale)

        alternate(ctx, int(cfg.algo.reps), {side: timed(side) for side in ("hdist", "public")}, "us_per_step")
    finally:
        torch.set_num_threads(threads)


SPEC = AlgoSpec(FAMILIES, run)
