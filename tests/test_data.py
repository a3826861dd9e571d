"""Dataset loaders (hdist.data): tiny fixture files written here, plus one slow test on shared/data."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from omegaconf import OmegaConf
from PIL import Image

from hdist.data import ArrayDataset, load, root
from hdist.data.catalog import describe_all
from hdist.data.cifar import CIFAR10_MEAN, CIFAR10_STD, augment, normalize
from hdist.data.imagenet import ImageFolderDataset, LazyImages
from hdist.data.libsvm import load_svmlight
from hdist.types import ConfigError

SHARED = Path(__file__).parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No network, no real data root, no real cache: every test sees only its own files."""
    monkeypatch.setenv(root.OFFLINE_ENV, "1")
    monkeypatch.delenv(root.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _load(name, data_root=None, input_shape=(784,), num_classes=10, **keys):
    cfg = {"name": name, **keys}
    if data_root is not None:
        cfg["root"] = str(data_root)
    return load(cfg, input_shape=input_shape, num_classes=num_classes, seed=0)


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _trust(monkeypatch, dataset: str, *paths: Path):
    """Make the checksum table publish the md5 of our fixture files."""
    for p in paths:
        kf = root.known_file(dataset, p.name)
        monkeypatch.setitem(root.KNOWN[dataset], p.name, replace(kf, md5=_md5(p)))


# ---------------------------------------------------------------------------------------------
# data root and resolve


def test_data_root_lookup(monkeypatch, tmp_path):
    assert root.data_root() == tmp_path / "xdg" / "hdist" / "data"
    monkeypatch.setenv(root.DATA_ENV, str(tmp_path / "env"))
    assert root.data_root({}) == tmp_path / "env"
    assert root.data_root({"root": str(tmp_path / "cfg")}) == tmp_path / "cfg"
    assert root.data_root(OmegaConf.create({"root": None})) == tmp_path / "env"


def test_resolve_verifies_and_reverifies_changed_file(monkeypatch, tmp_path):
    p = tmp_path / "libsvm" / "ijcnn1.t.bz2"
    p.parent.mkdir()
    p.write_bytes(b"hello")
    _trust(monkeypatch, "ijcnn1", p)
    assert root.resolve("ijcnn1", "ijcnn1.t.bz2", {"root": str(tmp_path)}) == p
    p.write_bytes(b"hellO")
    os.utime(p, ns=(1, 1))  # a new mtime, so the cached verification does not apply
    msg = _error(root.resolve, "ijcnn1", "ijcnn1.t.bz2", {"root": str(tmp_path)})
    assert "checksum mismatch" in msg and _md5(p) in msg and hashlib.md5(b"hello").hexdigest() in msg
    # verify: false skips the check (a file you made yourself)
    assert root.resolve("ijcnn1", "ijcnn1.t.bz2", {"root": str(tmp_path), "verify": False}) == p


def test_resolve_downloads_and_checks(monkeypatch, tmp_path):
    src = tmp_path / "publisher" / "ijcnn1.t.bz2"
    src.parent.mkdir()
    src.write_bytes(b"published bytes")
    kf = root.KnownFile("ijcnn1.t.bz2", _md5(src), (src.as_uri(),), subdir="libsvm")
    monkeypatch.setitem(root.KNOWN["ijcnn1"], "ijcnn1.t.bz2", kf)
    cfg = {"root": str(tmp_path / "data")}
    msg = _error(root.resolve, "ijcnn1", "ijcnn1.t.bz2", cfg)  # offline: a clear message
    assert "missing file ijcnn1.t.bz2" in msg and str(tmp_path / "data" / "libsvm" / "ijcnn1.t.bz2") in msg
    monkeypatch.delenv(root.OFFLINE_ENV)
    got = root.resolve("ijcnn1", "ijcnn1.t.bz2", cfg)
    assert got == tmp_path / "data" / "libsvm" / "ijcnn1.t.bz2" and got.read_bytes() == b"published bytes"
    # a download whose md5 is wrong is refused and not kept
    bad = replace(kf, md5="0" * 32)
    monkeypatch.setitem(root.KNOWN["ijcnn1"], "ijcnn1.t.bz2", bad)
    got.unlink()
    msg = _error(root.resolve, "ijcnn1", "ijcnn1.t.bz2", cfg)
    assert "download failed" in msg and "expected " + "0" * 32 in msg
    assert not got.exists() and not list(got.parent.glob("*.part*"))


# ---------------------------------------------------------------------------------------------
# MNIST


def _idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, n_train=12, n_test=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr, magic, d in (("images", imgs, 2051, 3), ("labels", labels, 2049, 1)):
            raw = _idx_bytes(arr, magic)
            name = f"{prefix}-{kind}-idx{d}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        data[prefix] = (imgs, labels)
    return data


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_shapes_labels_subsets(tmp_path, gz):
    data = _write_mnist(tmp_path / "mnist", gz=gz)
    b = _load("mnist", tmp_path, input_shape=(1, 28, 28), verify=False)
    assert b.num_classes == 10 and b.source == "real"
    assert b.train.X.shape == (12, 1, 28, 28) and b.test.X.shape == (5, 1, 28, 28)
    assert b.train.X.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert float(b.train.X.min()) >= 0 and float(b.train.X.max()) <= 1
    imgs, labels = data["train"]
    assert torch.equal(b.train.y, torch.from_numpy(labels.astype(np.int64)))
    assert torch.allclose(b.train.X[3, 0], torch.from_numpy(imgs[3] / 255.0).float())
    # flat models get flat vectors; subsets are the first n
    flat = _load("mnist", tmp_path, input_shape=(784,), verify=False, n_train=7, n_test=2)
    assert flat.train.X.shape == (7, 784) and flat.test.X.shape == (2, 784)
    assert torch.equal(flat.train.X, b.train.X[:7].reshape(7, 784))
    assert torch.equal(flat.test.y, b.test.y[:2])


def test_mnist_checksum_mismatch_and_missing(tmp_path):
    _write_mnist(tmp_path / "mnist")
    msg = _error(_load, "mnist", tmp_path)
    assert "checksum mismatch" in msg and "train-images-idx3-ubyte.gz" in msg
    assert "expected f68b3c2dcbeaaa9fbdd348bbdeb94873" in msg
    empty = tmp_path / "empty"
    msg = _error(_load, "mnist", empty)
    assert msg.startswith("dataset=mnist: missing file train-images-idx3-ubyte.gz")
    assert str(empty / "mnist" / "train-images-idx3-ubyte.gz") in msg and "HDIST_DATA" in msg


def test_mnist_truncated_and_bad_files(tmp_path):
    _write_mnist(tmp_path / "mnist")
    f = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw[:-100]))  # body shorter than the header says
    msg = _error(_load, "mnist", tmp_path, verify=False)
    assert "truncated" in msg and str(f) in msg
    f.write_bytes(gzip.compress(raw)[:-30])  # the gzip stream itself cut short
    assert "truncated" in _error(_load, "mnist", tmp_path, verify=False)
    f.write_bytes(gzip.compress(_idx_bytes(np.zeros(12, np.uint8), 2049)))  # labels where images belong
    assert "magic number 2049; expected 2051" in _error(_load, "mnist", tmp_path, verify=False)


