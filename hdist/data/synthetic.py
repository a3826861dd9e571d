"""Deterministic synthetic data, shaped for whichever model is chosen.

The default dataset: every model runs on a fresh machine with no files. Classification data
comes from a fixed random "teacher" (a random linear map of Gaussian inputs plus label noise),
so it is learnable but not trivially separable; the same (seed, shape, n) always gives the
same tensors, on every machine.
"""

from __future__ import annotations

import math

import torch

from hdist.data import ArrayDataset, DataBundle, register
from hdist.types import ConfigError


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def classification(n: int, shape: tuple[int, ...], num_classes: int, seed: int, noise: float = 0.1):
    """Gaussian inputs, labels = argmax of a random linear teacher, ``noise`` of labels flipped.

    Images (shape C x H x W) are class templates plus noise instead: a linear teacher over raw
    pixels is all but invisible to a convolutional net with pooling, while smooth per-class
    patterns (as real images have) are learnable by every model in the zoo.
    """
    if len(shape) == 3:
        return images(n, shape, num_classes, seed, noise)
    g = _generator(seed)
    d = math.prod(shape)
    X = torch.randn(n, d, generator=g)
    W = torch.randn(d, num_classes, generator=g) / math.sqrt(d)
    y = (X @ W).argmax(1)
    flip = torch.rand(n, generator=g) < noise
    y[flip] = torch.randint(0, num_classes, (int(flip.sum()),), generator=g)
    return X.reshape(n, *shape).contiguous(), y


def images(n: int, shape: tuple[int, ...], num_classes: int, seed: int, noise: float = 0.1,
           signal: float = 0.5):
    """Images: x = signal * T[y] + N(0, 1), T[y] a smooth random template of class y (4x4 per channel,
    upsampled bilinearly and scaled to unit std); ``noise`` of the labels flipped afterwards."""
    import torch.nn.functional as F

    c, h, w = shape
    g = _generator(seed)
    low = torch.randn(num_classes, c, 4, 4, generator=g)
    templates = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    templates = templates / templates.flatten(1).std(1).view(-1, 1, 1, 1)
    y = torch.randint(0, num_classes, (n,), generator=g)
    X = signal * templates[y] + torch.randn(n, c, h, w, generator=g)
    flip = torch.rand(n, generator=g) < noise
    y[flip] = torch.randint(0, num_classes, (int(flip.sum()),), generator=g)
    return X.contiguous(), y


def regression(n: int, shape: tuple[int, ...], seed: int, noise: float = 0.1):
    """Gaussian inputs, y = x'w* + noise, w* a fixed random unit vector."""
    g = _generator(seed)
    d = math.prod(shape)
    X = torch.randn(n, d, generator=g) / math.sqrt(d)
    w = torch.randn(d, generator=g)
    w /= w.norm()
    y = X @ w + noise * torch.randn(n, generator=g) / math.sqrt(d)
    return X.reshape(n, *shape).contiguous(), y


@register("synthetic")
def load_synthetic(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    shape = tuple(cfg.get("shape") or input_shape)
    k = int(cfg.get("num_classes") or num_classes)
    # null sizes (paper scale) mean the full-size default: 50,000 / 10,000, CIFAR's split sizes.
    n_train, n_test = int(cfg.get("n_train") or 50000), int(cfg.get("n_test") or 10000)
    # The data seed is the dataset's own (not the run's): changing the run seed changes the
    # initialisation and sample order, not the problem.
    dseed = int(cfg.get("data_seed", 1234))
    task = cfg.get("task", "classification")
    noise = float(cfg.get("label_noise", 0.1))
    if task == "regression":
        X, y = regression(n_train + n_test, shape, dseed, noise)
        k = 0
    else:
        X, y = classification(n_train + n_test, shape, k, dseed, noise)
    train = ArrayDataset(X[:n_train], y[:n_train])
    test = ArrayDataset(X[n_train:], y[n_train:])
    return DataBundle("synthetic", train, test, k, "synthetic",
                      f"synthetic {task}, {n_train}+{n_test} samples of shape {shape}")


def _int_key(cfg, key: str, default: int, dataset: str, minimum: int = 1) -> int:
    v = cfg.get(key, default) if cfg is not None else default
    v = default if v is None else v
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"dataset={dataset}: {key}={v} is not allowed; expected an integer >= {minimum}")
    return int(v)


def _float_key(cfg, key: str, default: float, dataset: str, lo: float = 0.0, hi: float = math.inf) -> float:
    v = cfg.get(key, default) if cfg is not None else default
    v = default if v is None else v
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if isinstance(v, bool) or not lo <= f <= hi:
        raise ConfigError(f"dataset={dataset}: {key}={v} is not allowed; expected a number in [{lo}, {hi}]")
    return f


