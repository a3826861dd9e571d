"""Dis-dfSDCA: distributed asynchronous dual-free SDCA on a parameter server (thesis ch. 3, Alg. 6-7).

Huo. Distributed Machine Learning Framework: New Algorithms and Theoretical Foundation (PhD
thesis, 2020), chapter 3, for ``min_w P(w) = 1/n sum_i phi_i(w) + lambda/2 ||w||^2``:

    server (Alg. 6):                              worker k (Alg. 7), dual variables alpha_[k] = 0:
      w <- 0                                        repeat:
      for s = 0..S-1:                                 receive w^{s,d(t)}
        for t = 0..T-1:                               v_k <- 0
          receive v_k from any worker k               I_t <- H samples of shard k
          w <- w - eta v_k                            for i in I_t:
          send w back to worker k                       kappa <- grad phi_i(w) + alpha_i       # dual residue
        broadcast w to all workers                      alpha_i <- alpha_i - eta lambda n kappa  # (3.7)
                                                        v_k <- v_k + kappa
                                                      send v_k

Symbols -> config: eta = ``algo.lr`` (``algo.lr_unit: lambda_n`` reads it as eta lambda n, i.e.
eta = lr / (lambda n), a scale-free choice: dfSDCA needs eta lambda n <= 1), H = ``algo.h``,
T = ``algo.t`` (null: no broadcasts), lambda = ``objective.l2``, K = ``topology.workers``,
``scale.epochs`` = passes of dual steps over the data (n steps, all workers together).
The objective (``algo.objective``): ``auto`` = ridge (3.38) for a 1-output linear model with the
squared loss on +-1 labels, PCA (3.40) on the ``pca`` dataset (``algo.pca_mu`` = mu).

Choices and deviations, said here:
- The box of Alg. 7 writes ``eta lambda n_k``; eq. (3.7) and the text write ``eta lambda n``,
  which is what keeps the primal-dual relation (3.3) w = 1/(lambda n) sum_i alpha_i exact
  (server step -eta v_k = 1/(lambda n) sum of the H dual changes). We use n.
- Storage: ridge's grad phi_i(w) = (x_i'w - y_i) x_i, so alpha_i = a_i x_i and a worker keeps
  n_k numbers (O(n)); PCA's grad phi_i is not of that form and a worker keeps n_k d-vectors
  (O(n d)), as the thesis says.
- I_t: H indices drawn uniformly with replacement from the shard ("uniform sampling").
- The broadcast every T server updates: the server rank sits in ``serve`` (one request at a
  time), so the broadcast is delivered as each worker's next read: between two dual steps a
  worker looks at the server's update count and, when it has passed a multiple of T since the
  w it holds, pulls the fresh w (one message of d floats, what receiving a broadcast costs).
  Every push already gets the fresh w back (Alg. 6 "send w back"), so broadcasts only refresh
  workers in the middle of a long block (stragglers).
- Duality gap (ridge): the dual D(alpha) = 1/n sum_i (a_i y_i - a_i^2/2) - lambda/2 ||w(alpha)||^2
  of the dual variables whose updates are in the server's w. Each worker records, after each
  push (applied as update v of w), its running sum_i (a_i y_i - a_i^2/2); after training rank 0
  collects them and logs ``duality_gap`` = P(w_v) - D(alpha_v) at every snapshot of w, using
  w(alpha_v) = w_v (the bookkeeping identity). At the end it also logs the exact pair check:
  ``duality_gap_exact`` = P(w) - D(alpha) with w(alpha) computed from every worker's alpha, and
  ``dual_residual`` = ||w - w(alpha)||. The server's w is float64 on every backend (the sum of
  float64 pushes, so w_v = w(alpha_v) to float64 rounding) and so are the primal and the gap:
  the module declares it (``PS_DTYPE``, :attr:`hdist.types.AlgoSpec.ps_dtype`), and the backends
  that allocate the shared vector before any rank starts (thread, process) allocate it in that.
- Sparse data (LIBSVM rcv1: 47,236 features at 0.16% density) stays sparse: a worker keeps its
  shard as scipy CSR float64 (nnz x 12 bytes, not n_k x d x 8: the 20,242 rcv1_train rows would
  be 7.6 GB dense) and a step touches only x_i's non-zeros (x_i'w over them, v[idx] += r x_i).
  Dense data keeps the dense arrays and code path unchanged (bit-identical to before).
Runs on mpi and sim (server rank), process and thread (the shared vector is the server).

Devices (``topology.devices``): the problem, the model and the server's w are where the backend puts them
(the rank's device); a worker's dual steps, alpha and its copy of w are host float64 numpy (a step is a
few scalar operations on one row, which a GPU would spend in kernel launches): w is copied to the host
after each pull and the push is copied to w's device.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from hdist import objectives
from hdist.algos._vr import run_frame
from hdist.data import is_sparse
from hdist.problems import build_problem
from hdist.rules import int_at_least, one_of, opt
from hdist.train import check_finite
from hdist.types import AlgoSpec, ConfigError

FAMILIES = ("ps",)
#: the server's w: float64, so that w = w(alpha) and the per-snapshot duality gap is a bound down to
#: float64 rounding (the thread and process backends allocate their shared w in it, AlgoSpec.ps_dtype)
PS_DTYPE = "float64"

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.h": (int_at_least(1), "an integer >= 1 (local steps between pushes)"),
    "algo.t": (opt(int_at_least(1)), "null or an integer >= 1 (server updates between broadcasts)"),
    "algo.lr_unit": (one_of("abs", "lambda_n"), "abs or lambda_n (eta = lr / (lambda n))"),
}


def validate(cfg) -> None:
    if not float(cfg.objective.l2) > 0:
        raise ConfigError(f"objective.l2={cfg.objective.l2!r}: not allowed; expected lambda > 0 (dual methods)")


def check_problem(cfg, problem, kinds: tuple[str, ...] = ("ridge", "pca")) -> None:
    """The objective the data and model make has a dual these methods step on (run in the parent)."""
    kind = objectives.kind_of(cfg, problem)
    if kind not in kinds:
        raise ConfigError(f"algo={cfg.algo.name}: needs a linear objective (ridge: model=linear with the squared "
                          f"loss{'; or dataset=pca' if 'pca' in kinds else ''}), got algo.objective={kind}; "
                          f"allowed: {', '.join(kinds)}")
    m = problem.model_cfg
    outputs = int(m.get("num_classes") or 1)
    if kind == "ridge" and not (m.get("name") == "linear" and outputs == 1 and not m.get("bias")
                                and problem.loss_name == "squared"):
        raise ConfigError(f"algo.objective=ridge: needs model=linear with one output, no bias and the squared loss; "
                          f"got model={m.get('name')} with model.num_classes={outputs}, bias={bool(m.get('bias'))}, "
                          f"loss {problem.loss_name}; allowed: model=linear model.num_classes=1")


def eta_of(cfg, n: int) -> float:
    lr = float(cfg.algo.lr)
    return lr / (float(cfg.objective.l2) * n) if cfg.algo.get("lr_unit", "abs") == "lambda_n" else lr


class LocalData:
    """Worker k's shard as float64 numpy (x_i rows, targets) and its dual variables.

    ``X`` is a dense [n_k, d] array, or a CSR matrix when the shard is sparse (``self.sparse``):
    densifying rcv1 would take n_k x 47,236 x 8 bytes.
    """

    def __init__(self, cfg, problem, shard):
        self.kind = objectives.kind_of(cfg, problem)
        if self.kind not in ("ridge", "pca"):
            raise ConfigError(f"algo={cfg.algo.name}: needs a linear objective (ridge: model=linear with the squared "
                              f"loss; or dataset=pca), got algo.objective={self.kind}")
        Xs = getattr(shard, "X", None)
        self.sparse = is_sparse(Xs)
        if self.sparse:
            # float64 CSR with sorted, unique column indices (so v[idx] += ... never meets an index twice)
            self.X = sp.csr_matrix(Xs, dtype=np.float64, copy=True)
            self.X.sum_duplicates()
            self.X.sort_indices()
            y = shard.y
            self._indptr, self._indices, self._data = self.X.indptr, self.X.indices, self.X.data
        else:
            X, y = shard[torch.arange(len(shard), device="cpu")]
            self.X = X.reshape(len(shard), -1).to("cpu", torch.float64).numpy()
        self.y = problem.target(y).to("cpu", torch.float64).numpy() if self.kind == "ridge" else None
        self.n_k, self.d = self.X.shape
        if self.kind == "pca":
            self.mu, self.lam = objectives.pca_mu(cfg), float(cfg.objective.l2)
            self.b = objectives.pca_b(self.d, int(cfg.dataset.get("data_seed") or 0))
            self.alpha = np.zeros((self.n_k, self.d))  # O(n d): alpha_i in R^d
        else:
            self.alpha = np.zeros(self.n_k)  # O(n): alpha_i = a_i x_i
        self.dual_sum = 0.0  # sum_i (a_i y_i - a_i^2 / 2) over the shard (ridge)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """x_i of a sparse shard as (column indices, values): its non-zeros only."""
        a, b = self._indptr[i], self._indptr[i + 1]
        return self._indices[a:b], self._data[a:b]

    def sq_norms(self) -> np.ndarray:
        """||x_i||^2 for every row of the shard."""
        if self.sparse:
            return np.asarray(self.X.multiply(self.X).sum(1), dtype=np.float64).ravel()
        return np.einsum("ij,ij->i", self.X, self.X)

    def nbytes(self) -> int:
        """Memory of the shard's X (CSR: data + indices + indptr)."""
        if self.sparse:
            return int(self.X.data.nbytes + self.X.indices.nbytes + self.X.indptr.nbytes)
        return int(self.X.nbytes)

    def step(self, i: int, w: np.ndarray, v: np.ndarray, step: float) -> None:
        """One dual-free step on sample i at w: kappa, alpha_i -= step kappa, v += kappa (step = eta lambda n)."""
        if self.sparse:
            self._step_sparse(i, w, v, step)
            return
        xi = self.X[i]
        if self.kind == "ridge":
            r = xi @ w - self.y[i] + self.alpha[i]  # kappa = r x_i
            old = self.alpha[i]
            new = old - step * r
            self.alpha[i] = new
            yi = self.y[i]
            self.dual_sum += (new * yi - 0.5 * new * new) - (old * yi - 0.5 * old * old)
            v += r * xi
        else:
            kappa = (self.mu - self.lam) * w - xi * (xi @ w) - self.b + self.alpha[i]
            self.alpha[i] -= step * kappa
            v += kappa

    def _step_sparse(self, i: int, w: np.ndarray, v: np.ndarray, step: float) -> None:
        """:meth:`step` on the non-zeros of x_i: O(nnz(x_i)) for ridge (PCA's kappa is dense anyway)."""
        idx, val = self.row(i)
        if self.kind == "ridge":
            r = val @ w[idx] - self.y[i] + self.alpha[i]  # kappa = r x_i
            old = self.alpha[i]
            new = old - step * r
            self.alpha[i] = new
            yi = self.y[i]
            self.dual_sum += (new * yi - 0.5 * new * new) - (old * yi - 0.5 * old * old)
            v[idx] += r * val  # indices are unique within a row (sum_duplicates above)
        else:
            kappa = (self.mu - self.lam) * w - self.b + self.alpha[i]
            kappa[idx] -= val * (val @ w[idx])
            self.alpha[i] -= step * kappa
            v += kappa

    def u(self) -> np.ndarray:
        """sum over the shard of alpha_i (as d-vectors): lambda n w(alpha) restricted to this shard."""
        if self.kind != "ridge":
            return self.alpha.sum(0)
        return np.asarray(self.X.T @ self.alpha, dtype=np.float64).ravel() if self.sparse else self.X.T @ self.alpha


