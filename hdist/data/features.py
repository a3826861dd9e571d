"""``cifar10_features``: fixed CIFAR-10 feature vectors, as in Huo & Huang (2017).

Each sample is 384 floats (features of a CIFAR-10 image computed once, outside hdist) plus its
class label 0..9. Files: ``<root>/cifar10_features/{train,test}.<ext>``, the first present of:

- ``.npy``: one 2-D array ``[n, 385]``, the label in the last column;
- ``.npz``: arrays ``X`` ``[n, 384]`` and ``y`` ``[n]``;
- ``.csv`` (comma-separated) or ``.txt`` (whitespace-separated): ``n`` rows of 385 numbers, the
  label last; lines starting with ``#`` are comments.

These are user-made files with no published checksum: they are reported as unverified and are
read without pickle (``allow_pickle=False``). Config keys: ``n_train`` / ``n_test`` (first n;
defaults 20,000 / 4,000 as in the paper; null = all), ``n_features`` (expected width, default
384), ``root``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hdist.data import ArrayDataset, DataBundle, register
from hdist.data.mnist import fit_shape
from hdist.data.root import config_error, data_root, first_n, opt_count, resolve_any

NAME = "cifar10_features"
EXTENSIONS = ("npy", "npz", "csv", "txt")


def read_array_file(path: Path, dataset: str = NAME) -> tuple[np.ndarray, np.ndarray]:
    """``(X float32 [n, d], raw labels [n])`` from a .npy/.npz/.csv/.txt file (see module doc)."""
    path = Path(path)
    ext = path.suffix.lower()
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "X" not in z or "y" not in z:
                    raise config_error(dataset, f"{path} has arrays {sorted(z.files)}; expected X and y")
                return np.asarray(z["X"], dtype=np.float32), np.asarray(z["y"]).reshape(-1)
        if ext == ".npy":
            a = np.load(path, allow_pickle=False)
        else:
            a = np.loadtxt(path, delimiter="," if ext == ".csv" else None, dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as e:
        raise config_error(dataset, f"cannot read {path}: {e}") from None
    if a.ndim != 2 or a.shape[1] < 2:
        raise config_error(dataset, f"{path} holds an array of shape {a.shape}; expected [n, features+label]")
    return np.asarray(a[:, :-1], dtype=np.float32), a[:, -1]


def _split(split: str, n, key: str, d: int, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    path = resolve_any(NAME, [(f"{split}.{e}",) for e in EXTENSIONS], cfg)[0]
    X, y = read_array_file(path)
    if X.ndim != 2 or X.shape[1] != d:
        raise config_error(NAME, f"{path} has {X.shape[1:]} features per sample; expected n_features={d}")
    if X.shape[0] != y.shape[0]:
        raise config_error(NAME, f"{path} has {X.shape[0]} samples but {y.shape[0]} labels")
    yf = np.asarray(y, dtype=np.float64)
    bad = (yf != np.round(yf)) | (yf < 0) | (yf > 9)
    if bad.any():
        raise config_error(NAME, f"{path} has label {yf[bad][0]:g}; expected integers 0..9")
    k = first_n(X.shape[0], n, key, NAME)
    return torch.from_numpy(np.ascontiguousarray(X[:k])), torch.from_numpy(yf[:k].astype(np.int64))


@register(NAME)
def load_cifar10_features(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    d = opt_count(cfg, "n_features", NAME, 384)
    n_train = opt_count(cfg, "n_train", NAME, 20000)
    n_test = opt_count(cfg, "n_test", NAME, 4000)
    Xtr, ytr = _split("train", n_train, "n_train", d, cfg)
    Xte, yte = _split("test", n_test, "n_test", d, cfg)
    return DataBundle(
        NAME, ArrayDataset(fit_shape(Xtr, input_shape), ytr), ArrayDataset(fit_shape(Xte, input_shape), yte),
        10, "real", f"CIFAR-10 features (Huo & Huang 2017): {len(ytr)}+{len(yte)} samples x {d} features",
        {"root": str(data_root(cfg)), "n_features": d},
    )
