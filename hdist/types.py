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
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch only for annotations: the small verbs (ls, data, report, --help) import no torch
    import torch


class ConfigError(ValueError):
    """Bad user input, found before anything runs: one line, exit code 2, nothing written."""


class PeerFailed(RuntimeError):
    """Another rank failed, died or timed out: this rank stops too (each backend raises its own subclass)."""


class Diverged(RuntimeError):
    """The loss became NaN or inf: the run ends with status ``diverged`` (a result, not a crash)."""


def _cpu():
    import torch

    return torch.device("cpu")


@runtime_checkable
class Comm(Protocol):
    """Communication between the ranks of one run: the one interface algorithms are written against.

    Tensors are flat, contiguous float32/float64 ``torch.Tensor`` buffers, on the rank's device
    (``RankCtx.device``) or the CPU; results are written back into them. Every call blocks
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


class RankComm(Comm, Protocol):
    """What an algorithm's ``ctx.comm`` is: the backend's :class:`Comm` wrapped by the runtime
    (:class:`hdist.runtime.TimedComm`), which times every call into the rank's ``comm_s`` and owns
    the compute/wait accounts and the stragglers, so that an algorithm's loop reads like its box."""

    def compute(self, samples: int | None = None, work: float = 1.0, worker: int | None = None) -> Any:
        """A context manager around one block of computation: timed into ``compute_s``; at its end
        the backend's ``compute_done`` (virtual time on the sim) and, on real backends, the
        straggler model's delay (``straggle_s``, into ``wait_s``)."""

    def mark_step(self) -> None:
        """One step ends here: the step's spans are added to the totals."""

    def restart_timing(self) -> None:
        """Zero the accounts at the run's common clock start."""

    def timing(self) -> dict[str, float]:
        """``{"compute_s", "comm_s", "wait_s"}`` so far."""

    def elapsed_s(self) -> float:
        """Seconds on this rank's clock since :meth:`restart_timing` (``train_s``)."""

    def untimed(self) -> Any:
        """A context manager: communication that belongs to no step (an evaluation's sync)."""

    def log_straggle_total(self) -> None:
        """Log ``straggle_s_total`` when this rank straggled."""


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
    comm: RankComm
    log: Any  # hdist.metrics.MetricsLogger
    run_dir: Path
    role: str = "worker"  # worker | server | stage
    progress: Any = None  # hdist.progress.Progress or None
    device: torch.device = field(default_factory=lambda: _cpu())
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


#: The dtypes a parameter server's x may be declared in (:attr:`AlgoSpec.ps_dtype`), by torch's name.
PS_DTYPES = ("float32", "float64")

#: ``algo.precision`` values (:mod:`hdist.precision`); an algorithm declares the ones it supports
#: (:attr:`AlgoSpec.precisions`).
PRECISIONS = ("fp32", "bf16", "fp16")


