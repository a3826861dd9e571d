"""LIBSVM / svmlight text data: ``ijcnn1``, ``covtype`` and ``rcv1`` (binary classification).

Format: one sample per line, ``<label> [qid:<q>] <index>:<value> ...`` with 1-based feature
indices, ``#`` comments allowed; files plain, ``.bz2`` or ``.gz`` (chosen by suffix). Files
live in ``<root>/libsvm/`` and are checked against LIBSVM's md5s (see :mod:`hdist.data.root`).

Sparse data stays sparse: ``X`` is a ``scipy.sparse.csr_matrix`` float32 (rcv1 has 47,236
features at 0.16% density) and :class:`~hdist.data.ArrayDataset` densifies one batch at a
time (``ds[idx]`` -> dense float32 tensor). ``dense: true`` gives a dense tensor instead.
The number of features is fixed per dataset so that train and test agree.

Labels: ``task: classification`` (default) maps the dataset's two labels to 0/1 ({-1,+1} for
ijcnn1 and rcv1, {1,2} for covtype); ``task: regression`` keeps the raw label as a float32
target (num_classes 0).

Config keys (all loaders): ``n_train``, ``n_test`` (first n of each split; null = all),
``dense``, ``task``, ``root``, ``verify``, ``download``. Per loader:

- ``ijcnn1`` (22 features): ``train_split: trainval`` (49,990 = ijcnn1.tr + ijcnn1.val, read
  from ijcnn1.tr.bz2 + ijcnn1.val.bz2 or the combined ijcnn1.bz2) or ``tr`` (35,000, ijcnn1.tr.bz2
  only); test = ijcnn1.t.bz2 (91,701).
- ``covtype`` (54 features, 581,012 samples): ``scaled: true`` (covtype.libsvm.binary.scale,
  features in [0,1]) or false (covtype.libsvm.binary); no test file: ``test_fraction`` of the
  samples (default 0.1), drawn with ``split_seed``, is held out; both splits keep file order.
- ``rcv1`` (47,236 features): rcv1_train.binary (20,242 samples) with ``test_fraction`` held out
  as for covtype, or ``use_test_file: true`` for rcv1_test.binary (677,399 samples) as the test set.
  ``train_file: test`` swaps the files' roles (the thesis trains on rcv1_test.binary's 677,399):
  train = rcv1_test.binary, with ``test_fraction`` of it held out, or, with ``use_test_file: true``,
  all of it and rcv1_train.binary as the test set. Default ``train_file: train``.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from hdist.data import ArrayDataset, DataBundle, register
from hdist.data.root import cfg_get, config_error, data_root, first_n, opt_count, opt_fraction, resolve_any

N_FEATURES = {"ijcnn1": 22, "covtype": 54, "rcv1": 47236}
CLASS_LABELS = {"ijcnn1": (-1.0, 1.0), "covtype": (1.0, 2.0), "rcv1": (-1.0, 1.0)}


def read_text(path: Path, dataset: str = "libsvm") -> bytes:
    """The bytes of a plain, ``.bz2`` or ``.gz`` file (a corrupt archive is a ConfigError)."""
    path = Path(path)
    opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(path.suffix)
    try:
        if opener is None:
            return path.read_bytes()
        with opener(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, ValueError, zlib.error, lzma.LZMAError) as e:
        raise config_error(dataset, f"cannot read {path}: {e} (truncated or corrupt file?)") from None


def _bad_line(lines: list[bytes], source: str, dataset: str):
    """Find the first malformed line (slow path, only after the fast parse failed)."""
    for lineno, line in enumerate(lines, 1):
        body = line.split(b"#", 1)[0].split()
        if not body:
            continue
        try:
            float(body[0])
            for tok in body[1:]:
                if tok.startswith(b"qid:"):
                    continue
                i, v = tok.split(b":")
                int(i), float(v)
        except ValueError:
            return config_error(dataset, f"{source} line {lineno} is not svmlight text: {line[:80]!r}")
    return config_error(dataset, f"{source} is not svmlight text")


def _non_finite_line(lines: list[bytes], source: str, dataset: str):
    """The first line holding a nan or inf label or value (slow path, only after the fast check failed)."""
    for lineno, line in enumerate(lines, 1):
        body = line.split(b"#", 1)[0].split()
        tokens = body[:1] + [tok.split(b":", 1)[-1] for tok in body[1:] if not tok.startswith(b"qid:")]
        if any(not np.isfinite(float(tok)) for tok in tokens):
            return config_error(dataset, f"{source} line {lineno} has a nan or inf value: {line[:80]!r}; "
                                         "expected finite numbers")
    return config_error(dataset, f"{source} has a nan or inf value; expected finite numbers")


def parse_svmlight(
    data: bytes, n_features: int | None = None, *, source: str = "<text>", dataset: str = "libsvm"
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Parse svmlight text into ``(X, labels)``: X CSR float32 ``[n, n_features]``, labels float64.

    ``n_features`` None = the largest index seen. Indices must be integers >= 1 (and at most
    ``n_features``); duplicates within a line are summed.
    """
    lines = data.splitlines()
    labels, rows, counts = [], [], []
    for line in lines:
        if b"#" in line:
            line = line.split(b"#", 1)[0]
        parts = line.split(None, 1)
        if not parts:
            continue
        rest = parts[1] if len(parts) > 1 else b""
        if rest.startswith(b"qid:"):
            q = rest.split(None, 1)
            rest = q[1] if len(q) > 1 else b""
        labels.append(parts[0])
        rows.append(rest)
        counts.append(rest.count(b":"))
    try:
        y = np.array(labels, dtype=np.bytes_).astype(np.float64) if labels else np.zeros(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            joined = b" ".join(rows).replace(b":", b" ")
            vals = np.fromstring(joined, dtype=np.float64, sep=" ") if joined.strip() else np.zeros(0)
    except (ValueError, DeprecationWarning):
        raise _bad_line(lines, source, dataset) from None
    nnz = int(sum(counts))
    if vals.size != 2 * nnz:
        raise _bad_line(lines, source, dataset)
    if not labels:
        raise config_error(dataset, f"{source} holds no samples; expected svmlight lines <label> <index>:<value> ...")
    if not (np.isfinite(vals).all() and np.isfinite(y).all()):
        raise _non_finite_line(lines, source, dataset)
    idx, v = vals[0::2], vals[1::2]
    if nnz and (idx.min() < 1 or not np.array_equal(idx, np.floor(idx))):
        bad = idx[(idx < 1) | (idx != np.floor(idx))][0]
        raise config_error(dataset, f"{source} has feature index {bad:g}; expected integers from 1 (1-based)")
    d = int(idx.max()) if nnz else 0
    if n_features is not None:
        if d > n_features:
            raise config_error(dataset, f"{source} has feature index {d}; expected at most {n_features}")
        d = n_features
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    X = sp.csr_matrix((v.astype(np.float32), (idx - 1).astype(np.int32), indptr), shape=(len(counts), d))
    X.sum_duplicates()
    return X, y


_CACHE: dict[tuple, tuple[sp.csr_matrix, np.ndarray]] = {}


def load_svmlight(path: Path, n_features: int | None = None, dataset: str = "libsvm"):
    """Read and parse a svmlight file; parsed results are kept per (path, mtime, size) in memory."""
    path = Path(path)
    st = os.stat(path)
    key = (str(path.absolute()), st.st_mtime_ns, st.st_size, n_features)
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = parse_svmlight(read_text(path, dataset), n_features, source=str(path), dataset=dataset)
    return _CACHE[key]


def _options(*bases: str) -> list[tuple[str, ...]]:
    """Each file set as .bz2 (the published form), plain, then .gz."""
    return [tuple(b + ext for b in bs) for bs in bases for ext in (".bz2", "", ".gz")]


def _read(dataset: str, options: list[tuple[str, ...]], cfg) -> tuple[sp.csr_matrix, np.ndarray, list[Path]]:
    paths = resolve_any(dataset, options, cfg)
    parts = [load_svmlight(p, N_FEATURES[dataset], dataset) for p in paths]
    if len(parts) == 1:
        return parts[0][0], parts[0][1], paths
    X = sp.vstack([p[0] for p in parts], format="csr")
    return X, np.concatenate([p[1] for p in parts]), paths


def _holdout(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split: ``round(frac*n)`` indices drawn with ``seed`` are the test set."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    perm = torch.randperm(n, generator=g).numpy()
    k = max(1, int(round(frac * n)))
    return np.sort(perm[k:]), np.sort(perm[:k])


def _targets(dataset: str, y: np.ndarray, task: str, source: str) -> torch.Tensor:
    if task == "regression":
        return torch.from_numpy(y.astype(np.float32))
    classes = np.array(CLASS_LABELS[dataset])
    pos = np.searchsorted(classes, y).clip(0, len(classes) - 1)
    bad = classes[pos] != y
    if bad.any():
        raise config_error(
            dataset,
            f"{source} has label {y[bad][0]:g}; expected one of {', '.join(f'{c:g}' for c in classes)} "
            "(or set dataset.task=regression)",
        )
    return torch.from_numpy(pos.astype(np.int64))


def _check(dataset: str, cfg) -> tuple[str, bool, int | None, int | None]:
    """The common keys, checked before any file is read: (task, dense, n_train, n_test)."""
    task = cfg_get(cfg, "task", "classification")
    if task not in ("classification", "regression"):
        raise config_error(dataset, f"task={task} is not allowed; expected classification or regression")
    dense = cfg_get(cfg, "dense", False)
    if not isinstance(dense, bool):
        raise config_error(dataset, f"dense={dense} is not allowed; expected true or false")
    return task, dense, opt_count(cfg, "n_train", dataset), opt_count(cfg, "n_test", dataset)


def _bundle(dataset: str, parts, cfg, input_shape, desc: str) -> DataBundle:
    """Subsets, labels and dense/sparse for ``parts = [(X, y, source) for train, test]``."""
    task, dense, n_train, n_test = _check(dataset, cfg)
    splits = []
    for (X, y, source), key, n in zip(parts, ("n_train", "n_test"), (n_train, n_test), strict=True):
        k = first_n(X.shape[0], n, key, dataset)
        if k < X.shape[0]:
            X, y = X[:k], y[:k]
        t = _targets(dataset, y, task, source)
        if dense:
            Xd = torch.from_numpy(X.toarray()).to(torch.float32)
            if input_shape and int(np.prod(input_shape)) == Xd.shape[1] and len(input_shape) > 1:
                Xd = Xd.reshape(Xd.shape[0], *input_shape)
            X = Xd
        splits.append(ArrayDataset(X, t))
    train, test = splits
    nc = 0 if task == "regression" else len(CLASS_LABELS[dataset])
    nnz = train.X.nnz if not dense else int((train.X != 0).sum())
    density = nnz / max(1, len(train) * N_FEATURES[dataset])
    return DataBundle(
        dataset, train, test, nc, "real",
        f"{desc}: {len(train)}+{len(test)} samples, {N_FEATURES[dataset]} features "
        f"({density:.2%} non-zero, {'dense' if dense else 'sparse CSR'}), {task}",
        {"root": str(data_root(cfg)), "files": [str(p[2]) for p in parts], "sparse": not dense,
         "n_features": N_FEATURES[dataset], "density": density},
    )


def _names(paths: list[Path]) -> str:
    return "+".join(str(p) for p in paths)


@register("ijcnn1")
def load_ijcnn1(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    _check("ijcnn1", cfg)
    split = cfg_get(cfg, "train_split", "trainval")
    if split == "trainval":
        opts = _options(("ijcnn1.tr", "ijcnn1.val"), ("ijcnn1",))
    elif split == "tr":
        opts = _options(("ijcnn1.tr",))
    else:
        raise config_error(
            "ijcnn1", f"train_split={split} is not allowed; expected trainval (49,990 samples) or tr (35,000)"
        )
    Xtr, ytr, ptr = _read("ijcnn1", opts, cfg)
    Xte, yte, pte = _read("ijcnn1", _options(("ijcnn1.t",)), cfg)
    return _bundle("ijcnn1", [(Xtr, ytr, _names(ptr)), (Xte, yte, _names(pte))], cfg, input_shape,
                   f"ijcnn1 (IJCNN 2001, LIBSVM), train={split}")


def _load_holdout(dataset: str, base: str, cfg, input_shape, desc: str) -> DataBundle:
    _check(dataset, cfg)
    frac = opt_fraction(cfg, "test_fraction", dataset, 0.1)
    seed = cfg_get(cfg, "split_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise config_error(dataset, f"split_seed={seed} is not allowed; expected an integer")
    X, y, paths = _read(dataset, _options((base,)), cfg)
    tr, te = _holdout(X.shape[0], frac, seed)
    src = _names(paths)
    return _bundle(dataset, [(X[tr], y[tr], src), (X[te], y[te], src)], cfg, input_shape,
                   f"{desc}, {frac:g} held out (split_seed={seed})")


@register("covtype")
def load_covtype(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    scaled = cfg_get(cfg, "scaled", True)
    base = "covtype.libsvm.binary.scale" if scaled else "covtype.libsvm.binary"
    desc = f"covtype.binary (LIBSVM{', scaled' if scaled else ''})"
    return _load_holdout("covtype", base, cfg, input_shape, desc)


RCV1_FILES = {"train": "rcv1_train.binary", "test": "rcv1_test.binary"}


@register("rcv1")
def load_rcv1(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    _check("rcv1", cfg)
    which = cfg_get(cfg, "train_file", "train")
    if which not in RCV1_FILES:
        raise config_error("rcv1", f"train_file={which} is not allowed; expected train (rcv1_train.binary, 20,242 "
                                   "samples) or test (rcv1_test.binary, 677,399 samples, as the thesis trains)")
    other = "test" if which == "train" else "train"
    train_base, test_base = RCV1_FILES[which], RCV1_FILES[other]
    desc = "rcv1.binary (LIBSVM)" if which == "train" else "rcv1.binary (LIBSVM, train = rcv1_test.binary)"
    if not cfg_get(cfg, "use_test_file", False):
        return _load_holdout("rcv1", train_base, cfg, input_shape, desc)
    Xtr, ytr, ptr = _read("rcv1", _options((train_base,)), cfg)
    Xte, yte, pte = _read("rcv1", _options((test_base,)), cfg)
    return _bundle("rcv1", [(Xtr, ytr, _names(ptr)), (Xte, yte, _names(pte))], cfg, input_shape,
                   f"{desc}, test = {test_base}")
