"""MNIST from the original idx files (LeCun, Cortes and Burges, 1998).

Files (``<root>/mnist/``, gzipped as published or gunzipped): ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; each is
checked against its published md5 before use (see :mod:`hdist.data.root`).

Images come back as float32 ``[n, 1, 28, 28]`` in [0, 1] (pixel / 255), or reshaped to the
model's ``input_shape`` when that has the same 784 values (e.g. ``[784]`` for an MLP); labels
are int64 in 0..9. Config keys: ``n_train``, ``n_test`` (take the FIRST n samples of each
split, deterministic; null = all 60,000 / 10,000), ``root``, ``verify``, ``download``.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from hdist.data import ArrayDataset, DataBundle, register
from hdist.data.root import config_error, data_root, first_n, opt_count, resolve_any

# idx type codes -> numpy big-endian dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def _read_bytes(path: Path, dataset: str) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        raise config_error(dataset, f"cannot read {path}: {e} (truncated or corrupt file?)") from None


def parse_idx(path: Path, expect_magic: int | None = None, dataset: str = "mnist") -> np.ndarray:
    """Parse an idx file (``.gz`` or plain) into a numpy array, validating header and size.

    The header is ``0x00 0x00 <type> <ndim>`` then ``ndim`` big-endian uint32 sizes; the body
    must hold exactly ``prod(sizes)`` items. Any deviation is a one-line ConfigError.
    """
    path = Path(path)
    raw = _read_bytes(path, dataset)
    if len(raw) < 4:
        raise config_error(dataset, f"{path} is truncated: {len(raw)} bytes, an idx header needs at least 4")
    magic = int.from_bytes(raw[:4], "big")
    zero, code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise config_error(dataset, f"{path} is not an idx file: magic {magic}; expected {expect_magic}")
    if expect_magic is not None and magic != expect_magic:
        raise config_error(dataset, f"{path} has idx magic number {magic}; expected {expect_magic}")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise config_error(dataset, f"{path} is truncated: {len(raw)} bytes, its idx header needs {head}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    need = math.prod(dims) * dtype.itemsize
    have = len(raw) - head
    if have != need:
        what = "truncated" if have < need else "too long"
        raise config_error(
            dataset, f"{path} is {what}: {have} bytes of data, its header {list(dims)} needs {need}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(dims)


def fit_shape(X: torch.Tensor, input_shape: tuple[int, ...] | None) -> torch.Tensor:
    """Reshape samples to the model's ``input_shape`` when the sizes agree, else leave them."""
    if input_shape and tuple(input_shape) != tuple(X.shape[1:]) and math.prod(input_shape) == math.prod(
        X.shape[1:]
    ):
        return X.reshape(X.shape[0], *input_shape)
    return X


def _split(prefix: str, n: int | None, key: str, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    files = {}
    for kind, d in (("images", 3), ("labels", 1)):
        base = f"{prefix}-{kind}-idx{d}-ubyte"
        files[kind] = resolve_any("mnist", [(base + ".gz",), (base,)], cfg)[0]
    images = parse_idx(files["images"], IMAGES_MAGIC)
    labels = parse_idx(files["labels"], LABELS_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise config_error("mnist", f"{files['images']} has images of size {images.shape[1:]}; need 28x28")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise config_error(
            "mnist",
            f"{files['labels']} has {labels.shape[0]} labels, {files['images']} has {images.shape[0]} images",
        )
    if labels.size and labels.max() > 9:
        raise config_error("mnist", f"{files['labels']} has label {int(labels.max())}; expected 0..9")
    k = first_n(images.shape[0], n, key, "mnist")
    X = torch.from_numpy(images[:k].astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    y = torch.from_numpy(labels[:k].astype(np.int64))
    return X, y


@register("mnist")
def load_mnist(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    n_train = opt_count(cfg, "n_train", "mnist")
    n_test = opt_count(cfg, "n_test", "mnist")
    Xtr, ytr = _split("train", n_train, "n_train", cfg)
    Xte, yte = _split("t10k", n_test, "n_test", cfg)
    Xtr, Xte = fit_shape(Xtr, input_shape), fit_shape(Xte, input_shape)
    return DataBundle(
        "mnist", ArrayDataset(Xtr, ytr), ArrayDataset(Xte, yte), 10, "real",
        f"MNIST digits, {len(ytr)}+{len(yte)} samples of shape {tuple(Xtr.shape[1:])}",
        {"root": str(data_root(cfg)), "classes": [str(i) for i in range(10)]},
    )