def worker_loop(ctx, problem, fm, w, snaps):
    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    n = len(problem.data.train)
    lam = float(cfg.objective.l2)
    eta = eta_of(cfg, n)
    H = int(cfg.algo.h)
    T = int(cfg.algo.t) if cfg.algo.get("t") else None
    data = LocalData(cfg, problem, w.shard)
    step = eta * lam * n
    pushes = max(1, math.ceil(float(cfg.scale.epochs) * data.n_k / H))
    if cfg.algo.get("max_steps"):
        pushes = min(pushes, max(1, math.ceil(int(cfg.algo.max_steps) / comm.n_workers)))
    w.total_local = pushes
    rng = np.random.default_rng(ctx.worker_seed())
    x = fm.ps  # the server's w, in PS_DTYPE (float64)
    version = comm.pull(x)  # receive w
    w.pulled(version, x, snaps)
    wv = x.detach().to("cpu", torch.float64).numpy().copy()
    v = np.zeros(data.d)
    entries = []  # (version at which this push is in w, the shard's dual sum then)
    for p in range(pushes):
        comm.mark_step()
        with comm.compute():
            v[:] = 0.0
            for i in rng.integers(0, data.n_k, H):
                if T is not None and comm.ps_version() // T > version // T:
                    version = comm.pull(x)  # the broadcast of w^{s+1,0} reaches this worker
                    wv[:] = x.detach().to("cpu", torch.float64).numpy()
                data.step(int(i), wv, v, step)
                comm.compute_done(1)
        delta = torch.from_numpy(-eta * v).to(x.device, x.dtype)
        staleness, version = comm.push_pull(delta, version, x)  # send v_k; receive w
        wv[:] = x.detach().to("cpu", torch.float64).numpy()
        # A step too large for the data overflows alpha within a few pushes; the snapshots are evaluated
        # only after training, so without this the run would go on to its end in NaN.
        check_finite(data.dual_sum, f"worker {w.index} push {p + 1} (its dual sum)")
        entries.append((float(version), data.dual_sum))
        w.pulled(version, x, snaps)
        w.step = p + 1
        log.step, log.updates = p + 1, version
        log.samples += H
        log.epoch = (p + 1) * H / data.n_k
        if not comm.has_server:
            log.log("comm", "staleness", staleness)
        if (p + 1) % int(cfg.log.train_every) == 0:
            ctx.progress.update(min(version, w.total_global), None, version / w.spe_global)
    e = np.asarray(entries, dtype=np.float64).reshape(-1)
    return torch.from_numpy(np.concatenate([[len(entries), data.dual_sum], e, data.u()])).view(-1, 1)


