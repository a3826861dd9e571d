"""CoCoA+ with SDCA as the local solver: the synchronous primal-dual baseline of thesis ch. 3.

Ma, Smith, Jaggi, Jordan, Richtarik, Takac. Adding vs. Averaging in Distributed Primal-Dual
Optimization. ICML 2015 (CoCoA+, "adding": gamma = 1, sigma' = K), as the thesis reimplements it
(section 3.5.1, "use SDCA as the local solver"), for ridge regression (3.38):

    w <- 0; alpha <- 0
    for round r = 0, 1, ...:
      every worker k, in parallel:
        dalpha_[k] <- 0;  dw_k <- 0
        for h = 1..H:                              # SDCA on the local subproblem G_k^{sigma'}
          pick i in shard k uniformly
          delta <- (y_i - x_i'(w + sigma' dw_k) - (alpha_i + dalpha_i)) / (1 + sigma' ||x_i||^2 / (lambda n))
          dalpha_i <- dalpha_i + delta;  dw_k <- dw_k + delta x_i / (lambda n)
        alpha_[k] <- alpha_[k] + gamma dalpha_[k]
      w <- w + gamma sum_k dw_k                    # reduce (all-reduce of the local updates)

(the closed-form coordinate maximiser of the squared loss's local subproblem). Symbols ->
config: H = ``algo.h`` (local SDCA steps per round; null-free, e.g. n_k for one local pass),
lambda = ``objective.l2``, K = ``topology.workers``, gamma = 1 and sigma' = K (adding),
``scale.epochs`` = passes of dual steps over the data. Every round ends in an all-reduce, so a
round lasts as long as its slowest worker: the straggler model (``topology.straggler``) slows
everyone. The all-reduced vector carries dw_k and the shard's dual sum, so rank 0 knows the
dual D(alpha) at every round and logs ``duality_gap`` = P(w) - D(alpha), in float64 at
w = w(alpha) (snapshots keep w itself in float64); at the end ``duality_gap_exact`` and
``dual_residual`` = ||w - w(alpha)|| with w(alpha) computed from every worker's alpha.
Sparse data (LIBSVM rcv1) stays sparse: the shard is CSR float64 (see :class:`hdist.algos.dfsdca.LocalData`)
and a local SDCA step reads and writes only x_i's non-zeros; dense data keeps the dense code path unchanged.
Runs on thread, process, mpi, sim (collective) and serial (one worker).

Devices (``topology.devices``): the problem and the model (evaluation) are on the rank's device; the SDCA
steps, w, alpha and the all-reduced vector stay on the host in float64 numpy (a coordinate step is a few
scalar operations on one row, which a GPU would spend in kernel launches; the backends move the vector to
the device where their collective needs it).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from hdist import objectives
from hdist.algos._ps import FlatModel, Snapshots
from hdist.algos._vr import objective_rows
from hdist.algos.dfsdca import KEYS as SDCA_KEYS
from hdist.algos.dfsdca import LocalData
from hdist.algos.dfsdca import check_problem as _check_dual
from hdist.problems import build_problem
from hdist.types import AlgoSpec, ConfigError, seed_for

FAMILIES = ("collective",)


def validate(cfg) -> None:
    if not float(cfg.objective.l2) > 0:
        raise ConfigError(f"objective.l2={cfg.objective.l2!r}: not allowed; expected lambda > 0 (dual methods)")


def run(ctx) -> None:
    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    problem = build_problem(cfg, ctx.device)
    fm = FlatModel(problem.build_model(seed_for(cfg.seed, 0)))
    ctx.extra["model"] = fm.model
    train = problem.data.train
    n, K = len(train), comm.world_size
    k = comm.rank
    data = LocalData(cfg, problem, train.shard(k, K))
    if data.kind != "ridge":
        raise ConfigError(f"algo=cocoa_plus: SDCA needs the dual of the objective (ridge); got {data.kind}")
    lam = float(cfg.objective.l2)
    H = int(cfg.algo.h)
    sigma = float(K)  # sigma' = K, gamma = 1 (adding)
    rounds = max(1, math.ceil(float(cfg.scale.epochs) * n / (H * K)))
    if cfg.algo.get("max_steps"):
        rounds = min(rounds, max(1, int(cfg.algo.max_steps)))
    w = np.zeros(data.d)  # w(alpha) with alpha = 0 (the model's own init is not used: w must equal w(alpha))
    fm.flat.zero_()
    sq = data.sq_norms()
    rng = np.random.default_rng(ctx.worker_seed(k))
    spe_global = n / (H * K)  # rounds per pass over the data
    snaps = Snapshots(ctx, spe_global, rounds) if k == 0 else None
    dual_by_version = {0: 0.0}
    buf = torch.zeros(data.d + 1, dtype=torch.float64, device="cpu")  # host: numpy reads and writes it
    ctx.progress.start(rounds)
    comm.barrier()
    log.t0 = time.perf_counter()
    comm.restart_timing()
    # Snapshots hold w = w(alpha) itself, float64: the logged primal and gap are computed from it
    # (a float32 copy would put a floor of ~1e-7 under the gap and let it go negative).
    w_t = torch.from_numpy(w)  # shares w's memory
    if snaps is not None:
        snaps.add(0, w_t, 0.0)
    for r in range(rounds):
        comm.mark_step()
        with comm.compute():
            dw = np.zeros(data.d)
            for i in rng.integers(0, data.n_k, H):
                i = int(i)
                a = data.alpha[i]
                if data.sparse:  # only x_i's non-zeros: O(nnz(x_i)), not O(d)
                    idx, val = data.row(i)
                    xz = val @ (w[idx] + sigma * dw[idx])
                else:
                    xz = data.X[i] @ (w + sigma * dw)
                delta = (data.y[i] - xz - a) / (1.0 + sigma * sq[i] / (lam * n))
                new = a + delta
                data.alpha[i] = new
                yi = data.y[i]
                data.dual_sum += (new * yi - 0.5 * new * new) - (a * yi - 0.5 * a * a)
                if data.sparse:
                    dw[idx] += delta * val / (lam * n)  # indices are unique within a row
                else:
                    dw += delta * data.X[i] / (lam * n)
                comm.compute_done(1)
        buf[:-1] = torch.from_numpy(dw)
        buf[-1] = data.dual_sum
        comm.allreduce(buf, "sum")  # w <- w + sum_k dw_k; and the dual sum of every shard
        w += buf[:-1].numpy()
        log.step = log.updates = r + 1
        log.samples += H
        log.epoch = (r + 1) / spe_global
        if snaps is not None:
            dual_by_version[r + 1] = float(buf[-1])
            snaps.maybe(r + 1, w_t, log.wall_s())
            ctx.progress.update(r + 1, None, log.epoch)
    t = comm.timing()
    log.log_many("comm", {"compute_s": t["compute_s"], "comm_s": t["comm_s"], "wait_s": t["wait_s"],
                          "updates_total": rounds})
    comm.log_straggle_total()
    comm.barrier()
    end_s = log.wall_s()
    train_s = comm.elapsed_s()
    # The exact pair check: w(alpha) = sum_k X_k' alpha_[k] / (lambda n) and the dual terms from alpha
    # itself, not from the running bookkeeping (a float64 all-reduce; every rank takes part).
    exact = torch.zeros(data.d + 1, dtype=torch.float64, device="cpu")
    with comm.untimed():
        exact[:-1] = torch.from_numpy(data.u())
        exact[-1] = objectives.Ridge.dual_terms(data.alpha, data.y)
        comm.allreduce(exact, "sum")
    if snaps is not None:
        snaps.add(rounds, w_t, end_s)
        log.log("event", "train_s", train_s)
        obj = objectives.for_problem(cfg, problem)
        snaps.evaluate(ctx, problem, fm)
        objective_rows(ctx, problem, snaps, spe_global, lambda v: dual_by_version.get(v))
        w_alpha = exact[:-1].numpy() / (lam * n)
        log.log("event", "duality_gap_exact", obj.primal(w_alpha) - obj.dual_from(float(exact[-1]), w_alpha))
        log.log("event", "dual_residual", float(np.linalg.norm(w - w_alpha)))
    comm.barrier()


def check_problem(cfg, problem) -> None:
    _check_dual(cfg, problem, kinds=("ridge",))  # CoCoA+'s local SDCA solves the ridge dual only


SPEC = AlgoSpec(FAMILIES, run, validate=validate, check_problem=check_problem, keys={"algo.h": SDCA_KEYS["algo.h"]})
