"""ImageNet-style image folders, loaded lazily with Pillow.

Layout: ``<root>/imagenet/{train,val}/<class>/*.{jpg,jpeg,png}`` (extensions in any case), the
layout of ``torchvision.datasets.ImageFolder``. Classes are the sorted folder names of
``train``; ``val`` must use the same names (a subset is fine). The folder is not checksummed
(there is no published md5 for such a tree); the catalogue reports it as unverified.

Images are decoded when indexed, never all at once: each is converted to RGB, its shorter side
resized to ``image_size`` (bilinear) and centre-cropped to ``image_size x image_size``, giving
float32 ``[3, S, S]`` in [0, 1] (not normalised). The datasets are
:class:`ImageFolderDataset`: ``ds[idx_tensor] -> (X [k, 3, S, S], y [k])``, ``len``,
``shard`` and ``subset`` work as for :class:`~hdist.data.ArrayDataset` and stay lazy.

Because the files are grouped by class, the samples are put in a fixed random order
(``order_seed``; null keeps class-sorted order) so that contiguous shards and first-n subsets
mix the classes. Config keys: ``image_size`` (pixels; null = the model's H for a 3xHxW model,
else 64), ``n_train``, ``n_test`` (first n of that order; null = all), ``order_seed``, ``cache``
(keep decoded images in memory), ``root``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from hdist.data import ArrayDataset, DataBundle, register
from hdist.data.root import DATA_ENV, cfg_get, config_error, data_root, expected_path, first_n, opt_count

EXTENSIONS = (".jpg", ".jpeg", ".png")


def scan_folder(folder: Path, classes: list[str] | None = None, dataset: str = "imagenet"):
    """``(paths, labels, classes)`` of an ``ImageFolder`` tree, sorted by class then file name."""
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise config_error(dataset, f"{folder} has classes not in train: {', '.join(extra[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for c in found:
        files = sorted(
            e.name for e in os.scandir(folder / c) if e.is_file() and e.name.lower().endswith(EXTENSIONS)
        )
        paths += [str(folder / c / f) for f in files]
        labels += [index[c]] * len(files)
    if not paths:
        raise config_error(
            dataset, f"no images (*.jpg, *.jpeg, *.png) in {folder}/<class>/; expected an ImageFolder tree"
        )
    return paths, labels, classes


def load_image(path: str, size: int, dataset: str = "imagenet") -> np.ndarray:
    """One image as uint8 ``[3, size, size]``: RGB, shorter side resized, centre-cropped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise config_error(dataset, f"cannot read image {path}: {e}") from None


class LazyImages:
    """Image files that behave like a float tensor ``[n, 3, S, S]`` under indexing."""

    def __init__(self, paths, size: int, cache: dict | None = None):
        self.paths = np.asarray(paths, dtype=object)
        self.size = int(size)
        self.cache = cache  # path -> uint8 array, shared by subsets; None = no caching

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def _one(self, path: str) -> np.ndarray:
        if self.cache is None:
            return load_image(path, self.size)
        if path not in self.cache:
            self.cache[path] = load_image(path, self.size)
        return self.cache[path]

    def _paths(self, idx):
        if isinstance(idx, torch.Tensor):
            idx = idx.detach().cpu().numpy()
        return self.paths[idx]

    def __getitem__(self, idx) -> torch.Tensor:
        sel = self._paths(idx)
        if isinstance(sel, np.ndarray):
            arr = np.zeros((0, 3, self.size, self.size), np.uint8)
            if len(sel):
                arr = np.stack([self._one(p) for p in sel])
        else:
            arr = self._one(sel)
        return torch.from_numpy(arr.astype(np.float32) / np.float32(255.0))

    def take(self, idx) -> LazyImages:
        """The images at ``idx``, still lazy."""
        return LazyImages(np.atleast_1d(self._paths(idx)), self.size, self.cache)


class ImageFolderDataset(ArrayDataset):
    """An :class:`~hdist.data.ArrayDataset` whose ``X`` is :class:`LazyImages`."""

    def __init__(self, X: LazyImages, y: torch.Tensor):
        super().__init__(X, y)

    def subset(self, idx) -> ImageFolderDataset:
        return ImageFolderDataset(self.X.take(idx), self.y[idx])


def _split(folder: Path, classes, n, key, size, order_seed, cache):
    paths, labels, classes = scan_folder(folder, classes)
    order = np.arange(len(paths))
    if order_seed is not None:
        g = torch.Generator()
        g.manual_seed(int(order_seed))
        order = torch.randperm(len(paths), generator=g).numpy()
    k = first_n(len(paths), n, key, "imagenet")
    order = order[:k]
    X = LazyImages(np.asarray(paths, dtype=object)[order], size, cache)
    return ImageFolderDataset(X, torch.as_tensor(labels, dtype=torch.int64)[torch.from_numpy(order)]), classes


@register("imagenet")
def load_imagenet(cfg, *, input_shape, num_classes, seed) -> DataBundle:
    size = cfg_get(cfg, "image_size")
    if size is None:
        shp = tuple(input_shape or ())
        size = shp[-1] if len(shp) == 3 and shp[0] == 3 and shp[1] == shp[2] else 64
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise config_error("imagenet", f"image_size={size} is not allowed; expected a positive integer")
    folders = {}
    for split in ("train", "val"):
        p = expected_path("imagenet", split + "/", cfg)
        if not p.is_dir():
            raise config_error(
                "imagenet",
                f"missing folder {split}/; expected at {p} (an ImageFolder tree {split}/<class>/*.jpg); "
                f"set dataset.root or {DATA_ENV}",
            )
        folders[split] = p
    order_seed = cfg_get(cfg, "order_seed", 0)
    cache = {} if cfg_get(cfg, "cache", False) else None
    n_train, n_test = opt_count(cfg, "n_train", "imagenet"), opt_count(cfg, "n_test", "imagenet")
    train, classes = _split(folders["train"], None, n_train, "n_train", size, order_seed, cache)
    test, _ = _split(folders["val"], classes, n_test, "n_test", size, order_seed, cache)
    return DataBundle(
        "imagenet", train, test, len(classes), "real",
        f"image folder {folders['train'].parent}: {len(classes)} classes, {len(train)}+{len(test)} images "
        f"at {size}x{size}, loaded lazily",
        {"root": str(data_root(cfg)), "classes": classes, "image_size": size, "lazy": True},
    )
