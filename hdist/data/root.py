"""Where dataset files live, what they should be, and how they are checked.

The data root is, in order: the ``dataset.root`` config key, ``$HDIST_DATA``, or a per-user
cache folder (``$XDG_CACHE_HOME/hdist/data``, default ``~/.cache/hdist/data``). Every dataset
has its own folder under the root (``mnist/``, ``libsvm/``, ``cifar-10-batches-py/`` ...; see
:data:`SUBDIRS`); a file placed directly in the root is found too.

:data:`KNOWN` lists every file hdist knows of, with its publisher's md5 (``None`` where none is
published: such a file is used but reported as *unverified*) and the publisher's URLs.
:func:`resolve` finds a file, verifies it (the result is cached per path, mtime and size for
the life of the process), downloads it from the publisher when it is missing, and otherwise
raises a one-line :class:`~hdist.types.ConfigError` that says where the file was expected.

Config keys read here (all optional): ``root`` (data root), ``verify`` (default true; false
skips the md5 check, for files you made yourself), ``download`` (default true; false never
touches the network; ``HDIST_OFFLINE=1`` does the same for every dataset) and
``download_timeout`` (seconds per network operation, default 15). A download that reaches no
server at all leaves ``<root>/.no-network``: for an hour no download is tried again (no retry storm
on every rerun offline); delete it to retry at once.

The small config helpers at the end (:func:`cfg_get`, :func:`opt_count`, :func:`first_n` ...)
are shared by the loaders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdist.types import ConfigError

DATA_ENV = "HDIST_DATA"
OFFLINE_ENV = "HDIST_OFFLINE"
DEFAULT_TIMEOUT = 15.0  # seconds per network operation (connect, each read)


@dataclass(frozen=True)
class KnownFile:
    """One file of a dataset as its publisher distributes it."""

    name: str
    md5: str | None  # the publisher's md5; None = none published (file reported "unverified")
    urls: tuple[str, ...] = ()  # where to download it from, tried in order
    archive: str | None = None  # a known archive (same dataset) holding it as ``<subdir>/<name>``
    subdir: str | None = None  # folder under the root; None = the dataset's folder (SUBDIRS)
    note: str = ""


_LECUN = "http://yann.lecun.com/exdb/mnist/"
_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # the mirror torchvision uses
_KRIZ = "https://www.cs.toronto.edu/~kriz/"
_LIBSVM = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary/"


def _mnist(name: str, md5: str) -> KnownFile:
    return KnownFile(name, md5, (_LECUN + name, _MNIST_MIRROR + name))


def _libsvm(name: str, md5: str | None, note: str = "") -> KnownFile:
    return KnownFile(name, md5, (_LIBSVM + name,), subdir="libsvm", note=note)


def _table(*files: KnownFile) -> dict[str, KnownFile]:
    return {f.name: f for f in files}


# Folder of each dataset under the data root.
SUBDIRS: dict[str, str] = {
    "mnist": "mnist",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "ijcnn1": "libsvm",
    "covtype": "libsvm",
    "rcv1": "libsvm",
    "imagenet": "imagenet",
    "cifar10_features": "cifar10_features",
}

_C10 = "cifar-10-python.tar.gz"
_C100 = "cifar-100-python.tar.gz"

# dataset -> file name -> KnownFile. md5s: MNIST and CIFAR as torchvision has them; the
# uncompressed MNIST md5s and the LIBSVM md5s as recorded in shared/data/SOURCES.md.
KNOWN: dict[str, dict[str, KnownFile]] = {
    "mnist": _table(
        _mnist("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        _mnist("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        _mnist("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        _mnist("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        # the same files gunzipped (no download source: fetch the .gz instead)
        KnownFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
        KnownFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
        KnownFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
        KnownFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
    ),
    "cifar10": _table(
        KnownFile(_C10, "c58f30108f718f92721af3b95e74349a", (_KRIZ + _C10,), subdir=""),
        KnownFile("data_batch_1", "c99cafc152244af753f735de768cd75f", archive=_C10),
        KnownFile("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", archive=_C10),
        KnownFile("data_batch_3", "54ebc095f3ab1f0389bbae665268c751", archive=_C10),
        KnownFile("data_batch_4", "634d18415352ddfa80567beed471001a", archive=_C10),
        KnownFile("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", archive=_C10),
        KnownFile("test_batch", "40351d587109b95175f43aff81a1287e", archive=_C10),
        KnownFile("batches.meta", "5ff9c542aee3614f3951f8cda6e48888", archive=_C10),
    ),
    "cifar100": _table(
        KnownFile(_C100, "eb9058c3a382ffc7106e4002c42a8d85", (_KRIZ + _C100,), subdir=""),
        KnownFile("train", "16019d7e3df5f24257cddd939b257f8d", archive=_C100),
        KnownFile("test", "f0ef6b0ae62326f3e7ffdfab6717acfc", archive=_C100),
        KnownFile("meta", "7973b15100ade9c7d40fb424638fde48", archive=_C100),
    ),
    "ijcnn1": _table(
        _libsvm("ijcnn1.tr.bz2", "9889c2e9d957dca5304ed2d285f1be6d", "35,000 training samples"),
        _libsvm("ijcnn1.val.bz2", "9940e6f83e00623a5ca993f189ab18d9", "14,990 validation samples"),
        _libsvm("ijcnn1.t.bz2", "66433ab8089acee9e56dc61ac89a2fe2", "91,701 test samples"),
        # LIBSVM's "train+validate" file (= tr followed by val); no md5 is published for it.
        _libsvm("ijcnn1.bz2", None, "49,990 samples = ijcnn1.tr + ijcnn1.val"),
    ),
    "covtype": _table(
        _libsvm("covtype.libsvm.binary.scale.bz2", "d95f45e15c284005c2c7a4c82e4be102", "features in [0,1]"),
        _libsvm("covtype.libsvm.binary.bz2", "0d3439b314ce13e2f8b903b12bb3ea20", "unscaled features"),
    ),
    "rcv1": _table(
        _libsvm("rcv1_train.binary.bz2", "1aeda848408e621468c0fe6944d9382f", "20,242 samples"),
        _libsvm("rcv1_test.binary.bz2", None,
                "677,399 samples (test set with use_test_file; train set with train_file: test)"),
    ),
    "imagenet": {},
    "cifar10_features": {},
}

# What each real dataset needs, for the catalogue: a list of requirements, each a list of
# alternatives, each a tuple of files that together satisfy it (the first present one is used).
REQUIRED: dict[str, list[list[tuple[str, ...]]]] = {
    "mnist": [
        [(f"{s}-{k}-idx{d}-ubyte.gz",), (f"{s}-{k}-idx{d}-ubyte",)]
        for s in ("train", "t10k")
        for k, d in (("images", 3), ("labels", 1))
    ],
    "cifar10": [[(f"data_batch_{i}",)] for i in range(1, 6)] + [[("test_batch",)]],
    "cifar100": [[("train",)], [("test",)]],
    "ijcnn1": [
        [("ijcnn1.tr.bz2", "ijcnn1.val.bz2"), ("ijcnn1.bz2",), ("ijcnn1.tr", "ijcnn1.val"), ("ijcnn1",)],
        [("ijcnn1.t.bz2",), ("ijcnn1.t",)],
    ],
    "covtype": [[("covtype.libsvm.binary.scale.bz2",), ("covtype.libsvm.binary.scale",)]],
    "rcv1": [[("rcv1_train.binary.bz2",), ("rcv1_train.binary",)]],
    "imagenet": [[("train/",)], [("val/",)]],
    "cifar10_features": [
        [(f"{split}.{ext}",) for ext in ("npy", "npz", "csv", "txt")] for split in ("train", "test")
    ],
}


def _one_line(s: Any) -> str:
    return " ".join(str(s).split())


def config_error(dataset: str, msg: str) -> ConfigError:
    """``ConfigError("dataset=<name>: <msg>")``, forced onto one line."""
    return ConfigError(_one_line(f"dataset={dataset}: {msg}"))


# ---------------------------------------------------------------------------------------------
# the data root


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` for a dict, a DictConfig or None; ``default`` when absent or null."""
    if cfg is None:
        return default
    try:
        v = cfg.get(key, default)
    except AttributeError:
        v = getattr(cfg, key, default)
    return default if v is None else v