# ---------------------------------------------------------------------------------------------
# LIBSVM


def _svm_lines(n: int, d: int, seed: int, labels=(-1, 1)) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = np.sort(rng.choice(np.arange(1, d + 1), size=3, replace=False))
        feats = " ".join(f"{i}:{rng.normal():.4f}" for i in idx)
        out.append(f"{rng.choice(labels):g} {feats}")
    return "\n".join(out) + "\n"


def _write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = text.encode()
    if path.suffix == ".bz2":
        raw = bz2.compress(raw)
    elif path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)


@pytest.mark.parametrize("ext", ["", ".bz2", ".gz"])
def test_ijcnn1_formats_sparse_and_labels(tmp_path, ext):
    lib = tmp_path / "libsvm"
    tr, val, te = _svm_lines(6, 20, 1), _svm_lines(4, 20, 2), _svm_lines(5, 22, 3)
    _write(lib / f"ijcnn1.tr{ext}", "# a comment line\n" + tr)
    _write(lib / f"ijcnn1.val{ext}", val)
    _write(lib / f"ijcnn1.t{ext}", te)
    b = _load("ijcnn1", tmp_path, input_shape=(22,), num_classes=2, verify=False)
    assert b.num_classes == 2 and b.input_shape == (22,)
    assert sp.issparse(b.train.X) and b.train.X.dtype == np.float32 and b.train.X.shape == (10, 22)
    assert b.test.X.shape == (5, 22)
    raw = [float(line.split()[0]) for line in (tr + val).splitlines()]
    assert b.train.y.tolist() == [int(v > 0) for v in raw]
    # a batch is dense; the dataset and its shards stay sparse
    x, y = b.train[torch.tensor([0, 3, 9])]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (3, 22)
    first = tr.splitlines()[0].split()[1:]
    for tok in first:
        i, v = tok.split(":")
        assert x[0, int(i) - 1].item() == pytest.approx(float(v))
    assert int((x[0] != 0).sum()) == 3 and y.tolist() == b.train.y[[0, 3, 9]].tolist()
    assert b.train[2][0].shape == (22,)
    s0, s1 = b.train.shard(0, 2), b.train.shard(1, 2)
    assert sp.issparse(s0.X) and len(s0) + len(s1) == 10
    assert torch.equal(s1[torch.arange(len(s1))][0], b.train[torch.arange(5, 10)][0])
    assert torch.equal(b.train.shard(1, 2).y, s1.y)


