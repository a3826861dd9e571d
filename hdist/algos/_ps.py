"""The frame every parameter-server / shared-memory algorithm runs in (algorithm side).

It never imports a backend: it talks to :class:`~hdist.types.Comm` only.

- :class:`FlatModel`: the model's parameters as views into one flat vector, so a pull is one
  copy and a gradient is one vector.
- :class:`Worker`: a worker's shard, sample order (seeded from (seed, worker index)) and step
  budget; each mini-batch is a step of the rank's time accounts (:mod:`hdist.runtime`).
- :class:`Snapshots`: copies of the shared x taken every few global updates and evaluated
  after training, so evaluation never steals CPU from the workers being timed.
- :func:`run_ps`: the common life of a rank: build, ``ps_init``, common clock start, the
  server loop or the algorithm's worker loop, final snapshot, evaluation, totals.

Epochs: worker w of P holds shard w of the training set and makes ``scale.epochs`` passes
over a shard of the largest size, ceil(n / P), so every worker makes the same number of steps
(a shorter shard wraps into its next permutation) and P workers together make about the same
number of updates as one serial run; a global epoch is ``steps_per_epoch(n, b)`` updates of x.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from hdist.devices import synchronize
from hdist.precision import loss_scaler
from hdist.problems import Problem, build_problem
from hdist.train import Sampler, check_finite, measure, steps_per_epoch
from hdist.types import RankCtx, ps_torch_dtype, seed_for

# torch's autograd engine entry point, the one torch.autograd.grad ends in (torch >= 2.3; older
# torches take the public call, same bits).
_run_backward = getattr(getattr(torch.autograd, "graph", None), "_engine_run_backward", None)


class FlatModel:
    """``model``'s parameters re-pointed into one flat vector ``flat`` (views, no copies)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.params = [p for p in model.parameters()]
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.params]).clone()
        offset = 0
        for p in self.params:
            n = p.numel()
            p.data = self.flat[offset:offset + n].view_as(p)
            offset += n
        self.numel = offset
        self.inputs = tuple(self.params)  # what the autograd engine takes
        # The vector the parameter server holds: ``flat`` itself, or a copy in another dtype
        # (``run_ps(ps_dtype="float64")``: the dual methods' w(alpha), see dfsdca).
        self.ps = self.flat

    def grad(self, loss: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """The gradient of the scalar ``loss`` with respect to all parameters, as one new flat
        vector; times ``scale`` when given.

        The scale is the backward pass's seed (d(scale * loss)), so it costs no pass of its own and
        gives the bits of ``torch.autograd.grad(scale * loss)``: the chain rule starts from
        scale * 1 = scale exactly. The engine is called directly: on a ~0.3 ms MLP step,
        ``torch.autograd.grad``'s Python wrapper (argument and shape checks, one of which imports
        torch's symbolic shapes) costs ~20 us, and ``scale * loss`` another ~19 us, both paid on
        every update of every parameter-server algorithm. ``bench-flat-grad`` measures both ways
        side by side: 189 against 234 us per MLP gradient at batch 10 (medians of 7)."""
        if loss.dim():
            raise ValueError(f"FlatModel.grad: the loss must be a scalar, got shape {tuple(loss.shape)}")
        # In an fp16 compute block (algo.precision=fp16, hdist.precision) the seed also carries the dynamic
        # loss scale S, so the low-precision backward does not underflow; the gradient is divided by S
        # below. None in fp32 and bf16: the seed and the bits are the ones above.
        scaler = loss_scaler()
        if scaler is None:
            seed = torch.full((), 1.0 if scale is None else scale, dtype=loss.dtype, device=loss.device)
        else:
            seed = scaler.seed(loss, scale)
        if _run_backward is None:
            grads = torch.autograd.grad(loss, self.params, grad_outputs=seed)
        else:
            # (outputs, grad_outputs, retain_graph, create_graph, inputs, allow_unused): what
            # torch.autograd.grad passes after its checks; the loss is a scalar, like the seed.
            grads = _run_backward((loss,), (seed,), False, False, self.inputs, False, accumulate_grad=False)
        g = torch.cat([g.reshape(-1) for g in grads])
        # fp16: divided by S; zeros (a skipped step) where the scaled backward overflowed.
        return g if scaler is None else scaler.unscale_(g)


class Worker:
    """One asynchronous worker's data, schedule and accounting."""

    def __init__(self, ctx: RankCtx, problem: Problem):
        cfg = ctx.cfg
        comm = ctx.comm
        self.ctx, self.problem = ctx, problem
        self.index = comm.worker_index or 0
        train = problem.data.train
        self.shard = train.shard(self.index, comm.n_workers)
        if len(self.shard) == 0:
            raise RuntimeError(f"worker {self.index}: empty shard ({len(train)} samples for {comm.n_workers} workers)")
        self.b = int(cfg.algo.batch_size)
        # Steps per epoch from the largest shard, ceil(n / P), the same number on every worker
        # whatever its own shard's size: synchronous algorithms (K-AVG, DiLoCo) make one
        # collective per round and all learners must agree on how many rounds there are. A
        # worker with a shorter shard starts its next pass (a fresh permutation) early.
        self.spe_local = steps_per_epoch(math.ceil(len(train) / comm.n_workers), self.b)
        self.spe_global = steps_per_epoch(len(train), self.b)
        self.total_local = max(1, math.ceil(float(cfg.scale.epochs) * self.spe_local))
        if cfg.algo.get("max_steps"):
            # max_steps caps the global number of updates: each worker takes its share.
            self.total_local = min(self.total_local, max(1, math.ceil(int(cfg.algo.max_steps) / comm.n_workers)))
        self.total_global = self.total_local * comm.n_workers
        # On the host on every device: the sample order is the same bits wherever the model lives.
        self.gen = torch.Generator(device="cpu").manual_seed(ctx.worker_seed())
        self.step = 0
        self.train_every = int(cfg.log.train_every)

    def batches(self):
        """Mini-batches of this worker's shard, epoch after epoch, ``total_local`` in all."""
        log, comm = self.ctx.log, self.ctx.comm
        order = Sampler(len(self.shard), self.b, self.gen)
        while self.step < self.total_local:
            x, y = self.shard[order.indices(self.step)]
            if self.problem.has_transform:
                x = self.problem.train_batch(x, self.gen)
            # Counted before the step is taken, so rows logged in it say "after step n".
            self.step += 1
            log.step = self.step
            log.samples += x.shape[0]
            log.epoch = self.step / self.spe_local
            comm.mark_step()
            yield x, y
        comm.mark_step()

    def pulled(self, version: int, flat: torch.Tensor, snaps: Snapshots | None) -> None:
        """Called after every pull: rank 0 keeps a snapshot of x when one is due."""
        if snaps is not None and snaps.due(version):
            # The snapshot's time counts the steps still queued on the device.
            synchronize(self.ctx.device)
            snaps.maybe(version, flat, self.ctx.log.wall_s())

    def reg_to_log(self) -> float | None:
        """The regulariser now, if this step's loss will be logged (call it before a local update)."""
        if self.step % self.train_every == 0 and self.problem.l2:
            return self.problem.reg_value(self.ctx.extra["model"])
        return None

    def log_step(self, loss: torch.Tensor, updates: int, staleness: int | None, reg: float | None = None) -> None:
        """Per-step bookkeeping: staleness of the applied update, mini-batch loss on a schedule.

        The logged objective adds the regulariser at the parameters the gradient was taken at:
        ``reg`` from :meth:`reg_to_log` when the local copy has moved since, else read now.
        """
        log = self.ctx.log
        log.updates = updates
        if staleness is not None:
            log.log("comm", "staleness", staleness)
        if self.step % self.train_every == 0:
            if reg is None:
                reg = self.problem.reg_value(self.ctx.extra["model"]) if self.problem.l2 else 0.0
            value = loss.item() + reg
            check_finite(value, f"worker {self.index} step {self.step}")
            log.log("train", "train_loss", value)
            self.ctx.progress.update(min(updates, self.total_global), value, updates / self.spe_global)

    def log_totals(self, timing: dict[str, float] | None = None) -> None:
        """The rank's time accounts (``timing``: as read earlier, else now) and step count."""
        t = self.ctx.comm.timing() if timing is None else timing
        self.ctx.log.log_many("comm", {"compute_s": t["compute_s"], "comm_s": t["comm_s"], "wait_s": t["wait_s"],
                                       "updates_total": self.step})
        self.ctx.comm.log_straggle_total()


class Snapshots:
    """x at regular global-update counts, kept in host memory and evaluated after training.

    Kept on the host whatever the device: a run keeps one copy of x per evaluation (hundreds of a
    ResNet-50's 100 MB on a long run, more than a GPU holds beside the training), and the objective rows
    read them with numpy. The copy waits for the device; it is taken on the evaluation schedule only.
    """

    def __init__(self, ctx: RankCtx, spe_global: int, total_global: int):
        per = float(ctx.cfg.log.evals_per_epoch)
        self.every = max(1, round(spe_global / per)) if per > 0 else max(1, int(total_global))
        self.spe_global = spe_global
        self.next = 0
        self.items: list[tuple[int, float, float, torch.Tensor]] = []
        self.log = ctx.log

    def due(self, version: int) -> bool:
        """Whether :meth:`maybe` keeps a snapshot at ``version`` (a caller then reads its clock, after a sync)."""
        return version >= self.next

    def maybe(self, version: int, x: torch.Tensor, wall_s: float) -> None:
        if self.due(version):
            self.items.append((version, wall_s, self.log.sim_s, _host_copy(x)))
            self.next = (version // self.every + 1) * self.every

    def add(self, version: int, x: torch.Tensor, wall_s: float) -> None:
        """A snapshot now (start, end), whatever the schedule says."""
        if not self.items or self.items[-1][0] != version:
            self.items.append((version, wall_s, self.log.sim_s, _host_copy(x)))
        self.next = max(self.next, (version // self.every + 1) * self.every)

    def evaluate(self, ctx: RankCtx, problem: Problem, fm: FlatModel) -> None:
        log = ctx.log
        keep = fm.flat.clone()
        split = problem.data.train
        bn_samples, bn_batch = int(ctx.cfg.log.bn_samples), int(ctx.cfg.algo.get("batch_size") or 128)
        for version, wall_s, sim_s, x in self.items:
            log.sim_s = sim_s
            fm.flat.copy_(x)
            # x is the server's or the learners' average: the BatchNorm statistics in fm.model belong to
            # other weights (the server's initial ones, learner 0's), so they are re-estimated for x first.
            problem.recalibrate_bn(fm.model, split, bn_samples, bn_batch, ctx.cfg.seed)
            out = measure(problem, fm.model, split, ctx.cfg.log.eval_max_samples)
            log.updates = version
            log.epoch = version / self.spe_global
            for k, v in out.items():
                log.log("eval", k, v, wall_s=wall_s)
            check_finite(out["train_loss_full"], f"evaluation at update {version}")
        fm.flat.copy_(keep)


def _host_copy(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` in host memory (a clone when ``x`` is there already: the same bits)."""
    return x.detach().to("cpu", copy=True)


WorkerLoop = Callable[[RankCtx, Problem, FlatModel, Worker, "Snapshots | None"], None]


def run_ps(ctx: RankCtx, worker_loop: WorkerLoop, steps_per_update: float = 1, *, spe_global: float | None = None,
           zero_init: bool = False, finish: Callable | None = None, ps_dtype: str = "float32") -> None:
    """One rank of a parameter-server algorithm: the server loop or ``worker_loop``.

    ``steps_per_update``: local steps behind one update of x (K for Downpour and EAMSGD, which
    push every K steps); versions of x are converted to epochs with it, so evaluations stay
    ``log.evals_per_epoch`` per pass over the data. ``spe_global``: updates of x per pass over
    the data when an algorithm counts them its own way (SVRG's inner iterations). ``zero_init``:
    x starts at 0 (dual methods: w^0 = w(alpha^0 = 0)). ``finish(ctx, problem, fm, snaps,
    spe_global, rows)``: runs on every rank after training, in place of the plain evaluation on
    rank 0 (``rows``: what ``worker_loop`` returned, None on a server); it may communicate.
    ``ps_dtype``: the dtype of the server's x (``fm.ps``), by name: the algorithm's declared
    :attr:`~hdist.types.AlgoSpec.ps_dtype`, which the backends that allocate x at launch (thread,
    process) allocate it in (float64 keeps the dual methods' w(alpha) exact on every backend).
    """
    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    problem = build_problem(cfg, ctx.device)
    # Every rank starts from the same x: the serial run's initialisation (seed of worker 0).
    fm = FlatModel(problem.build_model(seed_for(cfg.seed, 0)))
    ctx.extra["model"] = fm.model
    if zero_init:
        fm.flat.zero_()
    if ps_torch_dtype(ps_dtype) != fm.flat.dtype:
        fm.ps = fm.flat.to(ps_torch_dtype(ps_dtype))
    comm.ps_init(fm.ps)
    worker = Worker(ctx, problem) if comm.worker_index is not None else None
    if spe_global is None:
        # Updates of x per pass over the data (fractional when one update stands for K steps).
        spe_global = steps_per_epoch(len(problem.data.train), int(cfg.algo.batch_size)) / steps_per_update
        total_global = (math.ceil(worker.total_global / steps_per_update) if worker else
                        max(1, math.ceil(float(cfg.scale.epochs) * spe_global)))
    else:
        total_global = max(1, math.ceil(float(cfg.scale.epochs) * spe_global))
    if worker:
        worker.spe_global, worker.total_global = spe_global, total_global
    snaps = Snapshots(ctx, spe_global, total_global) if ctx.rank == 0 else None
    ctx.progress.start(total_global)
    synchronize(ctx.device)  # the model's and x's copies to the device are no training time
    comm.barrier()
    # The clocks of all ranks start together: wall_s is comparable across ranks.
    log.restart_clock()
    comm.restart_timing()  # train_s is measured on the backend's own clock: real or virtual seconds
    if snaps is not None:
        snaps.add(0, fm.ps, 0.0)
    rows = None
    if comm.has_server and comm.worker_index is None:
        ctx.role = log.role = "server"

        def on_apply(version: int, x: torch.Tensor, staleness: int) -> None:
            log.updates = version
            log.log("comm", "staleness", staleness)
            if snaps.due(version):
                synchronize(ctx.device)  # the snapshot's time counts the updates still queued on the device
                snaps.maybe(version, x, log.wall_s())
            if version % 100 == 0:
                ctx.progress.update(min(version, total_global), None, version / spe_global)

        comm.serve(on_apply)
    else:
        rows = worker_loop(ctx, problem, fm, worker, snaps)
        comm.ps_done()
        worker.log_totals()
    synchronize(ctx.device)  # every rank's queued steps finish before the clocks stop
    comm.barrier()
    end_s = log.wall_s()
    train_s = comm.elapsed_s()
    if ctx.rank == 0:
        # The final x (on a server rank, pull reads the server's own copy).
        version = comm.pull(fm.ps, consistent=True)
        snaps.add(version, fm.ps, end_s)
        log.log("event", "train_s", train_s)
    if finish is not None:
        finish(ctx, problem, fm, snaps, spe_global, rows)
    elif ctx.rank == 0:
        snaps.evaluate(ctx, problem, fm)
    comm.barrier()
