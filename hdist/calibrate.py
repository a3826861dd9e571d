"""``hdist calibrate``: measure this machine, write a topology file the sim backend can use.

Measured: the real time of one training step (forward, backward, SGD update) of the chosen
model at the chosen batch size and at twice that batch size, fitted as
``per_step_s + per_sample_s * batch``, with the torch threads one rank of the configured
backend and worker count would get (``backend=process topology.workers=2`` on 2 cores: 1
thread each; serial and sim: this process's default); and the memory bandwidth of a large tensor copy
(``memory_Bps``, the cost of shared-memory reads and writes). The new file is the current
topology's YAML with those values replaced (comments kept) and a header saying what was
measured, where and when.
"""

from __future__ import annotations

import datetime as _dt
import re
import socket
import statistics
import time
from pathlib import Path

import torch

from hdist.config import CONF_DIR
from hdist.metrics import atomic_write_text
from hdist.problems import build_problem


def step_times(cfg, batches: list[int], steps: int, reps: int) -> list[float]:
    """Median seconds per training step at each of ``batches`` (one warm-up step each first).

    The batch sizes are timed in alternation, repetition by repetition, so that a change in the
    machine's load during the measurement hits all of them alike rather than biasing the fit.
    """
    problem = build_problem(cfg)
    model = problem.build_model(0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    train = problem.data.train

    def make_step(batch: int):
        x, y = train[torch.arange(min(batch, len(train)))]

        def step():
            opt.zero_grad()
            problem.data_loss(model(x), y).backward()
            opt.step()
        return step

    fns = [make_step(b) for b in batches]
    times: list[list[float]] = [[] for _ in batches]
    for fn in fns:
        fn()
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            ts.append((time.perf_counter() - t0) / steps)
    return [statistics.median(ts) for ts in times]


def memory_bandwidth(nbytes: int = 64 << 20, reps: int = 5) -> float:
    """Bytes per second of copying an ``nbytes`` vector (the model's: what a pull or push moves).

    Timed over enough copies for at least ~1 ms per repetition, so small vectors are measured
    at the speed they are copied at (from cache), not at the clock's resolution."""
    a = torch.empty(max(1, nbytes // 4))
    b = torch.empty_like(a)
    b.copy_(a)
    inner = max(1, (1 << 24) // max(1, nbytes))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            b.copy_(a)
        times.append((time.perf_counter() - t0) / inner)
    # A copy reads and writes every byte.
    return 2 * a.numel() * 4 / statistics.median(times)


def rank_threads(cfg) -> int:
    """Torch threads of one rank of ``cfg``'s backend: what the rank's compute is timed with."""
    from hdist.algos import get_algo
    from hdist.backends._ranks import threads_per_rank

    if "threads_per_rank" not in cfg.backend:
        return int(cfg.backend.get("threads") or torch.get_num_threads())
    server = cfg.backend.name == "mpi" and "ps" in get_algo(cfg.algo.name).FAMILIES
    return threads_per_rank(cfg, int(cfg.topology.workers) + (1 if server else 0))


def calibrate(cfg, steps: int = 20, reps: int = 5) -> dict:
    b = int(cfg.algo.batch_size)
    old = torch.get_num_threads()
    torch.set_num_threads(rank_threads(cfg))
    try:
        t1, t2 = step_times(cfg, [b, 2 * b], steps, reps)
        threads = torch.get_num_threads()
        n_params = sum(p.numel() for p in build_problem(cfg).build_model(0).parameters())
        memory = memory_bandwidth(4 * n_params)
    finally:
        torch.set_num_threads(old)
    per_sample = max(0.0, (t2 - t1) / b)
    per_step = max(0.0, t1 - per_sample * b)
    return {"per_step_s": per_step, "per_sample_s": per_sample, "memory_Bps": memory,
            "step_s_at_batch": t1, "batch": b, "threads": threads}


def _set(text: str, key: str, value: str) -> str:
    pat = re.compile(rf"^(\s*{re.escape(key)}:\s*)([^#\n]*?)(\s*#.*)?$", re.M)
    m = pat.search(text)
    if not m:
        raise KeyError(key)
    return text[:m.start(2)] + value + text[m.end(2):]


def write_topology(cfg, measured: dict, out: str) -> Path:
    src = CONF_DIR / "topology" / f"{cfg.topology.name}.yaml"
    text = src.read_text()
    path = Path(out) if (out.endswith(".yaml") or "/" in out) else CONF_DIR / "topology" / f"{out}.yaml"
    name = path.stem
    body = text.split("\n", 1)[1] if text.startswith("#") else text
    body = _set(body, "name", name)
    body = _set(body, "per_step_s", f"{measured['per_step_s']:.4g}")
    body = _set(body, "per_sample_s", f"{measured['per_sample_s']:.4g}")
    body = _set(body, "memory_Bps", f"{measured['memory_Bps']:.4g}")
    header = (f"# Calibrated by `hdist calibrate` on {socket.gethostname()} at "
              f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}: model {cfg.model.name}, batch "
              f"{measured['batch']} ({measured['step_s_at_batch'] * 1e3:.3f} ms/step, {measured['threads']} "
              f"thread(s)), from topology {cfg.topology.name}.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, header + body)
    return path