def test_ijcnn1_single_file_dense_regression_and_errors(tmp_path):
    lib = tmp_path / "libsvm"
    _write(lib / "ijcnn1.bz2", _svm_lines(8, 22, 1))
    _write(lib / "ijcnn1.t.bz2", _svm_lines(3, 22, 2))
    b = _load("ijcnn1", tmp_path, input_shape=(22,), verify=False, dense=True, task="regression", n_train=5)
    assert b.num_classes == 0 and isinstance(b.train.X, torch.Tensor) and b.train.X.shape == (5, 22)
    assert b.train.y.dtype == torch.float32 and set(b.train.y.tolist()) <= {-1.0, 1.0}
    _write(lib / "ijcnn1.t.bz2", "1 23:0.5\n")
    assert "feature index 23; expected at most 22" in _error(_load, "ijcnn1", tmp_path, verify=False)
    _write(lib / "ijcnn1.t.bz2", "3 1:0.5\n")
    assert "label 3; expected one of -1, 1" in _error(_load, "ijcnn1", tmp_path, verify=False)
    _write(lib / "ijcnn1.t.bz2", "1 1:0.5\n-1 2:x\n")
    assert "line 2" in _error(_load, "ijcnn1", tmp_path, verify=False)
    msg = _error(_load, "ijcnn1", tmp_path / "nothing")
    assert "missing file ijcnn1.tr.bz2 (or " in msg and "ijcnn1.bz2" in msg
    assert "train_split=xx is not allowed" in _error(_load, "ijcnn1", tmp_path, train_split="xx")


def test_covtype_and_rcv1_holdout_is_deterministic(tmp_path):
    lib = tmp_path / "libsvm"
    _write(lib / "covtype.libsvm.binary.scale.bz2", _svm_lines(40, 54, 1, labels=(1, 2)))
    a = _load("covtype", tmp_path, input_shape=(54,), verify=False, test_fraction=0.25)
    b = _load("covtype", tmp_path, input_shape=(54,), verify=False, test_fraction=0.25)
    assert (len(a.train), len(a.test)) == (30, 10) and a.train.X.shape[1] == 54
    assert (a.train.X != b.train.X).nnz == 0 and torch.equal(a.test.y, b.test.y)
    assert set(a.train.y.tolist() + a.test.y.tolist()) <= {0, 1}
    c = _load("covtype", tmp_path, input_shape=(54,), verify=False, test_fraction=0.25, split_seed=1)
    assert (c.test.X != a.test.X).nnz > 0
    _write(lib / "rcv1_train.binary", "1 5:0.5 47236:0.25\n-1 7:1\n1 3:1\n-1 9:1\n")
    r = _load("rcv1", tmp_path, input_shape=(47236,), test_fraction=0.25)  # plain file: unverified
    assert r.train.X.shape == (3, 47236) and r.test.X.shape == (1, 47236) and sp.issparse(r.test.X)


# ---------------------------------------------------------------------------------------------
# CIFAR


