"""Sparse data in the dual solvers (thesis ch. 3: Dis-dfSDCA Alg. 6-7, CoCoA+ with SDCA): a CSR shard stays CSR,
the iterates equal those on the same data densified, the duality gap closes, and rcv1's ``train_file`` option.

The problem: a small rcv1-like ridge regression (n = 300, d = 2,000, density 0.01, unit-norm rows, labels +-1),
built directly for the step-level checks and written as LIBSVM text (an rcv1 file, 47,236 columns, the non-zeros
in the first 2,000) for the end-to-end runs, which load it through the real loader with ``dense`` false and true.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from omegaconf import OmegaConf

from hdist import objectives
from hdist.algos import cocoa_plus, dfsdca
from hdist.data import ArrayDataset, load
from hdist.types import ConfigError

N, D, DENSITY, LAM = 300, 2000, 0.01, 0.1


def _problem(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """CSR float32 [N, D] with unit-norm rows (like rcv1's tf-idf rows) and {0, 1} labels from a linear teacher."""
    rng = np.random.default_rng(seed)
    X = sp.random(N, D, density=DENSITY, format="csr", dtype=np.float64, random_state=rng)
    X = X + sp.csr_matrix((np.ones(N), (np.arange(N), rng.integers(0, D, N))), shape=(N, D))  # no empty row
    X = sp.csr_matrix(sp.diags(1.0 / np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel())) @ X, dtype=np.float32)
    X.sort_indices()
    labels = (X.astype(np.float64) @ rng.standard_normal(D) > 0).astype(np.int64)
    return X, labels


class _Ridge:
    """The bits of a Problem that LocalData reads: a ridge objective on {0,1} labels mapped to +-1."""

    loss_name, model_cfg = "squared", {"name": "linear", "num_classes": 1}

    @staticmethod
    def target(y):
        return y.to(torch.float32) * 2 - 1


CFG = OmegaConf.create({"algo": {"objective": "ridge", "name": "dfsdca"}, "dataset": {"name": "rcv1"},
                        "objective": {"l2": LAM}})


def _shards():
    X, labels = _problem()
    y = torch.from_numpy(labels)
    sparse = ArrayDataset(X, y)
    dense = ArrayDataset(torch.from_numpy(X.toarray()), y)  # the same float32 values, densified
    return sparse, dense