def parse_rows(rows, d: int):
    """Each worker's (versions, dual sums) and final (dual sum, u_k) from its flat row tensor."""
    out = []
    for r in rows:
        a = r.view(-1).to("cpu").numpy()
        k = int(a[0])
        e = a[2:2 + 2 * k].reshape(k, 2)
        out.append((e[:, 0], e[:, 1], float(a[1]), a[2 + 2 * k:2 + 2 * k + d]))
    return out


def after(ctx, problem, fm, snaps, rows):
    """Rank 0: the exact final gap and residual; returns the dual-sum lookup for the snapshots."""
    obj = objectives.for_problem(ctx.cfg, problem)
    if obj is None or obj.kind != "ridge":
        return None
    parsed = parse_rows(rows, obj.d)
    w_alpha = sum(p[3] for p in parsed) / (obj.lam * obj.n)
    dual = obj.dual_from(sum(p[2] for p in parsed), w_alpha)
    w = fm.ps.detach().to("cpu", torch.float64).numpy()  # the final x (run_ps pulled it into fm.ps)
    log = ctx.log
    log.log("event", "duality_gap_exact", obj.primal(w) - dual)
    log.log("event", "dual_residual", float(np.linalg.norm(w - w_alpha)))

    def dual_at(version: int) -> float:
        total = 0.0
        for versions, sums, _final, _u in parsed:
            j = np.searchsorted(versions, version, side="right") - 1  # last push in w at this version
            total += float(sums[j]) if j >= 0 else 0.0
        return total

    return dual_at


def run(ctx) -> None:
    cfg = ctx.cfg
    # One update of x is one push of H dual steps: n / H updates make a pass over the data.
    n = len(build_problem(cfg, ctx.device).data.train)
    # w = w(alpha) is the sum of every push: kept in PS_DTYPE (float64), so that the per-snapshot duality
    # gap is a bound down to float64 rounding.
    run_frame(ctx, worker_loop, spe_global=n / int(cfg.algo.h), after=after, zero_init=True, ps_dtype=PS_DTYPE)


SPEC = AlgoSpec(FAMILIES, run, validate=validate, check_problem=check_problem, keys=KEYS, ps_dtype=PS_DTYPE)