def _cifar_pickle(path: Path, n: int, label_keys: dict, seed: int):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    d = {b"data": data, b"batch_label": b"test"}
    d.update({k.encode(): [int(v) for v in rng.integers(0, hi, n)] for k, hi in label_keys.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(d, protocol=2))
    return d


def _write_cifar10(folder: Path, n=3) -> dict:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {f: _cifar_pickle(folder / f, n, {"labels": 10}, i) for i, f in enumerate(names)}


def test_cifar10_verified_pickles(monkeypatch, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    batches = _write_cifar10(folder)
    msg = _error(_load, "cifar10", tmp_path, input_shape=(3, 32, 32))  # real md5s: refuse to unpickle
    assert "checksum mismatch" in msg and "data_batch_1" in msg and "c99cafc152244af753f735de768cd75f" in msg
    _trust(monkeypatch, "cifar10", *folder.iterdir())
    b = _load("cifar10", tmp_path, input_shape=(3, 32, 32))
    assert b.train.X.shape == (15, 3, 32, 32) and b.test.X.shape == (3, 3, 32, 32)
    assert b.train.X.dtype == torch.float32 and 0 <= float(b.train.X.min()) <= float(b.train.X.max()) <= 1
    d1 = batches["data_batch_1"]
    assert torch.allclose(b.train.X[1], torch.from_numpy(d1[b"data"][1] / 255.0).float().reshape(3, 32, 32))
    assert b.train.y[:3].tolist() == d1[b"labels"] and b.test.y.tolist() == batches["test_batch"][b"labels"]
    assert b.info["augment"] is True and b.info["mean"] == CIFAR10_MEAN
    sub = _load("cifar10", tmp_path, input_shape=(3072,), n_train=4, n_test=2)
    assert sub.train.X.shape == (4, 3072) and torch.equal(sub.train.y, b.train.y[:4])


def test_cifar_tarball_is_extracted(monkeypatch, tmp_path):
    src = tmp_path / "src" / "cifar-10-batches-py"
    _write_cifar10(src)
    tar_path = tmp_path / "data" / "cifar-10-python.tar.gz"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    _trust(monkeypatch, "cifar10", tar_path, *src.iterdir())
    b = _load("cifar10", tmp_path / "data", input_shape=(3, 32, 32))
    assert len(b.train) == 15 and (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar100_and_unsafe_pickle(tmp_path):
    folder = tmp_path / "cifar-100-python"
    tr = _cifar_pickle(folder / "train", 6, {"fine_labels": 100, "coarse_labels": 20}, 0)
    _cifar_pickle(folder / "test", 2, {"fine_labels": 100, "coarse_labels": 20}, 1)
    b = _load("cifar100", tmp_path, input_shape=(3, 32, 32), verify=False)
    assert b.num_classes == 100 and b.train.y.tolist() == tr[b"fine_labels"]
    c = _load("cifar100", tmp_path, input_shape=(3, 32, 32), verify=False, label_type="coarse")
    assert c.num_classes == 20 and c.train.y.tolist() == tr[b"coarse_labels"]
    (folder / "train").write_bytes(pickle.dumps({b"data": os.getcwd}))  # a global outside the allow list
    assert "is not allowed in a CIFAR pickle" in _error(_load, "cifar100", tmp_path, verify=False)


def test_augment_shapes_determinism_and_semantics():
    x = torch.rand(6, 3, 8, 8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = augment(x, g1), augment(x, g2)
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(augment(x, torch.Generator().manual_seed(4)), a)
    # flips only: every image is itself or its mirror
    f = augment(x, torch.Generator().manual_seed(0), padding=0)
    assert all(torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(-1)) for i in range(6))
    # crops only: every image is an 8x8 window of the zero-padded image
    c = augment(x, torch.Generator().manual_seed(1), flip=False)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        assert any(torch.equal(c[i], padded[i, :, r : r + 8, s : s + 8]) for r in range(9) for s in range(9))


def test_normalize():
    x = torch.ones(2, 3, 4, 4)
    y = normalize(x)
    for ch in range(3):
        assert torch.allclose(y[:, ch], torch.tensor((1 - CIFAR10_MEAN[ch]) / CIFAR10_STD[ch]))
    assert normalize(x[0], "cifar100").shape == (3, 4, 4)


# ---------------------------------------------------------------------------------------------
# image folder, features


def _write_images(folder: Path):
    colours = {"cat": (255, 0, 0), "dog": (0, 0, 255)}
    for split in ("train", "val"):
        for c, rgb in colours.items():
            for i, size in enumerate([(40, 30), (20, 24)]):
                p = folder / split / c / f"{i}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size, rgb).save(p)


def test_imagenet_folder_is_lazy(tmp_path):
    _write_images(tmp_path / "imagenet")
    b = _load("imagenet", tmp_path, input_shape=(3, 16, 16), image_size=16)
    assert b.num_classes == 2 and b.info["classes"] == ["cat", "dog"] and len(b.train) == 4 == len(b.test)
    assert isinstance(b.train, ImageFolderDataset) and isinstance(b.train.X, LazyImages)
    assert b.input_shape == (3, 16, 16)
    x, y = b.train[torch.tensor([0, 1, 2, 3])]
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    for i in range(4):  # red images are class 0 (cat), blue class 1 (dog)
        assert torch.allclose(x[i, 0], torch.full((16, 16), 1.0 - y[i].item()))
        assert torch.allclose(x[i, 2], torch.full((16, 16), float(y[i])))
    s = b.train.shard(1, 2)
    assert isinstance(s.X, LazyImages) and len(s) == 2 and torch.equal(s[torch.arange(2)][0], x[2:])
    assert b.train[0][0].shape == (3, 16, 16)
    again = _load("imagenet", tmp_path, input_shape=(3, 16, 16), image_size=16)
    assert torch.equal(again.train.y, b.train.y) and again.train.X.paths.tolist() == b.train.X.paths.tolist()
    msg = _error(_load, "imagenet", tmp_path / "none")
    assert str(tmp_path / "none" / "imagenet" / "train") in msg and "HDIST_DATA" in msg


@pytest.mark.parametrize("ext", ["npy", "npz", "csv", "txt"])
def test_cifar10_features(tmp_path, ext):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10_features"
    folder.mkdir()
    arrays = {}
    for split, n in (("train", 12), ("test", 5)):
        X = rng.normal(size=(n, 384)).astype(np.float32)
        y = rng.integers(0, 10, n)
        arrays[split] = (X, y)
        p = folder / f"{split}.{ext}"
        if ext == "npy":
            np.save(p, np.hstack([X, y[:, None]]))
        elif ext == "npz":
            np.savez(p, X=X, y=y)
        else:
            np.savetxt(p, np.hstack([X, y[:, None]]), delimiter="," if ext == "csv" else " ", fmt="%.9g")
    b = _load("cifar10_features", tmp_path, input_shape=(384,), n_train=10, n_test=None)
    assert b.train.X.shape == (10, 384) and b.test.X.shape == (5, 384) and b.num_classes == 10
    assert torch.allclose(b.train.X, torch.from_numpy(arrays["train"][0][:10]))
    assert b.test.y.tolist() == arrays["test"][1].tolist()
    assert "expected n_features=100" in _error(_load, "cifar10_features", tmp_path, n_features=100)


# ---------------------------------------------------------------------------------------------
# synthetic generators, ArrayDataset, catalogue


def test_synthetic_generators():
    a = _load("lian15_synthetic", input_shape=(20,), num_classes=4, n_train=200, n_test=50)
    b = _load("lian15_synthetic", input_shape=(20,), num_classes=4, n_train=200, n_test=50)
    assert a.train.X.shape == (200, 20) and a.num_classes == 4 and torch.equal(a.train.X, b.train.X)
    assert set(a.train.y.tolist()) == {0, 1, 2, 3}
    p = _load("pca", input_shape=(784,), d=30, n_train=300, n_test=20)
    assert p.train.X.shape == (300, 30) and p.num_classes == 0
    assert torch.allclose(p.train.X.norm(dim=1), torch.ones(300), atol=1e-5)
    assert p.info["v1"].shape == (30,) and p.info["eigvals"][0] >= p.info["eigvals"][1]
    s = _load("sparse_synthetic", input_shape=(500,), n_train=400, n_test=100, density=0.02)
    assert sp.issparse(s.train.X) and s.train.X.shape == (400, 500) and s.num_classes == 2
    assert 0.015 < s.train.X.nnz / (400 * 500) < 0.025
    assert s.train[torch.arange(4)][0].shape == (4, 500)
    syn = load(OmegaConf.create({"name": "synthetic", "n_train": 8, "n_test": 4}),
               input_shape=(3, 8, 8), num_classes=5, seed=0)
    assert syn.train.X.shape == (8, 3, 8, 8)
    assert "n_train=-3 is not allowed" in _error(_load, "pca", n_train=-3)


def test_array_dataset_sparse_indexing():
    X = sp.random(10, 6, density=0.3, format="csr", dtype=np.float32, random_state=0)
    ds = ArrayDataset(X, torch.arange(10))
    dense = torch.from_numpy(X.toarray())
    assert torch.equal(ds[torch.tensor([1, 4])][0], dense[[1, 4]])
    assert torch.equal(ds[3][0], dense[3]) and ds[3][1].item() == 3
    assert torch.equal(ds[2:5][0], dense[2:5])
    assert torch.equal(ds.subset(torch.tensor([7, 8])).dense_X(), dense[[7, 8]])


def test_catalog(monkeypatch, tmp_path):
    _write_mnist(tmp_path / "mnist")
    _write(tmp_path / "libsvm" / "ijcnn1.bz2", "1 1:1\n")
    _write(tmp_path / "libsvm" / "ijcnn1.t.bz2", "1 1:1\n")
    entries = {d["name"]: d for d in describe_all(tmp_path)}
    assert {"mnist", "cifar10", "ijcnn1", "imagenet", "synthetic", "pca"} <= set(entries)
    mnist = entries["mnist"]
    assert mnist["present"] == "present" and mnist["checksum"] == "mismatch"
    f = next(x for x in mnist["files"] if x["file"] == "train-images-idx3-ubyte.gz")
    assert f["path"] == str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") and f["checksum"] == "mismatch"
    assert entries["ijcnn1"]["present"] == "present" and entries["ijcnn1"]["checksum"] == "mismatch"
    assert entries["cifar10"]["present"] == "absent" and entries["synthetic"]["present"] == "generated"
    _trust(monkeypatch, "mnist", *(tmp_path / "mnist").iterdir())
    assert next(d for d in describe_all(tmp_path) if d["name"] == "mnist")["checksum"] == "ok"
    _trust(monkeypatch, "ijcnn1", tmp_path / "libsvm" / "ijcnn1.t.bz2")
    assert next(d for d in describe_all(tmp_path) if d["name"] == "ijcnn1")["checksum"] == "unverified"


# ---------------------------------------------------------------------------------------------
# the real files in shared/data


@pytest.mark.slow
def test_shared_data(monkeypatch):
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"no shared data at {SHARED}")
    monkeypatch.setenv(root.DATA_ENV, str(SHARED))
    m = _load("mnist", input_shape=(1, 28, 28))
    assert m.train.X.shape == (60000, 1, 28, 28) and m.test.X.shape == (10000, 1, 28, 28)
    counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(m.train.y).tolist() == counts
    assert float(m.train.X.max()) == 1.0 and float(m.train.X.min()) == 0.0
    huo = _load("mnist", input_shape=(784,), n_train=10000, n_test=2000)
    assert huo.train.X.shape == (10000, 784) and torch.equal(huo.train.y, m.train.y[:10000])
    if (SHARED / "libsvm" / "ijcnn1.t.bz2").is_file():
        # SOURCES.md: train = tr + val = 49,990 (-1: 45,137, +1: 4,853); test 91,701 (-1: 82,989, +1: 8,712)
        ij = _load("ijcnn1", input_shape=(22,), num_classes=2)
        assert ij.train.X.shape == (49990, 22) and ij.test.X.shape == (91701, 22) and sp.issparse(ij.train.X)
        assert torch.bincount(ij.train.y).tolist() == [45137, 4853]
        assert torch.bincount(ij.test.y).tolist() == [82989, 8712]
        tr = _load("ijcnn1", input_shape=(22,), num_classes=2, train_split="tr")
        assert torch.bincount(tr.train.y).tolist() == [31585, 3415]
        Xall, yall = load_svmlight(SHARED / "libsvm" / "ijcnn1.bz2", 22)  # tr + val in one file
        assert (Xall != ij.train.X).nnz == 0 and np.array_equal(yall > 0, ij.train.y.numpy() == 1)
    entries = {d["name"]: d for d in describe_all(SHARED)}
    assert entries["mnist"]["checksum"] == "ok" and entries["ijcnn1"]["checksum"] == "ok"
