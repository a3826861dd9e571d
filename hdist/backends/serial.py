"""serial: one rank in the calling process, the exact reference for every other backend."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from hdist.devices import cfg_device
from hdist.metrics import MetricsLogger
from hdist.progress import make_progress
from hdist.runtime import timed_comm, wall_clock
from hdist.threads import threads_for
from hdist.types import Backend, RankCtx, RealClock, World

NAME = "serial"
FAMILIES = ("serial", "bench", "ps", "shared", "collective", "pipeline")
MAX_WORKERS = 1


class SerialComm(RealClock):
    """The communication interface for a world of one rank.

    Collectives are identities (the sum or mean over one rank is the rank's own tensor); the
    parameter store is a tensor held here, so parameter-server code runs unchanged with one
    worker; point-to-point calls have no peer and say so.
    """

    has_server = False
    shared_memory = True

    def __init__(self) -> None:
        self.rank, self.world_size = 0, 1
        self.n_workers, self.worker_index = 1, 0
        self._x: torch.Tensor | None = None
        self._version = 0

    def barrier(self) -> None:
        return None

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> None:
        return None

    def allreduce(self, tensor: torch.Tensor, op: str = "sum") -> None:
        if op not in ("sum", "mean"):
            raise ValueError(f"allreduce op {op!r}: expected sum or mean")

    def send(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> None:
        raise RuntimeError(f"send to rank {dst}: a serial run has no other rank")

    def recv(self, tensor: torch.Tensor, src: int | None = None, tag: int = 0) -> int:
        raise RuntimeError(f"recv from rank {src}: a serial run has no other rank")

    def ps_init(self, x0: torch.Tensor) -> None:
        self._x = x0.detach().clone().view(-1)
        self._version = 0

    def ps_version(self) -> int:
        return self._version

    def pull(self, out: torch.Tensor, consistent: bool = True) -> int:
        out.copy_(self._x)
        return self._version

    def push(self, delta: torch.Tensor, version: int, consistent: bool = True, donate: bool = False) -> int:
        # One worker: nothing else updates x, so the staleness is 0.
        self._x.add_(delta)
        self._version += 1
        return self._version - 1 - version

    def push_pull(self, delta: torch.Tensor, version: int, out: torch.Tensor) -> tuple[int, int]:
        st = self.push(delta, version)
        return st, self.pull(out)

    def serve(self, on_apply=None) -> None:
        raise RuntimeError("serve: a serial run has no server rank")

    def ps_done(self) -> None:
        return None


def launch(run_dir: Path, cfg, rank_fn: Callable[[RankCtx], None], world: World, run_id: str = "",
           n_params: int = 0) -> None:
    # world.ranks is 1: the one rank plays the server and every stage of a pipeline (hdist.algos._pipeline).
    device = cfg_device(cfg, 0)
    log = MetricsLogger(run_dir, run_id, rank=0, role="worker", flush_s=cfg.log.flush_s, clock=wall_clock(device))
    progress = make_progress(cfg.progress, desc=f"{cfg.stem}/{run_id}")
    ctx = RankCtx(cfg=cfg, rank=0, world_size=1, comm=timed_comm(SerialComm(), cfg, log, device), log=log,
                  run_dir=Path(run_dir), progress=progress, device=device)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads_for(cfg, 1, "threads"))
    try:
        rank_fn(ctx)
    finally:
        torch.set_num_threads(old_threads)
        # Always leave complete files: on success, error, divergence or interrupt.
        progress.close()
        log.close()


class SerialBackend(Backend):
    name, families, max_workers, max_ranks = NAME, FAMILIES, MAX_WORKERS, 1

    def launch(self, run_dir, cfg, rank_fn, world, run_id="", n_params=0) -> None:
        launch(run_dir, cfg, rank_fn, world, run_id, n_params)


BACKEND = SerialBackend()
