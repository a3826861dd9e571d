"""PCA (3.40) with mu <= lambda_max(C) has no minimum: refused before launch (issue 25.3)."""

from __future__ import annotations

import numpy as np
import pytest

from hdist import objectives
from hdist.launch import prepare
from hdist.problems import build_problem
from hdist.types import ConfigError

PCA = ["dataset=pca", "dataset.d=10", "model=linear", "model.input_shape=[10]", "objective.l2=1e-4", "scale=smoke",
       "scale.n_train=200", "scale.n_test=20",
       "scale.epochs=1", "progress=quiet"]


def _lambda_max(cfg) -> float:
    x, _ = build_problem(cfg).data.train[np.arange(int(cfg.dataset.n_train))]
    X = x.reshape(x.shape[0], -1).double().numpy()
    return float(np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1])


@pytest.mark.parametrize("algo", ["dfsdca", "svrg", "dist_svrg"])
@pytest.mark.parametrize("where", ["below", "at"])
def test_mu_at_or_below_lambda_max_is_refused(cli, tmp_path, algo, where):
    cfg = prepare([f"algo={algo}", *PCA])
    lam = _lambda_max(cfg)
    mu = lam / 2 if where == "below" else lam
    code, _, err = cli("run", f"algo={algo}", *PCA, f"algo.pca_mu={mu!r}", f"results_dir={tmp_path}")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "algo.pca_mu" in lines[0] and f"{lam:.6g}" in lines[0]  # the key and the bound from the data
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written


def test_refusal_is_one_line_without_traceback(sub, tmp_path):
    r = sub("run", "algo=dfsdca", *PCA, "algo.pca_mu=0.01", f"results_dir={tmp_path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "algo.pca_mu=0.01" in r.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_check_accepts_mu_above_and_ignores_other_objectives():
    cfg = prepare(["algo=dfsdca", *PCA])
    lam = _lambda_max(cfg)
    prob = build_problem(cfg)
    cfg.algo.pca_mu = lam * 1.001
    objectives.check_pca_mu(cfg, prob)
    cfg.algo.pca_mu = lam * 0.999
    with pytest.raises(ConfigError, match="algo.pca_mu"):
        objectives.check_pca_mu(cfg, prob)
    ridge = prepare(["algo=dfsdca", "dataset=synthetic", "dataset.num_classes=2", "dataset.shape=[22]",
                     "model=linear", "objective.l2=0.1", "scale=smoke", "scale.n_train=50", "algo.pca_mu=1e-9"])
    objectives.check_pca_mu(ridge, build_problem(ridge))  # not PCA: mu is not read
