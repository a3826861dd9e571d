"""Closed-form objectives of the thesis ch. 3 (Dis-dfSDCA) experiments, in float64.

- :class:`Ridge`: problem (3.38), ridge regression ``P(w) = 1/n sum_i 1/2 (x_i'w - y_i)^2 + lambda/2 ||w||^2``
  (labels in {-1, +1}), with its SDCA dual (3.2) ``D(alpha) = 1/n sum_i (alpha_i y_i - alpha_i^2 / 2)
  - lambda/2 ||w(alpha)||^2``, ``w(alpha) = A alpha / (lambda n)``, the duality gap ``P(w) - D(alpha)`` and the
  exact minimiser.
- :class:`PCAObjective`: problem (3.40), ``P(w) = 1/n sum_i 1/2 w'((mu - lambda) I - x_i x_i') w - b'w
  + lambda/2 ||w||^2 = 1/2 w'(mu I - C) w - b'w`` with ``C = 1/n sum_i x_i x_i'``; ``w* = (mu I - C)^{-1} b``
  (closed form; the thesis ran Dis-dfSDCA to convergence instead), its suboptimality ``P(w) - P(w*)``.

Both take the component functions ``phi_i`` without the regulariser, as the thesis writes them:
``grad phi_i(w) = (x_i'w - y_i) x_i`` (ridge: a scalar times ``x_i``, so dual variables are one
number per sample) and ``grad phi_i(w) = (mu - lambda) w - x_i x_i'w - b`` (PCA: a d-vector per sample).

:func:`for_problem` builds the objective of a run from its :class:`~hdist.problems.Problem` and
``algo.objective`` (``auto``: ``pca`` for the pca dataset, ``ridge`` for a 1-output linear model
with the squared loss, none otherwise).

Sparse data (LIBSVM rcv1, CSR) stays sparse in :class:`Ridge`: primal, gradient, ``w(alpha)`` and
the duality gap are sparse products (the thesis' 677,399 x 47,236 rcv1 would be 256 GB dense);
only :meth:`Ridge.solve` builds a dense Gram matrix, in the smaller of n and d, or runs CG.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

#: kinds of objective an algorithm can be asked to optimise (``algo.objective``)
KINDS = ("auto", "model", "ridge", "pca")


#: above this many rows and columns, a sparse :meth:`Ridge.solve` runs CG instead of a dense Gram solve
DENSE_SOLVE_MAX = 5000


def _dense(split) -> tuple[np.ndarray, np.ndarray]:
    x, y = split[torch.arange(len(split), device="cpu")]
    return x.reshape(len(split), -1).to(torch.float64).numpy(), y


def _matrix(split, keep_sparse: bool):
    """``(X, y)`` of a split: CSR float64 when the split is sparse and ``keep_sparse``, else dense float64."""
    if keep_sparse and getattr(split, "is_sparse", False):
        return sp.csr_matrix(split.X, dtype=np.float64), split.y
    return _dense(split)


class Ridge:
    """Problem (3.38) on data ``X`` [n, d] (float64; dense or scipy sparse, kept CSR) and targets ``y`` in {-1, +1}."""

    kind = "ridge"
    scalar_dual = True  # grad phi_i(w) = phi_i'(x_i'w) x_i: one dual number per sample (O(n) storage)

    def __init__(self, X, y: np.ndarray, lam: float):
        if lam <= 0:
            raise ValueError(f"ridge needs lambda > 0 (objective.l2), got {lam}")
        self.sparse = sp.issparse(X)
        self.X = sp.csr_matrix(X, dtype=np.float64) if self.sparse else np.asarray(X, np.float64)
        self.y, self.lam = np.asarray(y, np.float64), float(lam)
        self.n, self.d = self.X.shape

    # --- primal ---------------------------------------------------------------------------------
    def primal(self, w: np.ndarray) -> float:
        r = self.X @ w - self.y
        return float(0.5 * np.mean(r * r) + 0.5 * self.lam * w @ w)

    def grad(self, w: np.ndarray) -> np.ndarray:
        return self.X.T @ (self.X @ w - self.y) / self.n + self.lam * w

    def solve(self) -> np.ndarray:
        """The exact minimiser: (X'X/n + lambda I) w = X'y/n."""
        if not self.sparse:
            H = self.X.T @ self.X / self.n + self.lam * np.eye(self.d)
            return np.linalg.solve(H, self.X.T @ self.y / self.n)
        X, n, lam = self.X, self.n, self.lam
        if self.d <= min(self.n, DENSE_SOLVE_MAX):  # d x d Gram
            H = (X.T @ X).toarray() / n + lam * np.eye(self.d)
            return np.linalg.solve(H, X.T @ self.y / n)
        if self.n <= DENSE_SOLVE_MAX:  # n x n Gram: w = X'(XX' + n lambda I)^{-1} y (push-through identity)
            G = (X @ X.T).toarray() + n * lam * np.eye(self.n)
            return np.asarray(X.T @ np.linalg.solve(G, self.y)).ravel()
        from scipy.sparse.linalg import LinearOperator, cg

        op = LinearOperator((self.d, self.d), matvec=lambda v: X.T @ (X @ v) / n + lam * v, dtype=np.float64)
        w, info = cg(op, X.T @ self.y / n, rtol=1e-12, atol=0.0, maxiter=10 * self.d)
        if info != 0:
            raise RuntimeError(f"ridge CG did not converge (info={info})")
        return w

    # --- dual -----------------------------------------------------------------------------------
    @staticmethod
    def dual_terms(alpha: np.ndarray, y: np.ndarray) -> float:
        """sum_i -phi_i^*(-alpha_i) for the squared loss: sum_i (alpha_i y_i - alpha_i^2 / 2)."""
        return float(np.sum(alpha * y - 0.5 * alpha * alpha))

    def w_of(self, alpha: np.ndarray) -> np.ndarray:
        """The primal-dual map (3.3): w(alpha) = A alpha / (lambda n)."""
        return self.X.T @ alpha / (self.lam * self.n)

    def dual(self, alpha: np.ndarray) -> float:
        w = self.w_of(alpha)
        return self.dual_terms(alpha, self.y) / self.n - 0.5 * self.lam * float(w @ w)

    def dual_from(self, dual_terms_sum: float, w_alpha: np.ndarray) -> float:
        """D(alpha) from sum_i (alpha_i y_i - alpha_i^2/2) and w(alpha) (what workers can report)."""
        return dual_terms_sum / self.n - 0.5 * self.lam * float(w_alpha @ w_alpha)

    def gap(self, w: np.ndarray, alpha: np.ndarray) -> float:
        """P(w) - D(alpha): >= 0 for any pair; 0 only at (w*, alpha*)."""
        return self.primal(w) - self.dual(alpha)


class PCAObjective:
    """Problem (3.40): P(w) = 1/2 w'(mu I - C) w - b'w, components with a d-vector dual each."""

    kind = "pca"
    scalar_dual = False  # grad phi_i(w) is not a scalar times x_i: O(n d) dual storage

    def __init__(self, X: np.ndarray, b: np.ndarray, mu: float, lam: float):
        self.X, self.b = np.asarray(X, np.float64), np.asarray(b, np.float64)
        self.mu, self.lam = float(mu), float(lam)
        self.n, self.d = self.X.shape
        self.C = self.X.T @ self.X / self.n
        self._w_star = None

    def primal(self, w: np.ndarray) -> float:
        return float(0.5 * (self.mu * w @ w - w @ self.C @ w) - self.b @ w)

    def grad(self, w: np.ndarray) -> np.ndarray:
        return self.mu * w - self.C @ w - self.b

    def solve(self) -> np.ndarray:
        if self._w_star is None:
            self._w_star = np.linalg.solve(self.mu * np.eye(self.d) - self.C, self.b)
        return self._w_star

    def suboptimality(self, w: np.ndarray) -> float:
        return self.primal(w) - self.primal(self.solve())

    def phi_grads(self, w: np.ndarray, Xb: np.ndarray) -> np.ndarray:
        """grad phi_i(w) for the rows of ``Xb``: [B, d]."""
        return (self.mu - self.lam) * w[None, :] - Xb * (Xb @ w)[:, None] - self.b[None, :]


def pca_b(d: int, seed: int) -> np.ndarray:
    """The thesis' "random vector b": standard normal entries scaled to unit norm, from the data seed."""
    b = np.random.default_rng(int(seed) + 7919).standard_normal(d)
    return b / np.linalg.norm(b)


def pca_mu(cfg) -> float:
    """mu of the PCA objective (3.40): ``algo.pca_mu``, 100 (the thesis' value) when the algorithm has none."""
    return float(cfg.algo.get("pca_mu") or 100.0)


def check_pca_mu(cfg, problem) -> None:
    """Refuse a PCA run whose objective has no minimum: (3.40) is bounded below only when mu I - C
    is positive definite, mu > lambda_max(C). With mu <= lambda_max(C) an algorithm finds at best a
    stationary point and the logged suboptimality goes negative. Runs in the parent, before launch."""
    from hdist.types import ConfigError

    if kind_of(cfg, problem) != "pca":
        return
    X, _ = _dense(problem.data.train)
    C = X.T @ X / X.shape[0]
    lam_max = float(np.linalg.eigvalsh(C)[-1])
    mu = pca_mu(cfg)
    if not mu > lam_max:
        raise ConfigError(f"algo.pca_mu={mu:g}: not allowed; the PCA objective (3.40) has a minimum only for "
                          f"mu > lambda_max(C) = {lam_max:.6g} (C = X'X/n of the {X.shape[0]} training samples of "
                          f"dataset={cfg.dataset.name}); allowed: algo.pca_mu > {lam_max:.6g}")


def kind_of(cfg, problem) -> str:
    """Which objective ``algo.objective`` asks for (``auto`` resolved)."""
    kind = str(cfg.algo.get("objective", "auto") or "auto")
    if kind != "auto":
        return kind
    if cfg.dataset.name == "pca":
        return "pca"
    if problem.loss_name == "squared" and problem.model_cfg.get("name") == "linear" \
            and int(problem.model_cfg.get("num_classes") or 1) == 1 and not problem.model_cfg.get("bias"):
        return "ridge"
    return "model"


def for_problem(cfg, problem, split: str = "train"):
    """The run's closed-form objective on the whole ``split`` (None when ``kind_of`` is ``model``)."""
    kind = kind_of(cfg, problem)
    if kind == "model":
        return None
    data = problem.data.train if split == "train" else problem.data.test
    X, y = _matrix(data, keep_sparse=kind == "ridge")  # PCA's C = X'X/n is a dense d x d anyway
    if kind == "ridge":
        return Ridge(X, problem.target(y).to(torch.float64).numpy(), float(cfg.objective.l2))
    seed = int(cfg.dataset.get("data_seed") or 0)
    return PCAObjective(X, pca_b(X.shape[1], seed), pca_mu(cfg), float(cfg.objective.l2))
