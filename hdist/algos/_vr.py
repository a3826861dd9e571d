"""Pieces the variance-reduced and dual algorithms share (huo17 AsySVRG, thesis Dis-dfSDCA, CoCoA+).

- :func:`run_frame`: the life of one rank, as :func:`hdist.algos._ps.run_ps` (build, ``ps_init``,
  common clock start, server loop or worker loop, final snapshot, evaluation), plus two things
  the plain frame lacks: the snapshots are also evaluated on the run's closed-form objective
  (:mod:`hdist.objectives`: the primal value ``primal``, ``suboptimality`` on PCA, ``duality_gap``
  on ridge when the algorithm reports its dual), and after training every worker can hand rows
  of numbers to rank 0 (:func:`gather_rows`), e.g. the dual bookkeeping of Dis-dfSDCA.
- :class:`Grad`: a mini-batch / full-shard gradient of ``f_i`` (the data term, without the l2
  regulariser) at a :class:`~hdist.algos._ps.FlatModel`: autograd through the model, or the closed
  form of the PCA objective (3.40).
- :func:`worker_allreduce`: a sum over the *workers* only (the server rank, when there is one,
  is inside ``serve``): the collective all-reduce where every rank is a worker, else a reduce to
  the first worker and its reply, over point-to-point messages.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from hdist import objectives
from hdist.algos._ps import FlatModel, Snapshots, run_ps
from hdist.problems import Problem
from hdist.train import check_finite
from hdist.types import RankCtx

TAG_GATHER = 71
TAG_REDUCE = 72


class Grad:
    """Gradients of the data term ``f(x) = mean_i f_i(x)`` (no regulariser) at a FlatModel."""

    def __init__(self, cfg, problem: Problem):
        self.problem = problem
        self.kind = objectives.kind_of(cfg, problem)
        self.pca = None
        if self.kind == "pca":
            d = math.prod(problem.data.train.sample_shape)
            self.mu, self.lam = objectives.pca_mu(cfg), float(cfg.objective.l2)
            b = objectives.pca_b(d, int(cfg.dataset.get("data_seed") or 0))
            self.b = torch.from_numpy(b).to(problem.device, torch.float32)
            self.pca = True

    def batch(self, fm: FlatModel, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean"):
        """(loss, gradient) of the mean (or sum) of f_i over the batch at fm's parameters."""
        if self.pca:
            w = fm.flat
            xb = x.reshape(x.shape[0], -1)
            xw = xb @ w
            scale = 1.0 if reduction == "sum" else 1.0 / x.shape[0]
            # phi_i(w) = 1/2 (mu - lambda) ||w||^2 - 1/2 (x_i'w)^2 - b'w
            loss = (0.5 * (self.mu - self.lam) * (w @ w) - self.b @ w) * (x.shape[0] * scale) \
                - 0.5 * scale * (xw @ xw)
            g = ((self.mu - self.lam) * w - self.b) * (x.shape[0] * scale) - scale * (xb.T @ xw)
            return loss.detach(), g
        loss = self.problem.data_loss(fm.model(x), y, reduction="none" if reduction == "sum" else "mean")
        if reduction == "sum":
            loss = loss.sum()
        return loss.detach(), fm.grad(loss)

    def shard_sum(self, fm: FlatModel, shard, chunk: int = 1000) -> torch.Tensor:
        """sum_{i in shard} grad f_i at fm's parameters."""
        total = torch.zeros_like(fm.flat)
        for lo in range(0, len(shard), chunk):
            x, y = shard[torch.arange(lo, min(len(shard), lo + chunk), device="cpu")]
            if self.problem.has_transform:
                x = self.problem.eval_batch(x)
            total.add_(self.batch(fm, x, y, reduction="sum")[1])
        return total


def worker_ranks(comm) -> list[int]:
    return list(range(1, comm.world_size)) if comm.has_server else list(range(comm.world_size))


def worker_allreduce(comm, tensor: torch.Tensor) -> None:
    """In place: the sum of ``tensor`` over the workers (every worker calls it)."""
    if not comm.has_server:
        comm.allreduce(tensor, "sum")
        return
    ranks = worker_ranks(comm)
    root = ranks[0]
    if comm.rank == root:
        buf = torch.empty_like(tensor)
        for _ in ranks[1:]:
            comm.recv(buf, None, TAG_REDUCE)
            tensor.add_(buf)
        for r in ranks[1:]:
            comm.send(tensor, r, TAG_REDUCE)
    else:
        comm.send(tensor, root, TAG_REDUCE)
        comm.recv(tensor, root, TAG_REDUCE)


