"""``hdist calibrate``: measure this machine, write a topology file the sim backend can use.

Measured: the real time of one training step (forward, backward, SGD update) of the chosen
model at the chosen batch size and at twice that batch size, fitted as
``per_step_s + per_sample_s * batch``; and the memory bandwidth of a large tensor copy
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


def step_time(cfg, batch: int, steps: int, reps: int) -> float:
    """Median seconds per training step at ``batch`` (one warm-up step first)."""
    problem = build_problem(cfg)
    model = problem.build_model(0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    train = problem.data.train
    idx = torch.arange(min(batch, len(train)))
    x, y = train[idx]

    def step():
        opt.zero_grad()
        problem.data_loss(model(x), y).backward()
        opt.step()

    step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def memory_bandwidth(nbytes: int = 64 << 20, reps: int = 5) -> float:
    a = torch.empty(nbytes // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        b.copy_(a)
        times.append(time.perf_counter() - t0)
    # A copy reads and writes every byte.
    return 2 * nbytes / statistics.median(times)


def calibrate(cfg, steps: int = 20, reps: int = 5) -> dict:
    b = int(cfg.algo.batch_size)
    t1 = step_time(cfg, b, steps, reps)
    t2 = step_time(cfg, 2 * b, steps, reps)
    per_sample = max(0.0, (t2 - t1) / b)
    per_step = max(0.0, t1 - per_sample * b)
    return {"per_step_s": per_step, "per_sample_s": per_sample, "memory_Bps": memory_bandwidth(),
            "step_s_at_batch": t1, "batch": b, "threads": torch.get_num_threads()}


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
