"""Benchmark ``bench-data-models``: loader throughput and per-step model time.

Loaders: MNIST (idx .gz) and ijcnn1 (svmlight .bz2) are timed on files of the real formats and
sizes that this benchmark writes itself (deterministic content), so the number means the same
on every machine; when the data root holds the real files, they are timed too (``role`` ends
in ``-real``). Models: one SGD training step (forward, backward, update) at ``batch_size`` and
the model's default input shape.

Rows: ``samples_per_s`` with ``role`` = the loader, ``step_s`` with ``role`` = the model;
``step`` = repetition index.
"""

from __future__ import annotations

import bz2
import gzip
import statistics
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hdist import data as data_mod
from hdist import devices
from hdist.models import build_model
from hdist.types import AlgoSpec, ConfigError

FAMILIES = ("bench",)


def write_mnist(folder: Path, n: int, seed: int = 0) -> None:
    """idx files with MNIST's names and headers (random pixels, balanced labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n), ("t10k", max(1, n // 6))):
        img = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        lab = (np.arange(count) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(struct.pack(">IIII", 2051, count, 28, 28) + img.tobytes(), compresslevel=6))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(struct.pack(">II", 2049, count) + lab.tobytes(), compresslevel=6))


def write_svmlight(path: Path, n: int, d: int = 22, density: float = 0.6, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        cols = np.flatnonzero(rng.random(d) < density) + 1
        vals = rng.random(len(cols))
        feats = " ".join(f"{c}:{v:.6g}" for c, v in zip(cols, vals))
        lines.append(f"{1 if i % 10 == 0 else -1} {feats}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))


def time_loader(name: str, root: Path | None, extra: dict, reps: int) -> list[float]:
    cfg = {"name": name, "root": str(root) if root else None, "verify": False, "download": False, **extra}
    out = []
    for _ in range(reps):
        data_mod.clear_caches()  # every repetition parses the files again
        t0 = time.perf_counter()
        b = data_mod.load(cfg, input_shape=(784,) if name == "mnist" else (22,), num_classes=10 if name == "mnist"
                          else 2, seed=0)
        dt = time.perf_counter() - t0
        out.append((len(b.train) + len(b.test)) / dt)
    return out


def time_model(name: str, batch: int, steps: int, device: torch.device | str = "cpu") -> float:
    from hdist.models import get_spec

    device = torch.device(device)
    with torch.device("cpu"):
        model = build_model(name).to(device)
    shape = get_spec(name).input_shape
    k = get_spec(name).num_classes
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, *shape, generator=g, device="cpu").to(device)
    y = torch.randint(0, k, (batch,), generator=g, device="cpu").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up: allocator, kernels
    devices.synchronize(device)  # both clock reads wait for the GPU's queue (nothing on the CPU)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    devices.synchronize(device)
    return (time.perf_counter() - t0) / steps


def run(ctx) -> None:
    cfg, log = ctx.cfg, ctx.log
    a = cfg.algo
    threads = torch.get_num_threads()
    torch.set_num_threads(int(a.threads))
    reps = int(a.reps)
    ctx.progress.start(2 + len(a.models), unit="part")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_mnist(root / "mnist", int(a.n_mnist))
            write_svmlight(root / "libsvm" / "ijcnn1.bz2", int(a.n_libsvm))
            write_svmlight(root / "libsvm" / "ijcnn1.t.bz2", max(1, int(a.n_libsvm) // 5), seed=1)
            jobs = [("mnist", root, {}), ("ijcnn1", root, {})]
            for name, r, extra in jobs:
                for rep, v in enumerate(time_loader(name, r, extra, reps)):
                    log.step, log.role = rep, name
                    log.log("train", "samples_per_s", v)
                ctx.progress.update(len(jobs))
            # The real files, when the data root has them (never downloaded here).
            for name, extra in (("mnist", {}), ("ijcnn1", {})):
                try:
                    vals = time_loader(name, None, extra, reps)
                except ConfigError:
                    continue
                for rep, v in enumerate(vals):
                    log.step, log.role = rep, f"{name}-real"
                    log.log("train", "samples_per_s", v)
        for i, m in enumerate(a.models):
            for rep in range(reps):
                log.step, log.role = rep, str(m)
                log.log("train", "step_s", time_model(str(m), int(a.batch_size), int(a.steps), ctx.device))
            ctx.progress.update(2 + i + 1)
        log.role = "bench"
    finally:
        torch.set_num_threads(threads)


def median(values) -> float:
    return statistics.median(values)


SPEC = AlgoSpec(FAMILIES, run)
