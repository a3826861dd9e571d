"""One MPI rank of a run (backend=mpi).

    python -m hdist.rank_main <run_dir> <module:qualname> <run_id> <n_params> <server 0|1>

Started by the launcher that :func:`hdist.backends.mpi.launch` runs (``mpiexec -n N ...``):
reads ``<run_dir>/config.yaml``, builds an :class:`~hdist.backends.mpi.MPIComm` over
``MPI.COMM_WORLD`` and a :class:`~hdist.types.RankCtx` (rank 0 shows progress), and runs the
rank function (a module-level function, found by module and qualified name).

On any exception the rank writes ``error-r<rank>.txt`` (a one-line reason, then the
traceback) and ``error-r<rank>.json`` (rank, kind = error | diverged | peer | interrupted,
message, time), closes its metrics (complete files) and calls ``MPI_Abort`` so that no rank
waits for it; the parent reads the files and reports the first real error.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Callable

from hdist.backends import _ranks
from hdist.types import Diverged, RankCtx


def resolve(ref: str) -> Callable[[RankCtx], None]:
    """``package.module:qualname`` -> the function."""
    module, _, qualname = ref.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def record_failure(run_dir: Path, rank: int, exc: BaseException, external: bool = False) -> None:
    """The rank's error files; in an external world (no parent to do it) also status.json."""
    _ranks.record_failure(run_dir, rank, exc, write_status=external)


def run_in_world(run_dir: Path, rank_fn: Callable[[RankCtx], None] | str, run_id: str, n_params: int,
                 server: bool, cfg=None, external: bool = False) -> None:
    """Run this process's rank of the run in ``run_dir``; on failure record it and abort the world."""
    from hdist.backends.mpi import _mpi

    MPI = _mpi()
    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    run_dir = Path(run_dir)
    main_thread = _is_main_thread()
    old = signal.signal(signal.SIGTERM, _ranks.raise_interrupted) if main_thread and not external else None
    try:
        import torch
        from omegaconf import OmegaConf

        from hdist.backends._ranks import make_ctx, run_rank, threads_per_rank
        from hdist.backends.mpi import MPIComm

        if not external:
            (run_dir / f"rank-r{rank}.pid").write_text(f"{os.getpid()}\n")
        if cfg is None:
            cfg = OmegaConf.load(run_dir / "config.yaml")
        fn = resolve(rank_fn) if isinstance(rank_fn, str) else rank_fn
        torch.set_num_threads(threads_per_rank(cfg, size))
        comm = MPIComm(world, has_server=server, timeout_s=float(cfg.backend.timeout_s))
        role = "server" if server and rank == 0 else "worker"
        ctx = make_ctx(cfg, run_dir, run_id, rank, size, comm, role=role)
        run_rank(ctx, fn)
        comm.close()
    except BaseException as e:  # noqa: B036 - every way out must end the whole world
        try:
            record_failure(run_dir, rank, e, external=external)
        except BaseException:
            traceback.print_exc()
        sys.stderr.flush()
        if isinstance(e, _ranks.Interrupted):
            # Every rank got the signal (the parent stops the whole job): no abort cascade, and
            # no MPI_Finalize, which would wait for ranks that are gone.
            os._exit(128 + signal.SIGTERM)
        world.Abort(4 if isinstance(e, Diverged) else 1)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 5:
        print("usage: python -m hdist.rank_main RUN_DIR MODULE:QUALNAME RUN_ID N_PARAMS SERVER(0|1)", file=sys.stderr)
        raise SystemExit(2)
    run_dir, ref, run_id, n_params, server = args
    _die_with_parent()  # a rank never outlives the launcher's proxy that started it
    run_in_world(Path(run_dir), ref, "" if run_id == "-" else run_id, int(n_params), server == "1")


if __name__ == "__main__":
    main()