def ps_torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a declared :attr:`AlgoSpec.ps_dtype` name."""
    import torch

    if name not in PS_DTYPES:
        raise ValueError(f"ps_dtype={name!r}: expected one of {', '.join(PS_DTYPES)}")
    return getattr(torch, name)


#: A config check: ``check(cfg)`` raises :class:`ConfigError` with one line, or returns None.
ConfigCheck = Callable[[Any], None]


@dataclass(frozen=True)
class AlgoSpec:
    """What one paper algorithm declares next to its code; :func:`hdist.algos.get_algo` returns it.

    families: the communication families it belongs to (serial | ps | shared | collective |
    pipeline | bench): it runs on a backend that carries one of them. ``ps`` means it wants a
    parameter server: a dedicated server rank where the backend has one (:meth:`Backend.server_rank`).
    run: one rank's part of the algorithm, called on every rank.
    validate: combination checks of its config keys, run before anything is written (in the parent,
    on every backend).
    check: data and model checks that need the data (files, shapes); returns extra ``meta.json``
    fields. None: hdist builds the problem and records the model's size and the data's source.
    check_problem: checks that need the built problem (``check_problem(cfg, problem)``: the objective the
    data and model make, e.g. a dual method needs a linear one); run in the parent, on every backend,
    after the problem is built and before the run directory exists (None: no such checks).
    max_workers: the most ``topology.workers`` it runs on (None: any).
    keys: the value rules of its own config keys (``"algo.<key>": (predicate, what is allowed)``,
    :mod:`hdist.rules`); the keys many algorithms share have theirs in :data:`hdist.config.RULES`.
    ps_dtype: the dtype of the parameter server's x (:data:`PS_DTYPES`): what the algorithm hands to
    ``ps_init`` (``hdist.algos._ps.run_ps(ps_dtype=...)``). A backend that allocates the shared x before
    any rank starts (thread, process) reads it from :attr:`World.ps_dtype`; the dual methods declare
    float64 so that the server's w stays w(alpha) to float64 rounding.
    precisions: the ``algo.precision`` values it runs in (:mod:`hdist.precision`; others are refused before
    anything is written). fp32 only by default: bf16 once its forward passes run in compute blocks and a
    bf16 run has been seen to train; fp16 only where every gradient goes through the loss scale of
    :meth:`hdist.algos._ps.FlatModel.grad` (or torch.amp.GradScaler).
    """

    families: tuple[str, ...]
    run: Callable[[RankCtx], None]
    validate: ConfigCheck = lambda cfg: None
    check: Callable[[Any], dict] | None = None
    check_problem: Callable[[Any, Any], None] | None = None
    max_workers: int | None = None
    keys: dict = field(default_factory=dict)
    ps_dtype: str = "float32"
    precisions: tuple[str, ...] = ("fp32",)

    def __post_init__(self) -> None:
        if self.ps_dtype not in PS_DTYPES:
            raise ValueError(f"AlgoSpec.ps_dtype={self.ps_dtype!r}: expected one of {', '.join(PS_DTYPES)}")
        if "fp32" not in self.precisions or not set(self.precisions) <= set(PRECISIONS):
            raise ValueError(f"AlgoSpec.precisions={self.precisions!r}: expected fp32 and any of "
                             f"{', '.join(PRECISIONS[1:])}")

    @property
    def needs_server(self) -> bool:
        return "ps" in self.families

    @property
    def pipeline(self) -> bool:
        return "pipeline" in self.families


@dataclass(frozen=True)
class World:
    """The parallel layout of one run, computed and validated once (:meth:`build`) and handed to
    the backend, which starts ``ranks`` ranks; no backend recomputes it.

    workers: data-parallel replicas (``topology.workers``); stages: pipeline stages of one replica
    (``topology.stages``); servers: dedicated parameter-server ranks (0 or 1; the server is rank 0);
    ranks: every rank the backend starts (one rank plays them all on a single-rank backend).
    ps_dtype: the dtype of the parameter server's x, the algorithm's :attr:`AlgoSpec.ps_dtype`: a backend
    that allocates the shared x at launch, before any rank calls ``ps_init``, allocates it in this.
    """

    workers: int
    stages: int
    servers: int
    ranks: int
    ps_dtype: str = "float32"

    @property
    def compute_ranks(self) -> int:
        """Ranks that compute gradients: the workers, or the stages of a pipeline."""
        return self.ranks - self.servers

    def role(self, rank: int) -> str:
        return "server" if self.servers and rank == 0 else "worker"

    @classmethod
    def build(cls, cfg: Any, spec: AlgoSpec, backend: Backend) -> World:
        """The layout ``cfg`` asks for, run by ``spec`` on ``backend``; ConfigError if it cannot work."""
        top = cfg.topology
        workers, stages = int(top.workers), int(top.stages)
        if int(top.get("servers", 0) or 0) != 0:
            raise ConfigError(f"topology.servers={top.servers}: not allowed; expected 0 (hdist adds the one "
                              f"server rank itself where a parameter-server algorithm runs on a backend with "
                              f"server ranks: mpi, torchdist, sim with backend.ps=server)")
        for who, limit in ((f"backend={backend.name}", backend.max_workers), (f"algo={cfg.algo.name}",
                                                                               spec.max_workers)):
            if limit is not None and workers > limit:
                hint = "use a parallel backend" if who.startswith("backend") else "choose a parallel algorithm"
                raise ConfigError(f"topology.workers={workers}: {who} runs at most {limit} worker(s); {hint} "
                                  f"for more")
        if spec.pipeline and workers > 1:
            raise ConfigError(f"topology.workers={workers}: algo={cfg.algo.name} trains one model cut into "
                              f"topology.stages stages; set topology.workers=1")
        if not spec.pipeline and stages > 1:
            raise ConfigError(f"topology.stages={stages}: algo={cfg.algo.name} does not cut the model into "
                              f"stages; stages > 1 need a pipeline algorithm")
        servers = 1 if spec.needs_server and backend.server_rank(cfg) else 0
        if backend.max_ranks == 1:
            ranks = 1  # one rank plays every worker, server and stage (serial)
        else:
            ranks = (stages if spec.pipeline else workers) + servers
        return cls(workers=workers, stages=stages, servers=servers, ranks=ranks, ps_dtype=spec.ps_dtype)


class Backend:
    """Starts the ranks of a run and gives each a :class:`Comm`. A backend module defines one
    subclass and exposes an instance as ``BACKEND``; :func:`hdist.backends.get_backend` returns it.
    The hooks below have the defaults of a backend that runs its ranks itself, on this machine.
    """

    name: str = ""
    families: tuple[str, ...] = ()  # communication families it carries (see AlgoSpec.families)
    max_workers: int | None = None  # the most topology.workers it runs (None: any)
    max_ranks: int | None = None  # 1: one rank plays the whole world (serial)

    def validate(self, cfg: Any) -> None:
        """The backend's own keys (one-line ConfigError)."""

    def server_rank(self, cfg: Any) -> bool:
        """Whether a parameter-server algorithm gets a dedicated server rank here (else the shared
        vector, under a lock or lock-free, is the server)."""
        return False

    def launch(self, run_dir: Path, cfg: Any, rank_fn: Callable[[RankCtx], None], world: World,
               run_id: str = "", n_params: int = 0) -> None:
        """Run ``rank_fn`` on the ``world.ranks`` ranks of ``world`` and wait for them; raise the
        first rank's error (a :class:`Diverged` as such)."""
        raise NotImplementedError

    def library_meta(self, cfg: Any) -> dict:
        """Extra ``meta.json`` fields: the communication library and its version."""
        return {}

    # An external world: the user's launcher (mpiexec, srun, torchrun) started every rank of the job.
    def in_external_world(self, cfg: Any) -> bool:
        """True when this process is one rank of a world the user's launcher started."""
        return False

    def world_rank(self) -> int:
        return 0

    def follow(self, rank_fn: Callable[[RankCtx], None]) -> tuple:
        """World ranks other than 0: run this rank's part of the run world rank 0 announces;
        returns (run_id, run_dir, status, reason)."""
        raise NotImplementedError(f"backend={self.name} has no external world")

    def release(self, result: Any) -> None:
        """World rank 0: tell the followers how the run ended."""
