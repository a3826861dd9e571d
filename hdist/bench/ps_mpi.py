"""Benchmark ``bench-ps-mpi``: parameter-server updates/s of hdist's MPI backend vs raw mpi4py.

Both sides run under one ``mpiexec`` launch (``backend=mpi`` with a server rank: rank 0 serves,
ranks 1..P are workers), on vectors of the model's size (``model=mlp``: 79,510 float32), and
alternate side by side for ``algo.reps`` repetitions (the side that goes first alternates too):

- **hdist**: the server runs :meth:`~hdist.backends.mpi.MPIComm.serve` with an ``on_apply``
  callback (it counts); each worker, per update, does what AsySG-con does minus the gradient:
  ``comm.pull(x)`` then ``comm.push(delta, version)`` with a precomputed delta.
- **raw**: the minimal loop one would write with mpi4py: the server ``Recv``s from any source
  and any tag into one buffer, adds a push to x, ``Send``s x back on a pull request; a worker
  sends an empty pull request, ``Recv``s x, ``Send``s its delta.

``updates_per_s`` = updates applied by the server / seconds from a common barrier until the last
worker is done, measured on the server. Rows (server rank, ``metrics-r0.parquet``):
``kind=comm``, ``metric=updates_per_s`` (a benchmark metric: server updates per second),
``role`` = hdist | raw, ``step`` = repetition index.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hdist.types import AlgoSpec, ConfigError

FAMILIES = ("ps",)

_PULL, _PUSH, _DONE, _X = 1, 2, 3, 4


def _dim(cfg) -> int:
    from hdist.models import build_model, n_params

    mcfg = {k: v for k, v in dict(cfg.model).items() if k != "name"}
    return n_params(build_model(cfg.model.name, **mcfg))


def check(cfg) -> dict:
    """Facts for meta.json; no data is loaded."""
    return {"n_params": _dim(cfg), "data": "none (benchmark: precomputed updates)"}


def validate(cfg) -> None:
    if cfg.backend.name != "mpi":
        raise ConfigError(f"backend={cfg.backend.name}: algo=bench_ps_mpi compares against raw mpi4py; allowed "
                          f"backends: mpi")
    for key in ("steps", "warmup_steps", "reps"):
        v = cfg.algo.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "warmup_steps" else 1):
            raise ConfigError(f"algo.{key}={v!r}: not allowed; expected an integer >= "
                              f"{0 if key == 'warmup_steps' else 1}")


def time_hdist(comm, d: int, steps: int) -> float | None:
    """One repetition of hdist's server; updates/s on the server, None on workers."""
    # Host buffers on both sides: the raw mpi4py loop it is compared with sends numpy arrays.
    comm.ps_init(torch.zeros(d, device="cpu"))
    if comm.worker_index is None:
        applied = [0]

        def on_apply(version: int, x: torch.Tensor, staleness: int) -> None:
            applied[0] += 1

        comm.barrier()
        t0 = time.perf_counter()
        comm.serve(on_apply)
        return applied[0] / (time.perf_counter() - t0)
    out = torch.empty(d, device="cpu")
    delta = torch.full((d,), 1e-7, device="cpu")
    comm.barrier()
    for _ in range(steps):
        version = comm.pull(out)
        comm.push(delta, version)
    comm.ps_done()
    return None


def time_raw(raw, MPI, d: int, steps: int) -> float | None:
    """One repetition of the raw mpi4py server; updates/s on the server, None on workers."""
    empty = np.empty(0, np.float32)
    if raw.Get_rank() == 0:
        x = np.zeros(d, np.float32)
        buf = np.empty(d, np.float32)
        st = MPI.Status()
        active, applied = raw.Get_size() - 1, 0
        raw.Barrier()
        t0 = time.perf_counter()
        while active:
            raw.Recv(buf, MPI.ANY_SOURCE, MPI.ANY_TAG, st)
            tag = st.Get_tag()
            if tag == _PUSH:
                np.add(x, buf, out=x)
                applied += 1
            elif tag == _PULL:
                raw.Send(x, st.Get_source(), _X)
            else:
                active -= 1
        return applied / (time.perf_counter() - t0)
    out = np.empty(d, np.float32)
    delta = np.full(d, 1e-7, np.float32)
    raw.Barrier()
    for _ in range(steps):
        raw.Send(empty, 0, _PULL)
        raw.Recv(out, 0, _X)
        raw.Send(delta, 0, _PUSH)
    raw.Send(empty, 0, _DONE)
    return None


def run(ctx) -> None:
    from mpi4py import MPI

    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    if not comm.has_server:
        raise RuntimeError("bench_ps_mpi: needs a server rank (backend=mpi launches one for FAMILIES ('ps',))")
    d = _dim(cfg)
    steps, reps = int(cfg.algo.steps), int(cfg.algo.reps)
    raw = MPI.COMM_WORLD.Dup()
    try:
        if int(cfg.algo.warmup_steps):
            time_hdist(comm, d, int(cfg.algo.warmup_steps))
            time_raw(raw, MPI, d, int(cfg.algo.warmup_steps))
        ctx.progress.start(reps, unit="rep")
        for rep in range(reps):
            log.step = rep
            # Alternate which side goes first so that drifts in machine load hit both alike.
            sides = [("hdist", lambda: time_hdist(comm, d, steps)), ("raw", lambda: time_raw(raw, MPI, d, steps))]
            for role, fn in (sides if rep % 2 == 0 else sides[::-1]):
                value = fn()
                if value is not None:
                    log.role = role
                    log.log("comm", "updates_per_s", value)
            log.role = "server" if comm.worker_index is None else "worker"
            ctx.progress.update(rep + 1)
    finally:
        raw.Free()


SPEC = AlgoSpec(FAMILIES, run, validate=validate, check=check)
