"""The few protocols every part of hdist meets in.

Algorithms are written against :class:`RankCtx` and :class:`Comm`; backends implement
:class:`Comm` and :class:`Backend`. Neither side imports the other: an algorithm is looked up
by name in :mod:`hdist.algos`, a backend in :mod:`hdist.backends`, and :mod:`hdist.launch`
hands the one to the other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch


class ConfigError(ValueError):
    """Bad user input, found before anything runs: one line, exit code 2, nothing written."""


class PeerFailed(RuntimeError):
    """Another rank failed, died or timed out: this rank stops too (each backend raises its own subclass)."""


class Diverged(RuntimeError):
    """The loss became NaN or inf: the run ends with status ``diverged`` (a result, not a crash)."""


@runtime_checkable
class Comm(Protocol):
    """Communication between the ranks of one run: the one interface algorithms are written against.

    Tensors are flat, contiguous float32/float64 ``torch.Tensor`` buffers. Every call blocks
    until done; blocking waits carry a timeout (``backend.timeout_s``) and notice a failed peer,
    so that a dead rank ends the run instead of hanging it.

    Ranks and roles: ``world_size`` ranks in all. Parameter-server algorithms on a backend
    with a server rank (``has_server``: MPI, sim) have rank 0 as the server and ranks
    1..world_size-1 as workers; on shared memory (thread, process) every rank is a worker and
    the shared vector itself is the "server". ``n_workers`` and ``worker_index`` (0-based,
    None on the server) hide the difference.
    """

    rank: int
    world_size: int
    n_workers: int
    worker_index: int | None
    has_server: bool  # a dedicated server rank exists (rank 0)
    shared_memory: bool  # workers can read and write the shared vector lock-free (inconsistent reads)

    # --- collectives (every rank calls) -------------------------------------------------------
    def barrier(self) -> None: ...

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> None:
        """In place: every rank ends with ``root``'s values."""

    def allreduce(self, tensor: torch.Tensor, op: str = "sum") -> None:
        """In place: ``op`` is ``sum`` or ``mean`` over all ranks."""

    # --- point to point -----------------------------------------------------------------------
    def send(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> None: ...

    def recv(self, tensor: torch.Tensor, src: int | None = None, tag: int = 0) -> int:
        """Fill ``tensor`` from ``src`` (any rank when None); return the sender's rank."""

    # --- parameter server / shared state ------------------------------------------------------
    def ps_init(self, x0: torch.Tensor) -> None:
        """Collective: the shared vector x starts as ``x0`` (rank 0's, or the server's); version 0."""

    def pull(self, out: torch.Tensor, consistent: bool = True) -> int:
        """Copy x into ``out``; return the version read (updates applied so far). On a server
        rank it copies the server's own x.

        consistent: a whole-vector copy no update interleaves with (lock / server message).
        inconsistent (shared memory only): a lock-free copy that concurrent updates may tear.
        """

    def push(self, delta: torch.Tensor, version: int, consistent: bool = True, donate: bool = False) -> int | None:
        """Apply ``x += delta``, computed from x at ``version``; return its staleness.

        Staleness = updates applied by others between that read and this apply. Consistent:
        under the lock / by the server, one update at a time; inconsistent: lock-free writes.
        Where a server applies the update later (``has_server``), it returns None and the
        server reports the staleness to ``serve``'s ``on_apply``. ``donate``: the caller hands
        ``delta`` over and never reads or writes it again, so a backend that applies it later
        may keep it instead of copying it (the sim does).
        """

    def push_pull(self, delta: torch.Tensor, version: int, out: torch.Tensor) -> tuple[int, int]:
        """``push`` then ``pull`` in one round trip: returns (staleness, version read)."""

    def ps_version(self) -> int:
        """Updates applied to x so far (a lock-free read: it may be a little behind)."""

    def serve(self, on_apply: Callable[[int, torch.Tensor, int], None] | None = None) -> None:
        """Server rank only: apply workers' pushes and answer pulls until every worker called
        ``ps_done``; ``on_apply(version, x, staleness)`` runs after each applied update."""

    def ps_done(self) -> None:
        """This worker sends no more pushes or pulls."""

    # --- time ---------------------------------------------------------------------------------
    virtual_time: bool  # True on the sim backend: time is modelled, not measured

    def now(self) -> float:
        """Seconds on this rank's clock: real (perf_counter) or virtual (sim)."""

    def compute_done(self, samples: int, work: float = 1.0) -> None:
        """The rank just computed on ``samples`` samples. Real backends: nothing (the time has
        passed by itself). Sim: the rank's virtual clock advances by the cost model's time
        times ``work`` (the fraction of a step: a pipeline stage's forward or backward)."""

    def sleep(self, seconds: float) -> None:
        """Hold this rank for ``seconds`` (a straggler's delay): real sleep, or virtual."""


class RealClock:
    """The time part of :class:`Comm` for backends that run in real time."""

    virtual_time = False

    def now(self) -> float:
        return time.perf_counter()

    def compute_done(self, samples: int, work: float = 1.0) -> None:
        return None

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class RankCtx:
    """What one rank of a run sees: who it is, how to talk, where to log, and its config."""

    cfg: Any  # the resolved run config (an OmegaConf DictConfig)
    rank: int
    world_size: int
    comm: Comm
    log: Any  # hdist.metrics.MetricsLogger
    run_dir: Path
    role: str = "worker"  # worker | server | stage
    progress: Any = None  # hdist.progress.Progress or None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extra: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """Every rank's seed derives from (run seed, rank): reproducible and distinct."""
        return seed_for(self.cfg.seed, self.rank)

    def worker_seed(self, worker_index: int | None = None) -> int:
        """Seed of a data-parallel worker's sample order: (run seed, worker index), so that worker
        0 of any backend draws what the serial run draws."""
        w = self.comm.worker_index if worker_index is None else worker_index
        return seed_for(self.cfg.seed, w or 0)


def seed_for(seed: int, index: int) -> int:
    return int(seed) * 1_000_003 + int(index)


class Algorithm(Protocol):
    """One paper algorithm: ``run`` executes one rank's part of it."""

    name: str
    families: tuple[str, ...]  # serial | ps | shared | collective | pipeline

    def run(self, ctx: RankCtx) -> None: ...


class Backend(Protocol):
    """Starts the ranks of a run and waits for them."""

    name: str
    families: tuple[str, ...]

    def launch(self, run_dir: Path, cfg: Any, rank_fn: Callable[[RankCtx], None]) -> None: ...