def default_root() -> Path:
    """The per-user cache: ``$XDG_CACHE_HOME/hdist/data``, default ``~/.cache/hdist/data``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "hdist" / "data"


def data_root(cfg: Any = None) -> Path:
    """``dataset.root`` if set, else ``$HDIST_DATA``, else :func:`default_root`."""
    root = cfg_get(cfg, "root") or os.environ.get(DATA_ENV) or None
    path = Path(os.path.expandvars(str(root))).expanduser() if root else default_root()
    return path.absolute()


def known_file(dataset: str, filename: str) -> KnownFile:
    """The table entry for ``filename``, or an unverified entry for a file hdist does not know."""
    return KNOWN.get(dataset, {}).get(filename) or KnownFile(filename, None)


def expected_path(dataset: str, filename: str, cfg: Any = None) -> Path:
    """Where ``filename`` belongs: ``<root>/<dataset folder>/<filename>``."""
    kf = known_file(dataset, filename)
    sub = SUBDIRS.get(dataset, dataset) if kf.subdir is None else kf.subdir
    return data_root(cfg) / sub / filename if sub else data_root(cfg) / filename


# Datasets whose files have names too generic ("train", "test") to be looked for in the bare root.
_NO_BARE_ROOT = {"cifar100", "cifar10_features", "imagenet"}


def find(dataset: str, filename: str, cfg: Any = None) -> Path | None:
    """The existing path of ``filename`` (its folder first, then the bare root), or None.

    A name ending in ``/`` is a folder; anything else must be a regular file.
    """
    cands = [expected_path(dataset, filename, cfg)]
    if dataset not in _NO_BARE_ROOT:
        cands.append(data_root(cfg) / filename)
    for cand in cands:
        if cand.is_dir() if filename.endswith("/") else cand.is_file():
            return cand
    return None


# ---------------------------------------------------------------------------------------------
# checksums

_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def md5sum(path: Path) -> str:
    """md5 of a file, cached per (path, mtime, size) for the life of the process."""
    st = os.stat(path)
    key = (str(Path(path).absolute()), st.st_mtime_ns, st.st_size)
    if key not in _MD5_CACHE:
        h = hashlib.md5()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _MD5_CACHE[key] = h.hexdigest()
    return _MD5_CACHE[key]


def checksum_status(dataset: str, path: Path) -> tuple[str, str | None, str | None]:
    """``(status, expected, actual)`` with status ``ok``, ``mismatch`` or ``unverified``."""
    expected = known_file(dataset, path.name).md5
    if expected is None or path.is_dir():
        return "unverified", expected, None
    actual = md5sum(path)
    return ("ok" if actual == expected else "mismatch"), expected, actual


def verify(dataset: str, path: Path, cfg: Any = None) -> str:
    """Check ``path`` against its published md5; returns ``ok``, ``unverified`` or ``skipped``.

    Raises :class:`ConfigError` on a mismatch. ``verify: false`` in the config skips the check.
    """
    if not cfg_get(cfg, "verify", True):
        return "skipped"
    status, expected, actual = checksum_status(dataset, path)
    if status == "mismatch":
        raise config_error(
            dataset,
            f"checksum mismatch for {path}: md5 {actual}, expected {expected}; delete it to re-download, "
            "or set dataset.verify=false for a file you made yourself",
        )
    return status


# ---------------------------------------------------------------------------------------------
# downloads


class _Unavailable(Exception):
    """A download or extraction that did not work (the reason is the message)."""


def downloads_allowed(cfg: Any = None) -> bool:
    return bool(cfg_get(cfg, "download", True)) and os.environ.get(OFFLINE_ENV, "") in ("", "0")


#: a file in the data root that says the last download found no network: no retries for an hour
NO_NETWORK = ".no-network"
NO_NETWORK_S = 3600.0


def _no_network_marker(cfg: Any) -> Path:
    return data_root(cfg) / NO_NETWORK


def network_known_down(cfg: Any = None) -> bool:
    """Whether a download in the last hour found no network (the marker's age); rerunning does not retry."""
    try:
        return time.time() - _no_network_marker(cfg).stat().st_mtime < NO_NETWORK_S
    except OSError:
        return False


def _remember_no_network(cfg: Any, reasons: list[str]) -> None:
    marker = _no_network_marker(cfg)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("; ".join(reasons) + "\n")
    except OSError:  # a read-only data root: every run retries, nothing worse
        pass


def _download(dataset: str, kf: KnownFile, dest: Path, cfg: Any) -> Path:
    if not kf.urls:
        raise _Unavailable("no download source known")
    if not downloads_allowed(cfg):
        raise _Unavailable(f"downloads are off (dataset.download=false or {OFFLINE_ENV}=1)")
    if network_known_down(cfg):
        raise _Unavailable(f"offline: no network at the last try, less than an hour ago (delete "
                           f"{_no_network_marker(cfg)} to retry now)")
    timeout = float(cfg_get(cfg, "download_timeout", DEFAULT_TIMEOUT))
    created = [p for p in [dest.parent, *dest.parent.parents] if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _Unavailable(f"cannot create {dest.parent}: {e}") from None
    tmp = dest.with_name(f"{dest.name}.part{os.getpid()}")
    reasons, no_network = [], True
    for url in kf.urls:
        print(f"hdist: downloading {url} -> {dest}", file=sys.stderr, flush=True)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except (OSError, urllib.error.URLError, ValueError) as e:
            # An HTTP answer (404, 503) means the network works; only a failure to reach any server
            # (name lookup, refused, timed out) is remembered as offline.
            no_network = no_network and not isinstance(e, urllib.error.HTTPError)
            reasons.append(f"{url}: {getattr(e, 'reason', e)}")
            tmp.unlink(missing_ok=True)
            continue
        no_network = False
        if kf.md5 is not None and md5sum(tmp) != kf.md5:
            reasons.append(f"{url}: md5 {md5sum(tmp)}, expected {kf.md5}")
            tmp.unlink(missing_ok=True)
            continue
        os.replace(tmp, dest)
        return dest
    for p in created:  # leave no empty folders behind
        try:
            p.rmdir()
        except OSError:
            break
    if no_network:
        _remember_no_network(cfg, reasons)
        raise _Unavailable("offline: no server could be reached (" + "; ".join(reasons) + ")")
    raise _Unavailable("download failed (" + "; ".join(reasons) + ")")


def _extract(dataset: str, kf: KnownFile, dest: Path, cfg: Any) -> Path:
    """Extract ``kf`` (and its missing siblings) from its archive, resolving the archive first."""
    archive = _resolve(dataset, kf.archive, cfg)
    members = {}
    for other in KNOWN.get(dataset, {}).values():
        if other.archive == kf.archive:
            target = expected_path(dataset, other.name, cfg)
            if other.name == kf.name or not target.exists():
                members[f"{target.parent.name}/{other.name}"] = (target, other)
    try:
        with tarfile.open(archive) as tar:
            for m in tar:
                if m.name in members and m.isfile():
                    target, other = members.pop(m.name)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(f"{target.name}.part{os.getpid()}")
                    with tar.extractfile(m) as src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    os.replace(tmp, target)
    except (OSError, tarfile.TarError, EOFError) as e:
        raise _Unavailable(f"cannot extract from {archive}: {e}") from None
    if not dest.exists():
        raise _Unavailable(f"{archive} has no member {dest.parent.name}/{dest.name}")
    return dest


class _Missing(Exception):
    def __init__(self, filename: str, dest: Path, why: str):
        super().__init__(filename)
        self.filename, self.dest, self.why = filename, dest, why


def _resolve(dataset: str, filename: str, cfg: Any) -> Path:
    path = find(dataset, filename, cfg)
    if path is not None:
        verify(dataset, path, cfg)
        return path
    kf = known_file(dataset, filename)
    dest = expected_path(dataset, filename, cfg)
    try:
        path = _extract(dataset, kf, dest, cfg) if kf.archive else _download(dataset, kf, dest, cfg)
    except _Unavailable as e:
        raise _Missing(filename, dest, str(e)) from None
    except _Missing as e:  # the archive itself is missing
        raise _Missing(filename, dest, f"nor its archive {e.filename} at {e.dest}; {e.why}") from None
    verify(dataset, path, cfg)
    return path


def missing_error(
    dataset: str, filename: str, dest: Path, why: str = "", alternatives: str = ""
) -> ConfigError:
    """The one-line error for a file that is not there (and could not be fetched)."""
    alt = f" (or {alternatives})" if alternatives else ""
    why = f" ({why})" if why else ""
    return config_error(
        dataset, f"missing file {filename}{alt}; expected at {dest}; set dataset.root or {DATA_ENV}{why}"
    )


#: The paths resolved while :func:`recording` is active (a loader's files, for the run's data identity).
_READ: list[Path] | None = None


@contextlib.contextmanager
def recording():
    """Collect the paths :func:`resolve` and :func:`resolve_any` hand out inside the block."""
    global _READ
    outer, _READ = _READ, []
    try:
        yield _READ
    finally:
        inner, _READ = _READ, outer
        if outer is not None:
            outer.extend(inner)


def _record(paths: list[Path]) -> list[Path]:
    if _READ is not None:
        _READ.extend(paths)
    return paths


def data_files(paths: list[Path]) -> dict[str, str]:
    """``{path: md5}`` of the files a loader read (a folder: ``"folder"``): what the data was."""
    return {str(Path(p).absolute()): ("folder" if Path(p).is_dir() else md5sum(p)) for p in paths}


def contents_identity(files: dict[str, str]) -> str:
    """The identity of the data a loader read (:func:`data_files`): a hash of each file's name and md5, so
    that the same files under another data root are the same data, and any changed byte is other data."""
    pairs = sorted((Path(p).name, md5) for p, md5 in files.items())
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()[:16]


def resolve(dataset_name: str, filename: str, cfg: Any = None) -> Path:
    """The verified path of ``filename`` of ``dataset_name``, downloading it if need be.

    A present file is checked against its published md5 (see :func:`verify`). A missing one is
    downloaded from the publisher (or extracted from its archive, itself resolved the same way)
    and checked. When that is impossible: ``ConfigError("dataset=mnist: missing file
    train-images-idx3-ubyte.gz; expected at /path/...; set dataset.root or HDIST_DATA (why)")``.
    """
    try:
        return _record([_resolve(dataset_name, filename, cfg)])[0]
    except _Missing as e:
        raise missing_error(dataset_name, e.filename, e.dest, e.why) from None


def resolve_any(dataset: str, options: list[tuple[str, ...]], cfg: Any = None) -> list[Path]:
    """Resolve the first alternative whose files are all present; else fetch the first one.

    ``options`` is a list of alternatives, each a tuple of file names that together provide the
    data (e.g. ``[("ijcnn1.tr.bz2", "ijcnn1.val.bz2"), ("ijcnn1.bz2",)]``).
    """
    for opt in options:
        if all(find(dataset, f, cfg) is not None for f in opt):
            return [resolve(dataset, f, cfg) for f in opt]
    try:
        return _record([_resolve(dataset, f, cfg) for f in options[0]])
    except _Missing as e:
        others = " or ".join("+".join(o) for o in options[1:])
        raise missing_error(dataset, e.filename, e.dest, e.why, others) from None


# ---------------------------------------------------------------------------------------------
# config helpers shared by the loaders


def cfg_raw(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` when the key is there (even if null), else ``default``."""
    if cfg is None:
        return default
    try:
        return cfg[key] if key in cfg else default
    except TypeError:
        return getattr(cfg, key, default)


def opt_count(cfg: Any, key: str, dataset: str, default: int | None = None) -> int | None:
    """A sample count from the config: a positive integer, or None (= all). An explicit null
    means all; a missing key means ``default``."""
    v = cfg_raw(cfg, key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise config_error(dataset, f"{key}={v!r} is not allowed; expected a positive integer or null (all)")
    try:
        n = int(v)
        ok = n >= 1 and float(v) == n
    except ValueError:
        ok = False
    if not ok:
        raise config_error(dataset, f"{key}={v} is not allowed; expected a positive integer or null (all)")
    return n


def opt_fraction(cfg: Any, key: str, dataset: str, default: float) -> float:
    v = cfg_get(cfg, key, default)
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = -1.0
    if not 0.0 < f < 1.0:
        raise config_error(dataset, f"{key}={v} is not allowed; expected a fraction strictly between 0 and 1")
    return f


def first_n(n_avail: int, n: int | None, key: str, dataset: str) -> int:
    """How many samples to take: ``n``, or all when None or when ``n`` is more than there are.

    (Sizes usually come from the scale, ``n_train: ${oc.select:scale.n_train,null}``, so a
    small dataset simply gives all it has.)
    """
    return n_avail if n is None else min(n, n_avail)