# ---------------------------------------------------------------------------------------------
# lian15_synthetic: a dense non-convex classification problem


def gaussian_mixture(n: int, shape: tuple[int, ...], num_classes: int, seed: int, modes_per_class: int = 2,
                     separation: float = 4.0, cluster_std: float = 1.0):
    """Multiclass Gaussian-mixture data whose classes are not linearly separable.

    ``num_classes * modes_per_class`` cluster centres are drawn at random (pairwise distances
    about ``separation``); centre ``j`` belongs to class ``j % num_classes``. A sample picks a
    centre uniformly and adds isotropic noise of standard deviation ``cluster_std`` per
    coordinate. With two or more modes per class the Bayes classifier is non-linear, so an
    MLP trained on it is a genuinely non-convex problem.
    """
    g = _generator(seed)
    d = math.prod(shape)
    m = num_classes * modes_per_class
    centres = torch.randn(m, d, generator=g) * (separation / math.sqrt(2 * d))
    mode = torch.randint(0, m, (n,), generator=g)
    X = centres[mode] + cluster_std * torch.randn(n, d, generator=g)
    return X.reshape(n, *shape).contiguous(), mode % num_classes


@register("lian15_synthetic")
def load_lian15_synthetic(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    """Stand-in for the non-convex problem of Lian et al. (2015): an MLP on a Gaussian mixture.

    The data is :func:`gaussian_mixture` (our choice, not data from the paper): dense inputs of
    the model's shape (or ``dim``), ``num_classes`` classes of ``modes_per_class`` clusters each.
    """
    name = "lian15_synthetic"
    dim = cfg.get("dim")
    shape = (int(dim),) if dim else tuple(input_shape)
    k = _int_key(cfg, "num_classes", num_classes, name, 2)
    n_train = _int_key(cfg, "n_train", 10000, name)
    n_test = _int_key(cfg, "n_test", 2000, name)
    modes = _int_key(cfg, "modes_per_class", 2, name)
    sep = _float_key(cfg, "separation", 4.0, name)
    std = _float_key(cfg, "cluster_std", 1.0, name)
    dseed = _int_key(cfg, "data_seed", 1234, name, 0)
    X, y = gaussian_mixture(n_train + n_test, shape, k, dseed, modes, sep, std)
    return DataBundle(
        name, ArrayDataset(X[:n_train], y[:n_train]), ArrayDataset(X[n_train:], y[n_train:]), k, "synthetic",
        f"Gaussian mixture, {k} classes x {modes} modes, {n_train}+{n_test} samples of shape {shape}",
        {"separation": sep, "cluster_std": std},
    )


# ---------------------------------------------------------------------------------------------
# pca: streaming PCA data (unit-norm, centred rows)


def pca_data(n: int, d: int, seed: int, rank: int = 10, eigengap: float = 0.1, noise: float = 0.1):
    """Samples of a spiked covariance: ``x = U diag(sqrt(lam)) z + noise * e / sqrt(d)``.

    ``U`` is a random ``d x rank`` orthonormal basis, ``z`` and ``e`` standard normal, and the
    signal eigenvalues are ``lam_1 = 1``, ``lam_i = (1 - eigengap) * 0.9**(i - 2)`` for i >= 2,
    so ``eigengap`` is the relative gap between the two leading eigenvalues. Returns raw
    ``[n, d]`` samples; :func:`load_pca` centres and normalises them.
    """
    g = _generator(seed)
    rank = min(rank, d)
    U, _ = torch.linalg.qr(torch.randn(d, rank, generator=g, dtype=torch.float64))
    lam = [1.0] + [(1 - eigengap) * 0.9 ** (i - 2) for i in range(2, rank + 1)]
    lam = torch.tensor(lam, dtype=torch.float64)
    Z = torch.randn(n, rank, generator=g, dtype=torch.float64) * lam.sqrt()
    E = torch.randn(n, d, generator=g, dtype=torch.float64) * (noise / math.sqrt(d))
    return Z @ U.T + E


@register("pca")
def load_pca(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    """PCA problem (thesis ch. 3): ``n x d`` samples, centred then scaled to unit norm.

    Columns are centred with the training mean, then every row is divided by its norm, so
    ``||x|| = 1`` for every sample (bounded stochastic gradients for Oja-type methods). ``y`` is
    all zeros (unsupervised; num_classes 0). ``info`` holds the leading eigenvalues and the top
    eigenvector ``v1`` of the training second-moment matrix ``X'X / n``, for sin-theta errors.
    """
    name = "pca"
    n_train = _int_key(cfg, "n_train", 10000, name)
    n_test = _int_key(cfg, "n_test", 1000, name)
    d = cfg.get("d") or math.prod(input_shape)
    d = _int_key({"d": d}, "d", 100, name)
    rank = _int_key(cfg, "rank", 10, name)
    gap = _float_key(cfg, "eigengap", 0.1, name, 0.0, 1.0)
    noise = _float_key(cfg, "noise", 0.1, name)
    dseed = _int_key(cfg, "data_seed", 1234, name, 0)
    X = pca_data(n_train + n_test, d, dseed, rank, gap, noise)
    X = X - X[:n_train].mean(0)
    X = X / X.norm(dim=1, keepdim=True).clamp_min(1e-12)
    X = X.to(torch.float32)
    info = {"rank": rank, "eigengap": gap, "noise": noise}
    if d <= 4096:
        Xtr = X[:n_train].double()
        evals, evecs = torch.linalg.eigh(Xtr.T @ Xtr / n_train)
        info["eigvals"] = evals.flip(0)[: min(d, 10)].tolist()
        info["v1"] = evecs[:, -1].float()
    y = torch.zeros(n_train + n_test)
    return DataBundle(
        name, ArrayDataset(X[:n_train], y[:n_train]), ArrayDataset(X[n_train:], y[n_train:]), 0, "synthetic",
        f"PCA: {n_train}+{n_test} unit-norm centred samples in d={d} (rank {rank} signal, eigengap {gap})",
        info,
    )


# ---------------------------------------------------------------------------------------------
# sparse_synthetic: svmlight-like sparse data


def sparse_classification(n: int, d: int, density: float, seed: int, noise: float = 0.1,
                          task: str = "classification"):
    """A CSR float32 ``[n, d]`` with about ``density * n * d`` positive entries and its targets.

    Entries are uniform in (0, 1] at uniformly random positions (duplicates summed), and every
    non-empty row is scaled to unit L2 norm, like the tf-idf rows of rcv1. Targets come from a
    fixed random linear teacher ``w``: ``y = x'w + noise * e``; for classification ``y > 0``
    gives the labels {0, 1}.
    """
    import numpy as np
    import scipy.sparse as sp

    g = _generator(seed)
    nnz = max(1, int(round(density * n * d)))
    rows = torch.randint(0, n, (nnz,), generator=g).numpy()
    cols = torch.randint(0, d, (nnz,), generator=g).numpy()
    vals = (1.0 - torch.rand(nnz, generator=g, dtype=torch.float64)).numpy()
    X = sp.coo_matrix((vals, (rows, cols)), shape=(n, d)).tocsr()
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel())
    X = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ X
    X = sp.csr_matrix(X, dtype=np.float32)
    w = torch.randn(d, generator=g, dtype=torch.float64).numpy()
    margin = X.astype(np.float64) @ w
    margin = margin + noise * torch.randn(n, generator=g, dtype=torch.float64).numpy() * margin.std()
    if task == "regression":
        return X, torch.from_numpy(margin.astype(np.float32))
    return X, torch.from_numpy((margin > 0).astype(np.int64))


@register("sparse_synthetic")
def load_sparse_synthetic(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    """Sparse svmlight-like data (CSR, stays sparse; see :class:`~hdist.data.ArrayDataset`).

    Keys: ``n_train`` (10,000), ``n_test`` (2,000), ``n_features`` (null = the model's input
    size), ``density`` (fraction of non-zeros, 0.01), ``task`` (classification | regression),
    ``label_noise`` (0.1), ``data_seed``.
    """
    name = "sparse_synthetic"
    n_train = _int_key(cfg, "n_train", 10000, name)
    n_test = _int_key(cfg, "n_test", 2000, name)
    d = _int_key(cfg, "n_features", math.prod(input_shape), name)
    density = _float_key(cfg, "density", 0.01, name, 0.0, 1.0)
    task = cfg.get("task", "classification") or "classification"
    if task not in ("classification", "regression"):
        raise ConfigError(f"dataset={name}: task={task} not allowed; expected classification or regression")
    noise = _float_key(cfg, "label_noise", 0.1, name)
    dseed = _int_key(cfg, "data_seed", 1234, name, 0)
    X, y = sparse_classification(n_train + n_test, d, density, dseed, noise, task)
    k = 0 if task == "regression" else 2
    return DataBundle(
        name, ArrayDataset(X[:n_train], y[:n_train]), ArrayDataset(X[n_train:], y[n_train:]), k, "synthetic",
        f"sparse synthetic {task}, {n_train}+{n_test} samples x {d} features at density {density:g} (CSR)",
        {"density": density, "n_features": d, "sparse": True},
    )