def gather_rows(comm, rows: torch.Tensor | None, device: torch.device) -> list[torch.Tensor]:
    """Workers hand a float64 [k, c] tensor to rank 0; rank 0 gets every worker's (its own first).

    ``device``: the rank's (``ctx.device``), where the messages' buffers live (a collective library such as
    NCCL sends only from its device); rank 0 reads what arrives on the host (the rows are parsed with numpy)."""
    ranks = worker_ranks(comm)
    if comm.rank == 0:
        out = [rows.to("cpu")] if rows is not None else []
        for r in ranks:
            if r == 0:
                continue
            shape = torch.zeros(2, dtype=torch.float64, device=device)
            comm.recv(shape, r, TAG_GATHER)
            k, c = int(shape[0]), int(shape[1])
            buf = torch.zeros(max(k * c, 1), dtype=torch.float64, device=device)
            comm.recv(buf, r, TAG_GATHER)
            out.append(buf[:k * c].view(k, c).to("cpu"))
        return out
    if rows is not None:
        shape = torch.tensor([float(rows.shape[0]), float(rows.shape[1])], dtype=torch.float64, device=device)
        comm.send(shape, 0, TAG_GATHER)
        rows = rows.to(device)
        comm.send(rows.reshape(-1) if rows.numel() else torch.zeros(1, dtype=torch.float64, device=device), 0,
                  TAG_GATHER)
    return []


def objective_rows(ctx, problem: Problem, snaps: Snapshots, spe_global: float,
                   dual_at: Callable[[int], float | None] | None = None) -> None:
    """Log ``primal`` and ``suboptimality`` (PCA) or ``duality_gap`` (ridge, given the dual terms) per snapshot.

    All in float64 from the snapshot's x; the dual methods snapshot w(alpha) itself in float64
    (cocoa_plus; dfsdca, whose server x is declared float64), so that the gap P(w(alpha)) - D(alpha)
    stays >= 0 down to float64 rounding instead of the ~1e-7 of a float32 copy of w.

    ``dual_at(version)``: sum_i (alpha_i y_i - alpha_i^2/2) of the dual variables whose updates
    are in x at that version (the bookkeeping identity w = w(alpha) then gives D(alpha)).
    """
    obj = objectives.for_problem(ctx.cfg, problem)
    if obj is None:
        return
    log = ctx.log
    for version, wall_s, sim_s, x in snaps.items:
        w = to_np(x)
        log.sim_s, log.updates, log.epoch = sim_s, version, version / spe_global
        p = obj.primal(w)
        rows = {"primal": p}
        if obj.kind == "pca":
            rows["suboptimality"] = obj.suboptimality(w)
        elif dual_at is not None:
            dsum = dual_at(version)
            if dsum is not None:
                rows["duality_gap"] = p - obj.dual_from(dsum, w)
        for k, v in rows.items():
            log.log("eval", k, v, wall_s=wall_s)
        check_finite(p, f"objective at update {version}")


def run_frame(ctx: RankCtx, worker_loop, steps_per_update: float = 1.0, spe_global: float | None = None,
              after: Callable | None = None, zero_init: bool = False, ps_dtype: str = "float32") -> None:
    """One rank of a parameter-server / shared-memory algorithm: :func:`hdist.algos._ps.run_ps`, and
    after training the closed-form objective rows (see the module doc).

    ``worker_loop(ctx, problem, fm, worker, snaps)`` may return a float64 [k, c] tensor that is
    handed to rank 0; ``after(ctx, problem, fm, snaps, rows)`` then runs on rank 0 before the
    evaluation (``rows``: every worker's tensor) and may return ``dual_at`` for the duality gap.
    """

    def finish(ctx, problem, fm, snaps, spe, rows):
        gathered = gather_rows(ctx.comm, rows, ctx.device) if after is not None else []
        if ctx.rank == 0:
            dual_at = after(ctx, problem, fm, snaps, gathered) if after is not None else None
            snaps.evaluate(ctx, problem, fm)
            objective_rows(ctx, problem, snaps, spe, dual_at)

    run_ps(ctx, worker_loop, steps_per_update, spe_global=spe_global, zero_init=zero_init, finish=finish,
           ps_dtype=ps_dtype)


def to_np(t: torch.Tensor) -> np.ndarray:
    """``t`` as a float64 numpy array (copied to the host from a device)."""
    return t.detach().to("cpu", torch.float64).numpy()
