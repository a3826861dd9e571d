"""Benchmark ``bench-overhead``: does hdist's harness slow training down?

Both sides run in this one process on the same model (``model``), data, batch size and sample
order, alternating side by side for ``reps`` repetitions:

- **hdist**: the real :mod:`hdist.algos.sgd` ``run`` with a real metrics logger writing parquet
  to a scratch directory, its evaluation schedule and divergence checks; steps/s counts the
  training time only (its logged ``wall_s``, evaluation excluded).
- **raw**: the minimal loop a researcher would write: randperm, index, forward, loss, backward,
  ``torch.optim.SGD.step``.

Rows: ``metric=steps_per_s``, ``role`` = hdist | raw, ``step`` = repetition index.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hdist import devices
from hdist.algos import sgd
from hdist.bench import alternate
from hdist.config import load_option
from hdist.metrics import MetricsLogger
from hdist.problems import build_problem
from hdist.progress import QuietProgress
from hdist.types import AlgoSpec, RankCtx

FAMILIES = ("bench",)


def _sgd_cfg(cfg, steps: int):
    """The bench run's config with ``algo`` replaced by serial SGD at the bench's lr and batch."""
    c = copy.deepcopy(cfg)
    OmegaConf.set_struct(c, False)
    algo = load_option("algo", "sgd")[1]
    algo.lr, algo.batch_size, algo.max_steps = cfg.algo.lr, cfg.algo.batch_size, steps
    c.algo = algo
    c.log.evals_per_epoch = 0  # evaluate at start and end only (and that time is excluded)
    c.log.eval_max_samples = 100
    c.scale.epochs = steps  # max_steps decides
    return c


def time_hdist(cfg, steps: int, scratch: Path, rep: int, comm) -> float:
    c = _sgd_cfg(cfg, steps)
    run_dir = scratch / f"hdist-{rep}"
    log = MetricsLogger(run_dir, "bench", flush_s=c.log.flush_s)
    ctx = RankCtx(cfg=c, rank=0, world_size=1, comm=comm, log=log, run_dir=run_dir, progress=QuietProgress())
    sgd.run(ctx)
    wall = log.wall_s()  # training time: evaluation is paused out of it
    log.close()
    return steps / wall


def time_raw(cfg, steps: int, seed: int, device: torch.device | str = "cpu") -> float:
    """The hand-written loop's steps/s on ``device`` (the CPU: the device hdist's side runs on here)."""
    problem = build_problem(cfg, device)
    model = problem.build_model(seed)
    X, y = problem.data.train.X.to(device), problem.data.train.y.to(device)
    b, n = int(cfg.algo.batch_size), len(y)
    opt = torch.optim.SGD(model.parameters(), lr=float(cfg.algo.lr))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    devices.synchronize(torch.device(device))  # both clock reads wait for the GPU's queue (nothing on the CPU)
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen, device="cpu")
        for i in range(0, n, b):
            if done == steps:
                break
            idx = perm[i:i + b]
            opt.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            done += 1
    devices.synchronize(torch.device(device))
    return steps / (time.perf_counter() - t0)


def run(ctx) -> None:
    cfg = ctx.cfg
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.algo.threads))
    try:
        steps = int(cfg.algo.steps)
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp)
            time_raw(cfg, int(cfg.algo.warmup_steps), ctx.seed)
            time_hdist(cfg, int(cfg.algo.warmup_steps), scratch, -1, ctx.comm)
            alternate(ctx, int(cfg.algo.reps), {"hdist": lambda rep: time_hdist(cfg, steps, scratch, rep, ctx.comm),
                                                "raw": lambda rep: time_raw(cfg, steps, ctx.seed)}, "steps_per_s")
    finally:
        torch.set_num_threads(threads)


SPEC = AlgoSpec(FAMILIES, run)
