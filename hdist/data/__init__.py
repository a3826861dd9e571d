"""Datasets: real formats from a data root, and deterministic synthetic data of every shape.

Every dataset comes back as a :class:`DataBundle` of two index-addressable
:class:`ArrayDataset` splits. Loaders register with :func:`register` under their config name
(``conf/dataset/<name>.yaml``); :func:`load` dispatches on ``cfg.name``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hdist.types import ConfigError

if TYPE_CHECKING:  # torch is imported where used: `hdist data` reads the catalogue without it
    import torch


def is_sparse(X) -> bool:
    """True for a scipy sparse matrix (checked without importing scipy)."""
    return type(X).__module__.startswith("scipy.sparse")


def _np_index(idx):
    """An index usable on a scipy matrix: tensors become numpy arrays, ints and slices stay."""
    import torch

    if isinstance(idx, torch.Tensor):
        idx = idx.detach().cpu().numpy()
        return idx.item() if idx.ndim == 0 else idx
    return idx


class ArrayDataset:
    """Samples addressable by id: ``ds[idx]`` gives ``(X[idx], y[idx])`` for an index tensor.

    ``X`` is a float tensor ``[n, *sample_shape]`` (or a scipy CSR matrix for sparse data),
    ``y`` int64 class labels or float targets.

    Sparse ``X`` (LIBSVM data: rcv1 is 47,236 features at 0.16% density) stays sparse in the
    dataset: ``subset``/``shard`` return CSR rows, and only a batch is made dense: ``ds[idx]``
    (``idx`` a tensor, array, list, int or slice) returns a dense float32 tensor
    ``[len(idx), n_features]`` (``[n_features]`` for an int). ``X`` may also be any object with
    ``shape`` and ``__getitem__`` (the lazy image folder of :mod:`hdist.data.imagenet`).
    """

    def __init__(self, X, y: torch.Tensor, device: torch.device | None = None):
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        self.X, self.y = X, y
        #: where batches are delivered (None: where X is). X itself may live there (a training set that
        #: fits on the GPU, indexed there) or stay on the host (sparse or too large: each batch is copied).
        self.device = device

    def to(self, device: torch.device, keep: bool = True) -> ArrayDataset:
        """The same samples delivered on ``device``; ``keep``: X and y are moved there once (batches are
        then drawn by index on the device), else each batch is copied on its way out. Sparse X stays on
        the host either way (only its batches are made dense)."""
        import torch

        if keep and isinstance(self.X, torch.Tensor):
            return ArrayDataset(self.X.to(device), self.y.to(device), device)
        return ArrayDataset(self.X, self.y, device)

    def _deliver(self, x, y):
        if self.device is None:
            return x, y
        # non_blocking: a host batch copies while the device still computes the previous step
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, idx):
        if is_sparse(self.X):
            import torch

            rows = self.X[_np_index(idx)]
            dense = torch.from_numpy(rows.toarray()).to(torch.float32)
            if isinstance(_np_index(idx), int):
                dense = dense[0]
            return self._deliver(dense, self.y[idx])
        return self._deliver(self.X[idx], self.y[idx])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    @property
    def is_sparse(self) -> bool:
        return is_sparse(self.X)

    def subset(self, idx) -> ArrayDataset:
        if is_sparse(self.X):
            return ArrayDataset(self.X[_np_index(idx)], self.y[idx], self.device)
        return ArrayDataset(self.X[idx], self.y[idx], self.device)

    def shard(self, rank: int, world: int) -> ArrayDataset:
        """Deterministic contiguous shard ``rank`` of ``world`` (sizes differ by at most one)."""
        import torch

        n = len(self)
        lo, hi = rank * n // world, (rank + 1) * n // world
        return self.subset(torch.arange(lo, hi, device="cpu"))

    def dense_X(self) -> torch.Tensor:
        """All of ``X`` as a dense float tensor (a sparse matrix is densified: mind the memory)."""
        import torch

        return self[torch.arange(len(self), device="cpu")][0]


@dataclass
class DataBundle:
    name: str
    train: ArrayDataset
    test: ArrayDataset
    num_classes: int  # 0 for regression
    source: str = "synthetic"  # "real" or "synthetic"
    description: str = ""
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.sample_shape


Loader = Callable[..., DataBundle]
DATASETS: dict[str, Loader] = {}
_MODULES = ("synthetic", "mnist", "libsvm", "cifar", "imagenet", "features")


def register(name: str):
    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return deco


def _load_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"hdist.data.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"hdist.data.{mod}":
                raise


def dataset_names() -> list[str]:
    _load_all()
    return sorted(DATASETS)


def load(cfg: Any, *, input_shape: tuple[int, ...], num_classes: int, seed: int) -> DataBundle:
    """Load dataset ``cfg.name``; ``input_shape``/``num_classes`` are the model's, for synthetic data."""
    _load_all()
    name = cfg["name"]
    if name not in DATASETS:
        raise ConfigError(f"dataset={name}: unknown dataset; allowed: {', '.join(sorted(DATASETS))}")
    from hdist.data import root

    with root.recording() as paths:
        bundle = DATASETS[name](cfg, input_shape=tuple(input_shape), num_classes=int(num_classes), seed=int(seed))
    # The data's identity, recorded in meta.json: md5s of the files read, or the generator's settings.
    if paths:
        bundle.info["data_files"] = root.data_files(list(dict.fromkeys(paths)))
    else:
        from omegaconf import OmegaConf

        settings = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
        bundle.info["data_files"] = {"generator": json.dumps(settings, sort_keys=True, default=str)}
    return bundle


def clear_caches() -> None:
    """Forget parsed files and verified checksums (benchmarks time cold loads)."""
    from hdist.data import libsvm, root

    libsvm._CACHE.clear()
    root._MD5_CACHE.clear()
