"""What every in-machine backend does for one rank: logger, progress, context, error capture."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from hdist.metrics import MetricsLogger
from hdist.progress import QuietProgress, make_progress
from hdist.rundir import WriteFailed
from hdist.runtime import timed_comm, wall_clock
from hdist.types import Diverged, PeerFailed, RankCtx, ps_torch_dtype


def threads_per_rank(cfg, ranks: int) -> int:
    """Torch intra-op threads for each rank: the configured number, or the rule of :mod:`hdist.threads`."""
    from hdist.threads import threads_for

    return threads_for(cfg, ranks)


def make_ctx(cfg, run_dir: Path, run_id: str, rank: int, world: int, comm, role: str = "worker",
             local_index: int | None = None) -> RankCtx:
    """``local_index``: the rank's index on its machine, which picks its GPU (:mod:`hdist.devices`); the
    rank itself when hdist started every rank here, the launcher's local rank when a launcher did. The
    clocks of the rank's accounts synchronize that device."""
    from hdist.devices import cfg_device

    device = cfg_device(cfg, rank if local_index is None else local_index)
    log = MetricsLogger(run_dir, run_id, rank=rank, role=role, flush_s=cfg.log.flush_s, clock=wall_clock(device))
    progress = make_progress(cfg.progress, desc=f"{cfg.stem}/{run_id}") if rank == 0 else QuietProgress()
    return RankCtx(cfg=cfg, rank=rank, world_size=world, comm=timed_comm(comm, cfg, log, device), log=log,
                   run_dir=Path(run_dir), progress=progress, device=device)


def run_rank(ctx: RankCtx, rank_fn: Callable[[RankCtx], None]) -> None:
    """Run one rank; the logger and progress are always closed (complete files on any exit).

    SIGTERM is deferred while the files close: a peer that fails asks the others to close theirs
    with it, and a second request must not cut the first close short (its rows would be lost)."""
    try:
        rank_fn(ctx)
    finally:
        with _sigterm_deferred():
            ctx.progress.close()
            ctx.log.close()


@contextlib.contextmanager
def _sigterm_deferred():
    """SIGTERM waits until the block ends. In the main thread the handler only records it (blocking
    the signal there is not enough: the kernel hands a process-directed signal to any thread that
    does not block it, a torch or watchdog thread, and Python then runs the handler in the main
    thread all the same); it is raised again after the block. A rank thread (thread backend) blocks
    it, so that it stays pending for the main thread."""
    if threading.current_thread() is not threading.main_thread():
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            yield
        finally:
            if signal.SIGTERM not in old_mask:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return
    pending: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
        if pending:
            signal.raise_signal(signal.SIGTERM)


def scratch_slot(n_params: int) -> int:
    """Elements in each rank's collective slot: the model fits in one pass, small tensors too.

    Even, so that a float32 slot reinterpreted as float64 (``LocalComm``'s collectives on float64
    tensors) is whole slot/2 elements."""
    slot = max(1 << 12, int(n_params)) if n_params else 1 << 16
    return slot + slot % 2


def alloc_state_tensors(n_params: int, world: int, slot: int, ps_dtype: str = "float32"):
    """The shared x (in the algorithm's declared ``ps_dtype``, :attr:`hdist.types.World.ps_dtype`), the
    per-rank update counts and the collective slots of a shared-memory backend."""
    d = max(1, int(n_params))
    return (torch.zeros(d, dtype=ps_torch_dtype(ps_dtype)), torch.zeros(world, dtype=torch.int64),
            torch.zeros(world, slot))


def nan_to_none(v):
    return None if isinstance(v, float) and math.isnan(v) else v


