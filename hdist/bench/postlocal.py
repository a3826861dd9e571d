"""The baseline of ``bench-kavg-postlocal``: PyTorch's own post-local SGD on the torchdist world.

What a PyTorch user writes for K-step averaging: plain SGD (weight decay = the objective's l2, no
momentum) wrapped in ``torch.distributed.optim.PostLocalSGDOptimizer`` with a
``PeriodicModelAverager(period=K, warmup_steps=K-1)`` (averages after steps K, 2K, ...; see
tests/test_torchdist.py, where this equals hdist's K-AVG bit for bit), plus a closing average
when the last round is short. Same model, initialisation, shards, sample order (hdist's
:class:`~hdist.algos._ps.Worker`), batch size, K and learners as ``algo=kavg``.

Logged like K-AVG, so the two sides are read alike: ``train_s`` (event, rank 0: seconds from a
common barrier to the last learner done), ``compute_s``/``comm_s``/``updates_total`` per rank,
and the training loss on K-AVG's schedule. No evaluation: the benchmark times training only.
"""

from __future__ import annotations

import torch

from hdist import devices
from hdist.algos._ps import Worker
from hdist.problems import build_problem
from hdist.types import AlgoSpec, seed_for

# Needs torch.distributed's default process group, which only the torchdist backend sets up.
FAMILIES = ("torch_distributed",)


def run(ctx) -> None:
    import torch.distributed as dist
    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
    from torch.distributed.algorithms.model_averaging.utils import average_parameters
    from torch.distributed.optim import PostLocalSGDOptimizer

    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    problem = build_problem(cfg, ctx.device)
    model = problem.build_model(seed_for(cfg.seed, 0))  # K-AVG's w~_1
    ctx.extra["model"] = model
    w = Worker(ctx, problem)
    k = int(cfg.algo.k)
    sgd = torch.optim.SGD(model.parameters(), lr=float(cfg.algo.lr), momentum=0.0, weight_decay=problem.l2)
    opt = PostLocalSGDOptimizer(sgd, PeriodicModelAverager(period=k, warmup_steps=k - 1))
    ctx.progress.start(w.total_local)
    comm.barrier()
    log.restart_clock()
    start = comm.now()
    for x, y in w.batches():
        opt.zero_grad()
        loss = problem.data_loss(model(x), y)
        loss.backward()
        opt.step()  # a local SGD step, and every K steps the average (inside the optimizer)
        w.log_step(loss, w.step, None)
    if w.step % k:
        average_parameters(iter(model.parameters()), dist.group.WORLD)  # K-AVG's closing average
    devices.synchronize(ctx.device)  # the clock read closes this rank's GPU work (nothing on the CPU)
    comm.barrier()
    train_s = comm.now() - start
    # The optimizer hides the split: all of it is reported as compute.
    w.log_totals({"compute_s": train_s, "comm_s": 0.0, "wait_s": 0.0})
    if ctx.rank == 0:
        log.log("event", "train_s", train_s)


SPEC = AlgoSpec(FAMILIES, run)
