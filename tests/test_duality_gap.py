"""The logged duality gap of the dual methods is a bound down to float64 rounding (issue 25.2).

dfsdca and cocoa_plus once evaluated P(w) - D(alpha) at a float32 copy of w, so near convergence
the logged gap went negative (-1.45e-7 on ijcnn1) while the exact gap was 2e-11. Now primal and
gap are computed in float64 at w = w(alpha). Checked against a float64 numpy reference on
ijcnn1-shaped synthetic data (22 features, +-1 labels, lambda = 0.1): CoCoA+ replayed in numpy
(its rounds are deterministic), the exact P(w(alpha)) - D(alpha) from the replayed alpha after
every round; and for both methods the minimiser w* of the ridge problem (weak duality:
P(w) - P(w*) <= gap).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hdist import objectives
from hdist.launch import execute, prepare
from hdist.metrics import load_results
from hdist.problems import build_problem
from hdist.types import seed_for

IJCNN1_LIKE = ["dataset=synthetic", "dataset.num_classes=2", "dataset.shape=[22]", "model=linear",
               "model.input_shape=[22]", "objective.l2=0.1", "scale=smoke", "scale.n_test=50", "progress=quiet",
               "algo.h=100", "log.evals_per_epoch=2"]
# P and D are O(0.1) each: their float64 difference carries rounding of ~1e-15, the floor below which
# a converged gap (the ijcnn1-sized runs reach it) is noise around 0, not a violated bound.
ROUNDING = 1e-13


def _run(tmp_path, algo, backend, n, epochs):
    workers = 1 if backend == "serial" else 4
    cfg = prepare([*IJCNN1_LIKE, f"scale.n_train={n}", f"scale.epochs={epochs}", f"algo={algo}",
                   f"backend={backend}", f"topology.workers={workers}", f"results_dir={tmp_path}"])
    res = execute(cfg, quiet_skip=True)
    assert res.status == "done", res.reason
    return cfg, load_results(tmp_path)


def _rows(df: pd.DataFrame, metric: str) -> pd.Series:
    return df[(df["metric"] == metric) & (df["rank"] == 0)].set_index("updates")["value"].sort_index()


def cocoa_plus_reference(cfg, rounds: int) -> np.ndarray:
    """Exact gaps P(w(alpha_r)) - D(alpha_r), r = 0..rounds, of CoCoA+ (gamma = 1, sigma' = K) replayed in numpy."""
    obj = objectives.for_problem(cfg, build_problem(cfg))
    X, y, lam, n = obj.X, obj.y, obj.lam, obj.n
    K, H = int(cfg.topology.workers), int(cfg.algo.h)
    bounds = [(k * n // K, (k + 1) * n // K) for k in range(K)]  # ArrayDataset.shard: contiguous
    rngs = [np.random.default_rng(seed_for(cfg.seed, k)) for k in range(K)]
    sq = np.einsum("ij,ij->i", X, X)
    alpha, w = np.zeros(n), np.zeros(obj.d)
    gaps = [obj.gap(obj.w_of(alpha), alpha)]
    for _ in range(rounds):
        total = np.zeros(obj.d)
        for k, (lo, hi) in enumerate(bounds):
            dw = np.zeros(obj.d)
            for i in rngs[k].integers(0, hi - lo, H):
                j = lo + int(i)
                delta = (y[j] - X[j] @ (w + K * dw) - alpha[j]) / (1.0 + K * sq[j] / (lam * n))
                alpha[j] += delta
                dw += delta * X[j] / (lam * n)
            total += dw
        w = w + total
        gaps.append(obj.gap(obj.w_of(alpha), alpha))
    return np.asarray(gaps)


def _check_bound(cfg, df) -> pd.Series:
    """Every logged gap >= 0 (to float64 rounding) and >= the primal suboptimality P(w) - P(w*) (float64 numpy w*)."""
    gap, primal = _rows(df, "duality_gap"), _rows(df, "primal")
    obj = objectives.for_problem(cfg, build_problem(cfg))
    p_star = obj.primal(obj.solve())
    assert (gap >= -ROUNDING).all(), gap[gap < -ROUNDING]
    sub = primal.loc[gap.index] - p_star
    assert (sub >= -ROUNDING).all() and (sub <= gap + ROUNDING).all()
    return gap


@pytest.mark.parametrize("backend", ["sim", pytest.param("thread", marks=pytest.mark.slow),
                                     pytest.param("process", marks=pytest.mark.slow),
                                     pytest.param("mpi", marks=pytest.mark.mpi)])
def test_cocoa_plus_gap_matches_float64_reference(tmp_path, backend):
    cfg, df = _run(tmp_path, "cocoa_plus", backend, 2000, 40)
    gap = _check_bound(cfg, df)
    ref = cocoa_plus_reference(cfg, int(gap.index.max()))
    assert ref[-1] < 1e-10 and gap.iloc[-1] < 1e-10  # the check reaches below 1e-10
    diff = np.abs(gap.to_numpy() - ref[gap.index.to_numpy()])
    assert diff.max() < 1e-12, (gap.index[diff.argmax()], gap.iloc[diff.argmax()], ref[gap.index[diff.argmax()]])
    exact = float(_rows(df, "duality_gap_exact").iloc[0])
    assert abs(exact - ref[-1]) < 1e-12 and float(_rows(df, "dual_residual").iloc[0]) < 1e-12


@pytest.mark.parametrize("backend", ["sim", pytest.param("serial", marks=pytest.mark.slow),
                                     pytest.param("mpi", marks=pytest.mark.mpi)])
def test_dfsdca_gap_is_a_float64_bound(tmp_path, backend):
    cfg, df = _run(tmp_path, "dfsdca", backend, 2000, 40)
    gap = _check_bound(cfg, df)
    exact = float(_rows(df, "duality_gap_exact").iloc[0])  # from every worker's alpha, float64
    assert exact < 1e-10 and abs(gap.iloc[-1] - exact) < 1e-12
    assert float(_rows(df, "dual_residual").iloc[0]) < 1e-12  # the server's w is w(alpha)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["cocoa_plus", "dfsdca"])
def test_gap_at_ijcnn1_size(tmp_path, algo):
    # ijcnn1's 49,990 x 22 at the thesis' 30 epochs (synthetic data of its shape)
    cfg, df = _run(tmp_path, algo, "sim", 49_990, 30)
    gap = _check_bound(cfg, df)
    exact = float(_rows(df, "duality_gap_exact").iloc[0])
    assert abs(gap.iloc[-1] - exact) < 1e-12


@pytest.mark.parametrize("backend", ["thread", pytest.param("process", marks=pytest.mark.slow)])
def test_dfsdca_shared_w_is_float64_on_shared_memory(tmp_path, backend):
    """On thread and process the backend allocates the shared w before any rank starts: in the dtype dfsdca
    declares (AlgoSpec.ps_dtype = float64), so the per-snapshot gap there is a float64 bound too (a float32
    shared w left it at -1.5e-8 and the final gap 1.5e-8 off the exact one)."""
    cfg, df = _run(tmp_path / backend, "dfsdca", backend, 2000, 40)
    gap = _check_bound(cfg, df)
    exact = float(_rows(df, "duality_gap_exact").iloc[0])
    # How far the asynchronous run gets depends on the threads' interleaving (1e-13 to 4e-8 seen); a
    # float32 w is off by ~1e-8 wherever it ends, 1e4 times the tolerance.
    assert exact < 1e-6 and abs(gap.iloc[-1] - exact) < 1e-12, (gap.iloc[-1], exact)
    assert float(_rows(df, "dual_residual").iloc[0]) < 1e-12  # the shared w is w(alpha)
    # the serial run reaches the same optimum: both final primals lie within their gaps above P(w*)
    scfg, sdf = _run(tmp_path / "serial", "dfsdca", "serial", 2000, 40)
    sgap = _check_bound(scfg, sdf)
    p, sp = _rows(df, "primal").iloc[-1], _rows(sdf, "primal").iloc[-1]
    assert abs(p - sp) <= gap.iloc[-1] + sgap.iloc[-1] + ROUNDING


def test_shared_memory_backends_allocate_x_in_the_declared_dtype():
    """World carries the algorithm's declared ps_dtype to the backend; a shared x of another dtype is refused
    at ps_init instead of rounding x0 (and every push) into it."""
    import threading

    import torch

    from hdist.algos import get_algo
    from hdist.backends._ranks import alloc_state_tensors
    from hdist.backends.local import LocalComm, LocalState
    from hdist.types import AlgoSpec, World

    assert get_algo("dfsdca").ps_dtype == "float64" and get_algo("asysg_con").ps_dtype == "float32"
    cfg = prepare([*IJCNN1_LIKE, "algo=dfsdca", "backend=thread", "topology.workers=2"])
    from hdist.backends import get_backend

    world = World.build(cfg, get_algo("dfsdca"), get_backend("thread"))
    assert world.ps_dtype == "float64"
    x, counts, scratch = alloc_state_tensors(22, 1, 64, world.ps_dtype)
    assert x.dtype == torch.float64
    state = LocalState(x=x, counts=counts, scratch=scratch, lock=threading.Lock(), barrier=threading.Barrier(1),
                       abort=threading.Event(), inboxes=[None], timeout_s=5.0)
    comm = LocalComm(state, 0, 1)
    x0 = torch.full((22,), 1.0 + 2.0 ** -40, dtype=torch.float64)  # not a float32 number
    comm.ps_init(x0)
    out = torch.zeros(22, dtype=torch.float64)
    comm.pull(out)
    assert torch.equal(out, x0)
    with pytest.raises(RuntimeError, match="ps_init: x0 is torch.float32"):
        comm.ps_init(torch.zeros(22))
    with pytest.raises(ValueError, match="ps_dtype='float16'"):
        AlgoSpec(families=("ps",), run=lambda ctx: None, ps_dtype="float16")


def test_a_dual_method_that_overflows_stops_as_diverged(cli, tmp_path):
    """A step too large overflows alpha within pushes: the run stops there as diverged (its snapshots
    are evaluated only after training, so it used to run to its end in NaN)."""
    import json

    code, out, err = cli("run", "experiment=thesis-fig6", "algo.lr=50", "scale=smoke", f"results_dir={tmp_path}",
                         "progress=quiet", "dataset.root=" + str(tmp_path / "no-data"))
    (status,) = [json.loads(p.read_text()) for p in tmp_path.glob("thesis-fig6/*/status.json")]
    assert status["status"] == "diverged" and "dual sum" in status["reason"], (status, err)
