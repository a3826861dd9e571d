"""CIFAR-10 and CIFAR-100 from the python pickles (Krizhevsky 2009), and CIFAR augmentation.

Files: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` and
``<root>/cifar-100-python/{train,test}``; when they are missing, the published tarball
(``<root>/cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``) is used or downloaded and
the batches extracted. Every file is checked against its published md5 BEFORE it is
unpickled, and unpickling is restricted to numpy arrays and plain containers (so even a
``verify: false`` file cannot run code).

Images: float32 ``[n, 3, 32, 32]`` in [0, 1] (reshaped to the model's ``input_shape`` when it
has the same 3,072 values); labels int64 (CIFAR-100: ``label_type: fine`` = 100 classes,
``coarse`` = 20 superclasses). Config keys: ``n_train``, ``n_test`` (first n; null = all 50,000 /
10,000), ``augment`` (whether training should use :func:`augment`; recorded in
``bundle.info``), ``root``, ``verify``, ``download``.

The data is NOT normalised: the training loop applies, per batch, :func:`augment` (random crop
with 4-pixel zero padding and horizontal flip, on [0, 1] images, so the padding is black as in
torchvision) to training batches when ``bundle.info["augment"]``, then :func:`normalize` to
every batch (``bundle.info["mean"]``/``["std"]``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from hdist.data import ArrayDataset, DataBundle, register
from hdist.data.mnist import fit_shape
from hdist.data.root import cfg_get, config_error, data_root, first_n, known_file, opt_count, resolve

# Per-channel mean and standard deviation of the CIFAR training images (in [0, 1]). Many code
# bases use std (0.2023, 0.1994, 0.2010) for CIFAR-10, which is a miscomputed value; these are
# the true statistics of the 50,000 training images.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
STATS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}


# ---------------------------------------------------------------------------------------------
# augmentation


def augment(x: torch.Tensor, generator: torch.Generator | None = None, *, padding: int = 4,
            flip: bool = True) -> torch.Tensor:
    """CIFAR training augmentation of a batch ``[B, C, H, W]``: random crop and horizontal flip.

    Each image is zero-padded by ``padding`` pixels on every side and an ``H x W`` window is
    cut at a uniformly random offset; then, with probability 1/2, it is mirrored left-right.
    The random numbers come from ``generator`` (offsets first, then flips), so a seeded
    generator gives the same batch every time. Returns a new tensor; ``x`` is not changed.
    """
    if x.dim() != 4:
        raise ValueError(f"augment expects a batch [B, C, H, W], got shape {tuple(x.shape)}")
    B, C, H, W = x.shape
    gdev = generator.device if generator is not None else torch.device("cpu")
    out = x
    if padding > 0:
        p = int(padding)
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        off = torch.randint(0, 2 * p + 1, (B, 2), generator=generator, device=gdev).to(x.device)
        rows = (off[:, 0:1] + torch.arange(H, device=x.device)).view(B, 1, H, 1)
        cols = (off[:, 1:2] + torch.arange(W, device=x.device)).view(B, 1, 1, W)
        b = torch.arange(B, device=x.device).view(B, 1, 1, 1)
        c = torch.arange(C, device=x.device).view(1, C, 1, 1)
        out = padded[b, c, rows, cols]
    if flip:
        mask = (torch.rand(B, generator=generator, device=gdev) < 0.5).to(x.device)
        out = torch.where(mask.view(B, 1, 1, 1), out.flip(-1), out)
    return out if out is not x else x.clone()


def normalize(x: torch.Tensor, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` for a batch ``[B, C, H, W]`` or an image ``[C, H, W]``.

    ``mean``/``std`` may also be a dataset name (``"cifar10"``, ``"cifar100"``).
    """
    if isinstance(mean, str):
        mean, std = STATS[mean]
    shape = (-1, 1, 1)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


# ---------------------------------------------------------------------------------------------
# safe unpickling


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR pickles contain: numpy arrays, lists, dicts, bytes."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def load_pickle(path: Path, dataset: str) -> dict:
    """Unpickle a CIFAR batch with the restricted unpickler; keys come back as ``str``."""
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise config_error(dataset, f"cannot unpickle {path}: {e}") from None
    if not isinstance(d, dict):
        raise config_error(dataset, f"{path} holds a {type(d).__name__}; expected a CIFAR batch dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _batch(dataset: str, filename: str, label_key: str, cfg) -> tuple[np.ndarray, np.ndarray]:
    path = resolve(dataset, filename, cfg)  # verified against the published md5 first
    if cfg_get(cfg, "verify", True) and known_file(dataset, filename).md5 is None:
        raise config_error(
            dataset,
            f"{path} has no published checksum; set dataset.verify=false to load a file you made yourself",
        )
    d = load_pickle(path, dataset)
    if "data" not in d or label_key not in d:
        raise config_error(dataset, f"{path} has keys {sorted(d)}; expected data and {label_key}")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise config_error(
            dataset, f"{path}: data {data.shape}, {labels.shape[0]} labels; expected [n, 3072] and n labels"
        )
    return data, labels


def _tensors(parts, n, key, dataset, k_classes) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    k = first_n(data.shape[0], n, key, dataset)
    bad = labels[(labels < 0) | (labels >= k_classes)]
    if bad.size:
        raise config_error(dataset, f"label {int(bad[0])} is out of range; expected 0..{k_classes - 1}")
    X = torch.from_numpy(data[:k].astype(np.float32) / np.float32(255.0)).reshape(k, 3, 32, 32)
    return X, torch.from_numpy(labels[:k])


def _load(dataset: str, train_files, test_files, label_key: str, k_classes: int, cfg, input_shape, desc):
    n_train = opt_count(cfg, "n_train", dataset)
    n_test = opt_count(cfg, "n_test", dataset)
    aug = cfg_get(cfg, "augment", True)
    if not isinstance(aug, bool):
        raise config_error(dataset, f"augment={aug} is not allowed; expected true or false")
    # read only the batches the subset needs (each CIFAR-10 batch holds 10,000 samples)
    tr, te = [], []
    for files, out, n in ((train_files, tr, n_train), (test_files, te, n_test)):
        for f in files:
            out.append(_batch(dataset, f, label_key, cfg))
            if n is not None and sum(len(p[1]) for p in out) >= n:
                break
    Xtr, ytr = _tensors(tr, n_train, "n_train", dataset, k_classes)
    Xte, yte = _tensors(te, n_test, "n_test", dataset, k_classes)
    mean, std = STATS[dataset]
    train = ArrayDataset(fit_shape(Xtr, input_shape), ytr)
    test = ArrayDataset(fit_shape(Xte, input_shape), yte)
    return DataBundle(
        dataset, train, test, k_classes, "real",
        f"{desc}, {len(ytr)}+{len(yte)} samples of shape (3, 32, 32), not normalised",
        {"root": str(data_root(cfg)), "augment": aug, "mean": mean, "std": std, "normalized": False},
    )


@register("cifar10")
def load_cifar10(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    train = [f"data_batch_{i}" for i in range(1, 6)]
    return _load("cifar10", train, ["test_batch"], "labels", 10, cfg, input_shape, "CIFAR-10")


@register("cifar100")
def load_cifar100(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    kind = cfg_get(cfg, "label_type", "fine")
    if kind not in ("fine", "coarse"):
        raise config_error("cifar100", f"label_type={kind} not allowed; expected fine (100) or coarse (20)")
    k = 100 if kind == "fine" else 20
    desc = f"CIFAR-100 ({kind})"
    return _load("cifar100", ["train"], ["test"], f"{kind}_labels", k, cfg, input_shape, desc)