def _dfsdca(data: dfsdca.LocalData, epochs: int, H: int = 10, lr: float = 0.5, seed: int = 0):
    """Alg. 6-7 with one worker, serially: H dual-free steps, then the server step w <- w - eta v."""
    n = data.n_k
    eta = lr / (LAM * n)
    w, v = np.zeros(data.d), np.zeros(data.d)
    rng = np.random.default_rng(seed)
    for _ in range(epochs * n // H):
        v[:] = 0.0
        for i in rng.integers(0, n, H):
            data.step(int(i), w, v, eta * LAM * n)
        w -= eta * v
    return w


# --- step level: sparse == densified -------------------------------------------------------------
def test_dfsdca_sparse_shard_stays_csr_and_matches_dense_iterates():
    sparse, dense = _shards()
    ds, dd = dfsdca.LocalData(CFG, _Ridge(), sparse), dfsdca.LocalData(CFG, _Ridge(), dense)
    assert ds.sparse and sp.issparse(ds.X) and ds.X.dtype == np.float64
    assert not dd.sparse and isinstance(dd.X, np.ndarray)
    assert ds.nbytes() < dd.nbytes() / 20  # ~24 nnz/row x 12 bytes vs 2,000 x 8 bytes
    assert np.allclose(ds.sq_norms(), dd.sq_norms(), rtol=0, atol=1e-12)
    ws, wd = _dfsdca(ds, 40), _dfsdca(dd, 40)
    assert np.allclose(ws, wd, rtol=0, atol=1e-10)
    assert np.allclose(ds.alpha, dd.alpha, rtol=0, atol=1e-10)
    assert abs(ds.dual_sum - dd.dual_sum) < 1e-10
    assert np.allclose(ds.u(), dd.u(), rtol=0, atol=1e-10)
    # the duality gap, computed on the CSR objective without densifying, has closed
    obj = objectives.Ridge(ds.X, ds.y, LAM)
    assert obj.sparse and sp.issparse(obj.X)
    gap = obj.primal(ws) - obj.dual_from(ds.dual_sum, ds.u() / (LAM * N))
    assert -1e-12 < gap < 1e-8, gap
    assert abs(gap - obj.gap(ws, ds.alpha)) < 1e-12  # the bookkeeping identity w = w(alpha)
    dense_obj = objectives.Ridge(dd.X, dd.y, LAM)
    assert abs(dense_obj.gap(wd, dd.alpha) - gap) < 1e-12


def test_dfsdca_sparse_pca_step_matches_dense():
    cfg = OmegaConf.create({"algo": {"objective": "pca", "name": "dfsdca", "pca_mu": 10.0},
                            "dataset": {"name": "x"}, "objective": {"l2": 1e-3}})
    sparse, dense = _shards()
    ds, dd = dfsdca.LocalData(cfg, _Ridge(), sparse), dfsdca.LocalData(cfg, _Ridge(), dense)
    w = np.random.default_rng(1).standard_normal(D) / np.sqrt(D)
    vs, vd = np.zeros(D), np.zeros(D)
    for i in (0, 5, 7, 5):
        ds.step(i, w, vs, 0.3)
        dd.step(i, w, vd, 0.3)
    assert np.allclose(vs, vd, rtol=0, atol=1e-12) and np.allclose(ds.alpha, dd.alpha, rtol=0, atol=1e-12)


def test_ridge_objective_sparse_equals_dense_including_solve():
    X, labels = _problem()
    y = labels * 2.0 - 1
    s, d = objectives.Ridge(X.astype(np.float64), y, LAM), objectives.Ridge(X.toarray(), y, LAM)
    w = np.random.default_rng(2).standard_normal(D) / 10
    alpha = np.random.default_rng(3).standard_normal(N)
    assert abs(s.primal(w) - d.primal(w)) < 1e-12 and np.allclose(s.grad(w), d.grad(w), atol=1e-14)
    assert abs(s.gap(w, alpha) - d.gap(w, alpha)) < 1e-12
    ws = s.solve()  # d > n: the n x n push-through solve
    assert np.linalg.norm(s.grad(ws)) < 1e-12 and np.allclose(ws, d.solve(), atol=1e-10)
    small = objectives.Ridge(X[:, :50].astype(np.float64), y, LAM)  # d < n: the d x d Gram
    assert np.linalg.norm(small.grad(small.solve())) < 1e-12


# --- end to end through the LIBSVM loader ---------------------------------------------------------
def _write_rcv1(root: Path) -> None:
    """The problem as rcv1 files: the 300 samples as rcv1_test.binary (trained on with train_file=test) and a
    small rcv1_train.binary (the test set then); plain files are not checksummed."""
    X, labels = _problem()
    lib = root / "libsvm"
    lib.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(N):
        a, b = X.indptr[i], X.indptr[i + 1]
        feats = " ".join(f"{j + 1}:{v:.9g}" for j, v in zip(X.indices[a:b], X.data[a:b], strict=True))
        lines.append(f"{'+1' if labels[i] else '-1'} {feats}")
    (lib / "rcv1_test.binary").write_text("\n".join(lines) + "\n")
    (lib / "rcv1_train.binary").write_text("\n".join(lines[:40]) + "\n")


def _metrics(results: Path) -> dict[bool, pd.DataFrame]:
    """Each run's metrics, keyed by its ``dataset.dense``."""
    out = {}
    for cfg_file in glob.glob(str(results / "adhoc" / "*" / "config.yaml")):
        run = Path(cfg_file).parent
        out[bool(OmegaConf.load(cfg_file).dataset.dense)] = pd.concat(
            [pd.read_parquet(f) for f in glob.glob(str(run / "metrics-r*.parquet"))])
    return out


def _series(m: pd.DataFrame, metric: str) -> np.ndarray:
    return m[m["metric"] == metric].sort_values("updates")["value"].to_numpy()


def test_rcv1_train_file_option(tmp_path):
    _write_rcv1(tmp_path)
    base = {"name": "rcv1", "root": str(tmp_path), "download": False}
    b = load({**base, "train_file": "test", "use_test_file": True}, input_shape=(47236,), num_classes=1, seed=0)
    assert (len(b.train), len(b.test)) == (N, 40) and b.train.is_sparse and b.train.X.shape[1] == 47236
    assert "rcv1_test.binary" in b.info["files"][0] and "rcv1_train.binary" in b.info["files"][1]
    held = load({**base, "train_file": "test", "test_fraction": 0.1}, input_shape=(47236,), num_classes=1, seed=0)
    assert (len(held.train), len(held.test)) == (270, 30)
    default = load(base, input_shape=(47236,), num_classes=1, seed=0)  # today's default: rcv1_train.binary
    assert len(default.train) + len(default.test) == 40
    with pytest.raises(ConfigError, match="train_file=both"):
        load({**base, "train_file": "both"}, input_shape=(47236,), num_classes=1, seed=0)


COMMON = ["dataset=rcv1", "dataset.train_file=test", "dataset.use_test_file=true", "dataset.download=false",
          "model=linear", "model.input_shape=[47236]", f"objective.l2={LAM}", "scale=smoke", "scale.n_train=null",
          "scale.n_test=null", "backend=serial", "progress=quiet"]


@pytest.mark.parametrize("algo,module", [("dfsdca", dfsdca), ("cocoa_plus", cocoa_plus)])
def test_sparse_run_equals_dense_run(cli, tmp_path, monkeypatch, algo, module):
    """The same iterates (objective values at every snapshot) on the CSR shard and on the 47,236-wide dense one."""
    _write_rcv1(tmp_path / "data")
    seen = []

    class Recording(dfsdca.LocalData):  # note each shard's storage as the algorithm builds it
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen.append((self.sparse, type(self.X)))

    monkeypatch.setattr(module, "LocalData", Recording)
    for dense in ("false", "true"):  # short: a dense step costs O(47,236), the slow part of this test
        code, _, err = cli("run", f"algo={algo}", *COMMON, f"dataset.root={tmp_path / 'data'}", "scale.epochs=2",
                           "log.evals_per_epoch=2", "algo.h=30", f"dataset.dense={dense}",
                           f"results_dir={tmp_path / 'res'}")
        assert code == 0, err
    assert [s for s, _ in seen] == [True, False] and issubclass(seen[0][1], sp.spmatrix)
    runs = _metrics(tmp_path / "res")
    ms, md = runs[False], runs[True]
    for metric in ("primal", "duality_gap"):
        s, d = _series(ms, metric), _series(md, metric)
        assert s.size > 2 and s.shape == d.shape
        assert np.allclose(s, d, rtol=1e-10, atol=1e-12), (metric, np.abs(s - d).max())
        assert s[-1] < s[0]


@pytest.mark.parametrize("algo", ["dfsdca", "cocoa_plus"])
def test_sparse_run_closes_the_gap(cli, tmp_path, algo):
    """40 passes on the CSR shard: the logged gap and the exact final P(w) - D(alpha) below 1e-8."""
    _write_rcv1(tmp_path / "data")
    code, _, err = cli("run", f"algo={algo}", *COMMON, f"dataset.root={tmp_path / 'data'}", "scale.epochs=40",
                       "log.evals_per_epoch=0.25", "algo.h=100", f"results_dir={tmp_path / 'res'}")
    assert code == 0, err
    m = _metrics(tmp_path / "res")[False]
    gap = _series(m, "duality_gap")
    exact = float(_series(m, "duality_gap_exact")[0])
    assert gap[0] > 0.1 and gap[-1] < 1e-8 and -1e-10 < exact < 1e-8, (gap[0], gap[-1], exact)