class ServerRankChecks:
    """ps_init and the argument checks of a backend whose parameter server is rank 0 (mpi, torchdist).

    Needs ``has_server``, ``rank``, ``_done`` (this worker called ps_done), ``_x``, ``_numel`` and
    ``_dtype`` (of x, set by ps_init) on the class it is mixed into, and ``BACKEND`` for messages.
    """

    BACKEND = ""

    def _need_server(self, what: str) -> None:
        if not self.has_server:
            raise RuntimeError(f"{what}: this {self.BACKEND} run has no server rank (parameter-server algorithms "
                               f"get one: their FAMILIES include 'ps')")

    def _worker_only(self, what: str) -> None:
        self._need_server(what)
        if self.rank == 0:
            raise RuntimeError(f"{what}: the server rank applies updates, it does not send any")
        if self._done:
            raise RuntimeError(f"{what}: called after ps_done")

    def ps_init(self, x0: torch.Tensor) -> None:
        """Every rank learns x's size and type; the server keeps x (a contiguous CPU copy) and makes its
        buffers (:meth:`_server_buffers`); all meet at a barrier."""
        self._need_server("ps_init")
        self._numel, self._dtype = x0.numel(), x0.dtype
        if self.rank == 0:
            self._x = x0.detach().reshape(-1).to("cpu").clone().contiguous()
            self._server_buffers()
        self._version = 0
        self._done = False
        self.barrier()

    def _server_buffers(self) -> None:
        """The server's own buffers beside x, made once by ps_init (none by default)."""

    def _server_only(self) -> None:
        """serve()'s preconditions: the server rank of a run with one, after ps_init (``_x`` set)."""
        if not (self.has_server and self.rank == 0):
            raise RuntimeError("serve: only the server rank (rank 0 of a run with a server) serves")
        if self._x is None:
            raise RuntimeError("serve: call ps_init first")

    def _check_delta(self, delta: torch.Tensor) -> None:
        if delta.numel() != self._numel or delta.dtype != self._dtype:
            raise ValueError(f"push: delta has {delta.numel()} {delta.dtype} elements; x has {self._numel} "
                             f"{self._dtype}")


# --- failures of ranks that are processes of their own (mpi, torchdist) ----------------------------


class Interrupted(BaseException):
    """SIGTERM in a rank: unwinds so that the rank's metrics files are closed complete."""


def raise_interrupted(signum, frame):
    """A SIGTERM handler: raise :class:`Interrupted` in the rank's main thread, once: while it unwinds
    (closing its files), further SIGTERMs (every failing peer sends one) are ignored."""
    signal.signal(signum, signal.SIG_IGN)
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, WriteFailed):
        return "write"
    if isinstance(exc, Diverged):
        return "diverged"
    if isinstance(exc, PeerFailed):
        return "peer"
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        return "interrupted"
    return "error"


#: A rank that cannot write its error file (a full disk) prints its report on this line instead
#: (the launcher's output reaches the parent; :func:`parse_report_line`).
REPORT_LINE = "hdist-rank-report: "


def read_errors(run_dir: Path, extra: list[dict] = ()) -> list[dict]:
    """Ranks' error reports (files, and ``extra`` ones that came by another way), real errors first,
    then in the order they happened."""
    out = list(extra)
    for f in Path(run_dir).glob("error-r*.json"):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    order = {"error": 0, "write": 0, "diverged": 0, "interrupted": 1, "peer": 2}
    return sorted(out, key=lambda e: (order.get(e.get("kind"), 0), e.get("time", 0.0)))


def parse_report_line(line: str) -> dict | None:
    """The report of a :data:`REPORT_LINE` (None for any other line)."""
    if not line.startswith(REPORT_LINE):
        return None
    try:
        return json.loads(line[len(REPORT_LINE):])
    except json.JSONDecodeError:
        return None


def record_failure(run_dir: Path, rank: int, exc: BaseException, write_status: bool) -> None:
    """The rank's error files (``error-r<rank>.json`` first: what a parent reads); with
    ``write_status`` (no parent records the run: an external world) also ``status.json`` when
    this rank's error is the first real one."""
    from hdist.metrics import atomic_write_json, atomic_write_text

    kind = failure_kind(exc)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if kind in ("diverged", "write"):
        message = first
    else:
        message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    run_dir = Path(run_dir)
    report = {"rank": rank, "kind": kind, "message": message, "time": time.time()}
    try:
        atomic_write_json(run_dir / f"error-r{rank}.json", report)
        atomic_write_text(run_dir / f"error-r{rank}.txt", f"{message}\n\n{traceback.format_exc()}")
    except WriteFailed:
        print(REPORT_LINE + json.dumps(report), file=sys.stderr, flush=True)
        return
    if write_status and read_errors(run_dir)[0].get("rank") == rank:
        status = "diverged" if kind == "diverged" else "failed"
        reason = message if kind == "diverged" else f"RuntimeError: rank {rank}: {message}"
        atomic_write_json(run_dir / "status.json", {"status": status, "reason": reason})
