"""Benchmark ``bench-gpu-overhead``: does hdist's harness slow training down on the run's device?

:mod:`hdist.bench.overhead`'s comparison on ``topology.devices`` (the GPU where there is one): both sides in
this one process, on the same device, model (``model``), batch (``algo.batch_size``), data and sample
order, alternating for ``reps`` repetitions:

- **hdist**: the real :mod:`hdist.algos.sgd` ``run`` on a rank whose ``ctx.device`` is the run's device,
  with a real metrics logger writing parquet to a scratch directory; steps/s counts its training time
  (logged ``wall_s``, evaluation excluded), read after the device finished its queued work.
- **raw**: the minimal loop a researcher would write on the device: randperm, index the device-resident
  training set, forward, cross-entropy, backward, ``torch.optim.SGD.step``; the device is synchronized
  before the clock starts and before it is read (CUDA kernels run asynchronously).

Rows (``role`` = hdist | raw): ``steps_per_s`` per repetition (``step`` = repetition index); once per run
(``role`` = bench) ``on_cuda`` (1 when the run's device is a GPU: the claim holds only there) and
``hdist_on_device`` (1 when hdist's model was on the run's device: an hdist that trains elsewhere is not
measured against the raw loop as if it were).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from hdist import devices
from hdist.algos import sgd
from hdist.bench import alternate
from hdist.bench.overhead import _sgd_cfg
from hdist.metrics import MetricsLogger
from hdist.problems import build_problem
from hdist.progress import QuietProgress
from hdist.types import AlgoSpec, RankCtx

FAMILIES = ("bench",)


def time_hdist(cfg, steps: int, scratch: Path, rep: int, comm, device: torch.device) -> tuple[float, bool]:
    """hdist's serial SGD for ``steps`` steps on ``device``: (steps/s, whether its model was on ``device``)."""
    c = _sgd_cfg(cfg, steps)
    run_dir = scratch / f"hdist-{rep}"
    log = MetricsLogger(run_dir, "bench", flush_s=c.log.flush_s)
    ctx = RankCtx(cfg=c, rank=0, world_size=1, comm=comm, log=log, run_dir=run_dir, progress=QuietProgress(),
                  device=device)
    sgd.run(ctx)
    # The last evaluation read its results back, so the training kernels before it are done; synchronized
    # anyway so that a run that ends without one is timed to its end.
    devices.synchronize(device)
    wall = log.wall_s()  # training time: evaluation is paused out of it
    log.close()
    on_device = all(p.device == device for p in ctx.extra["model"].parameters())
    return steps / wall, on_device


def time_raw(cfg, steps: int, seed: int, device: torch.device) -> float:
    """The hand-written loop for ``steps`` steps on ``device``: steps/s."""
    c = _sgd_cfg(cfg, steps)
    problem = build_problem(cfg, device)
    model = problem.build_model(seed)
    X, y = problem.data.train.X, problem.data.train.y
    b, n = int(cfg.algo.batch_size), len(y)
    opt = torch.optim.SGD(model.parameters(), lr=float(c.algo.lr), momentum=float(c.algo.momentum))
    gen = torch.Generator().manual_seed(seed)  # sample order on the CPU, as hdist draws it
    loss_fn = torch.nn.CrossEntropyLoss()
    devices.synchronize(device)
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, b):
            if done == steps:
                break
            idx = perm[i:i + b]
            # .to: nothing when the training set lives on the device; a copy where it did not fit there.
            xb, yb = X[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            done += 1
    devices.synchronize(device)  # the queued kernels belong to the timed steps
    return steps / (time.perf_counter() - t0)


def run(ctx) -> None:
    cfg, log = ctx.cfg, ctx.log
    device = devices.cfg_device(cfg, 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.algo.threads))
    placed: list[bool] = []

    def hdist_side(rep: int, steps: int) -> float:
        steps_per_s, on_device = time_hdist(cfg, steps, scratch, rep, ctx.comm, device)
        placed.append(on_device)
        return steps_per_s

    try:
        steps = int(cfg.algo.steps)
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp)
            # Untimed warm-up of both sides: the allocator, cuDNN's algorithm choice, lazy CUDA modules.
            time_raw(cfg, int(cfg.algo.warmup_steps), ctx.seed, device)
            hdist_side(-1, int(cfg.algo.warmup_steps))
            alternate(ctx, int(cfg.algo.reps), {"hdist": lambda rep: hdist_side(rep, steps),
                                                "raw": lambda rep: time_raw(cfg, steps, ctx.seed, device)},
                      "steps_per_s")
    finally:
        torch.set_num_threads(threads)
    log.role = "bench"
    log.log("train", "on_cuda", float(device.type == "cuda"))
    log.log("train", "hdist_on_device", float(all(placed)))


SPEC = AlgoSpec(FAMILIES, run)
