"""torchdist: every rank is a process of a ``torch.distributed`` group (gloo on CPU, NCCL on GPUs).

The backend of the K-AVG issue: K-step averaging (kavg18 Alg. 1, :mod:`hdist.algos.kavg`) on the
library PyTorch's own ``PeriodicModelAverager`` / ``PostLocalSGDOptimizer`` run on, so that the
two can be compared step for step (``tests/test_torchdist.py``), and a way to run hdist's
collective algorithms across nodes with ``torchrun``.

Launch. :func:`launch` starts ``ranks = topology.workers`` processes with torch.multiprocessing
(``backend.start_method``: forkserver, which has imported torch once, or spawn), plus one when
the algorithm is a parameter-server one (rank 0 is then the server, ranks 1..P the workers, as
on MPI). The parent hosts the rendezvous (a ``TCPStore`` on a free localhost port it picks
itself, so no port race between runs); each rank calls ``init_process_group`` with it and
``timeout = backend.timeout_s``, then builds a :class:`TorchComm`.

Devices. A rank's model and tensors are on ``ctx.device`` (:mod:`hdist.devices`: ``cuda:(local rank
mod GPUs)`` under ``topology.devices=cuda``, the local rank being the rank here and ``LOCAL_RANK``
under torchrun; else the CPU). ``topology.devices`` is settled to cpu or cuda before a run starts.

Library backend (``backend.dist_backend``). ``auto``: NCCL when ``topology.devices`` is cuda
and this machine has a GPU per rank (rank r -> ``cuda:r``, which is then its ``ctx.device``), else
gloo (with a note on stderr when cuda was asked for). NCCL carries the collectives (all-reduce,
broadcast) on the rank's GPU: its device tensors in place, CPU tensors (``backend.dist_backend=nccl``
with a CPU model) through a reused buffer there. gloo works on host memory: a GPU rank's tensors are
copied through reused host buffers (:class:`~hdist.backends.staging.Staging`). Point to point,
barriers and the parameter server always go over gloo groups of their own (NCCL has no receive from
any source, which the server's loop needs): the server keeps x in host memory and the workers'
device tensors are staged through host buffers.

External worlds (``backend.external: auto``). Under ``torchrun`` (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` set, world > 1) nothing is spawned, as with the MPI backend:
every rank joins the default group (``env://``, gloo), world rank 0 prepares the run directory,
announces the run (its resolved config travels in the message: no shared file system is needed
for it) and records the result; the other ranks follow (:func:`follow`) and run their part in
place; :func:`release` tells them how it ended.

Failures. A rank that raises reports ``(rank, kind, message)`` to the parent and exits; the
peers blocked on it see their sockets close and fail at once (a rank blocked in a receive from
any source waits at most ``backend.timeout_s``). The parent turns the first real error into
``RuntimeError("rank N: ...")`` (or :class:`~hdist.types.Diverged`), names a rank that died
without a word by its exit code, and gives the others ``_FAIL_GRACE_S`` before SIGTERM and then
SIGKILL: nothing outlives a run. Ranks also die with the process that forked them
(PR_SET_PDEATHSIG) and with the hdist process that owns the run (:func:`hdist.rundir.rank_guard`:
a forkserver parent outlives it). In an external world there is no parent: a failing rank writes
``error-r<rank>.json``/``.txt`` (and ``status.json`` when its error is the first), then exits,
which ends its peers the same way and makes torchrun report the failure (MPI_Abort's part).

Families: serial, ps (a server rank that serves with gloo point to point, like ``mpi.py``),
collective and pipeline (one rank per stage, ``topology.stages`` of them: :mod:`hdist.algos._pipeline`).
Left out: ``shared`` (no shared memory between the ranks: inconsistent reads need the thread or
process backends).
"""

from __future__ import annotations

import atexit
import datetime
import os
import re
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from hdist.backends._ranks import ServerRankChecks, raise_interrupted, record_failure
from hdist.backends._supervise import (
    EXTERNAL_OFF,
    EXTERNAL_ON,
    ExternalWorld,
    ExternalWorldBackend,
    die_with_parent,
    report_and_exit,
    supervise_procs,
)
from hdist.backends.staging import Staging
from hdist.devices import local_rank
from hdist.rundir import rank_guard, remove_pid_files
from hdist.types import ConfigError, Diverged, RankCtx, RealClock, World
from hdist.types import PeerFailed as BasePeerFailed

NAME = "torchdist"
# torch_distributed: algorithms that call torch.distributed themselves on the default process
# group this backend initialises (the PyTorch baselines of the benchmarks).
FAMILIES = ("serial", "ps", "collective", "pipeline", "torch_distributed")

#: Environment variables torchrun (torch.distributed.run) sets for every rank it starts.
_LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_PRELOAD = ["torch", "torch.distributed", "hdist.backends.torchdist", "hdist.problems", "hdist.metrics"]
_FAIL_GRACE_S = 3.0  # seconds the other ranks get to exit on their own after one failed
_STOP_GRACE_S = 3.0  # seconds between SIGTERM and SIGKILL when ranks are stopped
_CONTROL_TIMEOUT_S = 3600.0  # external worlds: how long followers wait for world rank 0 between runs


class PeerFailed(BasePeerFailed):
    """A torch.distributed call failed: a peer died (its socket closed) or timed out (backend.timeout_s)."""


def _dist():
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("backend=torchdist: this torch build has no torch.distributed")
    return dist


def _timeout(cfg) -> datetime.timedelta:
    return datetime.timedelta(seconds=float(cfg.backend.timeout_s))


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def validate(cfg) -> None:
    """The backend's own keys (ConfigError): hdist.config.validate calls it before anything is written."""
    b = cfg.backend
    checks = (("dist_backend", ("auto", "gloo", "nccl")), ("start_method", ("forkserver", "spawn")),
              ("external", ("auto",) + EXTERNAL_ON + EXTERNAL_OFF))
    for key, allowed in checks:
        v = str(b.get(key, allowed[0])).lower()
        if v not in allowed:
            raise ConfigError(f"backend.{key}={b.get(key)!r}: not allowed; expected {', '.join(allowed)}")


def choose_dist_backend(cfg, ranks_here: int) -> str:
    """gloo or nccl for a run whose ``ranks_here`` ranks on this machine need one GPU each."""
    want = str(cfg.backend.get("dist_backend", "auto")).lower()
    if want == "gloo":
        return "gloo"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nccl = _dist().is_nccl_available()
    if want == "nccl":
        if not nccl or gpus < ranks_here:
            raise ConfigError(f"backend.dist_backend=nccl: needs NCCL and one GPU per rank ({ranks_here}); this "
                              f"machine has {gpus} GPU(s){'' if nccl else ' and a torch without NCCL'}; "
                              f"use backend.dist_backend=gloo")
        return "nccl"
    if str(cfg.topology.get("devices", "cpu")).lower() != "cuda":
        return "gloo"
    if nccl and gpus >= ranks_here:
        return "nccl"
    print(f"[hdist] backend=torchdist: topology.devices=cuda but {gpus} GPU(s) for {ranks_here} rank(s)"
          f"{'' if nccl else ' and no NCCL'}: gloo, the ranks' GPU tensors staged through host memory",
          file=sys.stderr)
    return "gloo"


def library_meta(cfg) -> dict:
    """For meta.json (the counterpart of mpi.py's ``mpi_library``): torch.distributed's version and
    the library backend this config gets on this machine."""
    ranks = _ranks_needed(cfg, False)
    try:
        chosen = choose_dist_backend(cfg, ranks)
    except ConfigError as e:
        chosen = f"none ({e})"
    lib = f"torch.distributed {torch.__version__}, {chosen}"
    if chosen == "nccl":
        lib += " " + ".".join(str(v) for v in torch.cuda.nccl.version())
    return {"dist_library": lib}


def _ranks_needed(cfg, server: bool) -> int:
    return int(cfg.topology.workers) + (1 if server else 0)


def _loopback() -> str | None:
    """The loopback interface's name (gloo binds to what the host name resolves to otherwise,
    which on a sandboxed or offline machine may be no local address at all)."""
    try:
        names = [n for _, n in socket.if_nameindex()]
    except OSError:
        return None
    return next((n for n in names if n == "lo"), next((n for n in names if n.startswith("lo")), None))


# ---------------------------------------------------------------------------------------------
# The communication interface
# ---------------------------------------------------------------------------------------------

# Parameter-server protocol, on a gloo group of its own (user tags never collide with it). A
# request is an int64 header [op, version] from a worker to rank 0 (tag _REQ), followed by the
# delta (tag _DELTA) for PUSH and PUSH_PULL; a reply is an int64 header [version] (tag _REP),
# followed by x (tag _X) for PULL and PUSH_PULL. Versions travel whole: staleness is exact.
_PULL, _PUSH, _PUSH_PULL, _VERSION, _DONE = 1, 2, 3, 4, 5
_REQ, _DELTA, _REP, _X = 1, 2, 3, 4


class TorchComm(ServerRankChecks, RealClock):
    """:class:`~hdist.types.Comm` over torch.distributed. Every blocking call waits at most the
    groups' timeout (``backend.timeout_s``); a failure of the library becomes :class:`PeerFailed`.

    Groups (created collectively, in the same order on every rank): ``p2p`` (gloo: send/recv,
    barrier), ``coll`` (the collectives: ``p2p`` itself on gloo, an NCCL group on GPUs) and
    ``ps`` (gloo: the parameter-server protocol). With ``has_server``, rank 0 keeps x and its
    version and :meth:`serve` applies the workers' pushes one at a time in arrival order.
    """

    BACKEND = "torchdist"  # in error messages

    shared_memory = False

    def __init__(self, has_server: bool = False, timeout_s: float = 30.0, dist_backend: str = "gloo",
                 device: torch.device | None = None):
        dist = _dist()
        self.dist = dist
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.has_server = bool(has_server)
        if self.has_server and self.world_size < 2:
            raise ValueError("backend=torchdist: a server rank needs a world of at least 2 ranks")
        self.n_workers = self.world_size - 1 if self.has_server else self.world_size
        self.worker_index = (self.rank - 1 if self.rank > 0 else None) if self.has_server else self.rank
        self.timeout_s = float(timeout_s)
        self.dist_backend = dist_backend
        self.device = device if dist_backend == "nccl" else None
        # Reused buffers: on the collectives' device (NCCL's GPU, else host memory for gloo), and in host
        # memory for the gloo groups of point to point and the parameter server.
        self._coll_stage = Staging(self.device if self.device is not None else "cpu")
        self._host = Staging("cpu")
        td = datetime.timedelta(seconds=self.timeout_s)
        with self._guard("creating the process groups"):
            self.p2p = dist.new_group(backend="gloo", timeout=td)
            if dist_backend == "nccl":
                torch.cuda.set_device(self.device)
                self.coll = dist.new_group(backend="nccl", timeout=td)
            else:
                self.coll = self.p2p
            self.ps = dist.new_group(backend="gloo", timeout=td)
        self._groups = [g for g in (self.p2p, self.coll, self.ps) if g is not None]
        self._pending: list = []  # (work, buffer) of sends not yet complete
        self._hdr = torch.zeros(2, dtype=torch.int64)
        self._rep = torch.zeros(1, dtype=torch.int64)
        # Parameter-server state: x on the server; the last version seen on a worker.
        self._x: torch.Tensor | None = None
        self._numel, self._dtype = 0, None
        self._version = 0
        self._done = False

    # --- failures -----------------------------------------------------------------------------
    class _Guard:
        def __init__(self, what: str, timeout_s: float):
            self.what, self.timeout_s = what, timeout_s

        def __enter__(self):
            return self

        def __exit__(self, typ, exc, tb):
            # gloo and NCCL raise RuntimeError (DistBackendError is one) for a closed socket or a timeout.
            if exc is not None and isinstance(exc, RuntimeError) and not isinstance(exc, PeerFailed):
                first = (str(exc).strip().splitlines() or [""])[0]
                first = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", first)  # gloo's source location
                raise PeerFailed(f"{self.what}: {first[:300]} (a peer failed or took longer than "
                                 f"{self.timeout_s:g} s; backend.timeout_s)") from None
            return False

    def _guard(self, what: str) -> TorchComm._Guard:
        return TorchComm._Guard(what, self.timeout_s)

    # --- collectives --------------------------------------------------------------------------
    def barrier(self) -> None:
        with self._guard("barrier"):
            self.dist.barrier(group=self.p2p)

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> None:
        # The buffer the library works on: the tensor itself where it can (on the collectives' device,
        # contiguous), else the reused one; only the root's values need copying in.
        stage = self._coll_stage
        buf = stage.to_home(tensor, "collective") if self.rank == root else stage.home_for(tensor, "collective")
        with self._guard(f"broadcast from rank {root}"):
            self.dist.broadcast(buf, src=root, group=self.coll)
        if self.rank != root:
            stage.back(tensor, buf)

    def allreduce(self, tensor: torch.Tensor, op: str = "sum") -> None:
        if op not in ("sum", "mean"):
            raise ValueError(f"allreduce op {op!r}: expected sum or mean")
        buf = self._coll_stage.to_home(tensor, "collective")
        with self._guard("allreduce"):
            self.dist.all_reduce(buf, op=self.dist.ReduceOp.SUM, group=self.coll)
        if op == "mean":
            # Sum, then divide (gloo has no AVG): the arithmetic of every other hdist backend.
            buf.div_(self.world_size)
        self._coll_stage.back(tensor, buf)

    # --- point to point -----------------------------------------------------------------------
    def send(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> None:
        # Buffered, like the other backends: the receiver gets the values at the time of the call,
        # and a send never waits for its receive (a ring of sends then receives works).
        buf = self._host.fresh(tensor)  # a message of its own, in host memory (gloo)
        with self._guard(f"send to rank {dst} tag {tag}"):
            work = self.dist.isend(buf, dst, group=self.p2p, tag=tag)
        self._pending.append((work, buf))
        self._pending = [(w, b) for w, b in self._pending if not w.is_completed()]

    def recv(self, tensor: torch.Tensor, src: int | None = None, tag: int = 0) -> int:
        buf = self._host.home_for(tensor, "recv")
        with self._guard(f"recv from {'any rank' if src is None else f'rank {src}'} tag {tag}"):
            sender = self.dist.recv(buf, src, group=self.p2p, tag=tag)
        self._host.back(tensor, buf)
        return int(sender)

    def close(self) -> None:
        """Complete the sends still in flight (at most ``timeout_s``), then free the groups."""
        with self._guard("sends in flight"):
            for work, _ in self._pending:
                work.wait(datetime.timedelta(seconds=self.timeout_s))
        self._pending = []
        if self.device is not None:
            torch.cuda.synchronize(self.device)
        for g in dict.fromkeys(self._groups):  # coll may be p2p: destroy each group once
            try:
                self.dist.destroy_process_group(g)
            except Exception:
                pass
        self._groups = []

    # --- parameter server ---------------------------------------------------------------------
    def _request(self, op: int, version: int = 0, delta: torch.Tensor | None = None) -> None:
        """A worker's request to the server; returns once it is on its way (the buffers may change)."""
        hdr = torch.tensor([op, int(version)], dtype=torch.int64)
        works = [self.dist.isend(hdr, 0, group=self.ps, tag=_REQ)]
        if delta is not None:
            # A reused host buffer for a device delta: the sends complete below, before it is reused.
            works.append(self.dist.isend(self._host.to_home(delta, "delta"), 0, group=self.ps, tag=_DELTA))
        td = datetime.timedelta(seconds=self.timeout_s)
        for w in works:
            w.wait(td)

    def _reply(self, out: torch.Tensor | None) -> int:
        """The server's reply: its version, and x into ``out`` when given."""
        self.dist.recv(self._rep, 0, group=self.ps, tag=_REP)
        if out is not None:
            buf = self._host.home_for(out, "out")
            self.dist.recv(buf, 0, group=self.ps, tag=_X)
            self._host.back(out, buf)
        self._version = int(self._rep[0])
        return self._version

    def ps_version(self) -> int:
        self._need_server("ps_version")
        if self.rank == 0 or self._done:
            return self._version
        with self._guard("ps_version: the server's reply"):
            self._request(_VERSION)
            return self._reply(None)

    def pull(self, out: torch.Tensor, consistent: bool = True) -> int:
        # Always consistent: the server sends a whole x between two updates.
        self._need_server("pull")
        if self.rank == 0:
            out.copy_(self._x.view_as(out))
            return self._version
        if self._done:
            raise RuntimeError("pull: called after ps_done")
        with self._guard("pull: the server's reply"):
            self._request(_PULL)
            return self._reply(out)

    def push(self, delta: torch.Tensor, version: int, consistent: bool = True, donate: bool = False) -> None:
        """Send ``delta`` to the server and return None: the server applies it in arrival order
        and reports the staleness to ``serve``'s ``on_apply``. ``donate`` changes nothing here:
        the push returns once ``delta`` has been sent, so it is never kept."""
        self._worker_only("push")
        self._check_delta(delta)
        with self._guard("push: the server's receive"):
            self._request(_PUSH, version, delta)
        return None

    def push_pull(self, delta: torch.Tensor, version: int, out: torch.Tensor) -> tuple[int, int]:
        self._worker_only("push_pull")
        self._check_delta(delta)
        with self._guard("push_pull: the server's reply"):
            self._request(_PUSH_PULL, version, delta)
            after = self._reply(out)
        return after - 1 - int(version), after

    def ps_done(self) -> None:
        if not self.has_server or self.rank == 0 or self._done:
            return None
        with self._guard("ps_done"):
            self._request(_DONE)
        self._done = True
        return None

    def serve(self, on_apply: Callable[[int, torch.Tensor, int], None] | None = None) -> None:
        """The server loop: one request at a time, in arrival order, until every worker is done."""
        self._server_only()
        dist, ps, x = self.dist, self.ps, self._x
        hdr, rep = self._hdr, self._rep
        delta = torch.empty_like(x)
        td = datetime.timedelta(seconds=self.timeout_s)
        active = self.n_workers
        while active:
            with self._guard("serve: a worker's request"):
                src = int(dist.recv(hdr, None, group=ps, tag=_REQ))
            op, pushed = int(hdr[0]), int(hdr[1])
            if op in (_PUSH, _PUSH_PULL):
                with self._guard(f"serve: the delta of rank {src}"):
                    dist.recv(delta, src, group=ps, tag=_DELTA)
                staleness = self._version - pushed
                x.add_(delta)
                self._version += 1
                if on_apply is not None:
                    on_apply(self._version, x, staleness)
            if op in (_PULL, _PUSH_PULL, _VERSION):
                rep[0] = self._version
                with self._guard(f"serve: the reply to rank {src}"):
                    works = [dist.isend(rep, src, group=ps, tag=_REP)]
                    if op != _VERSION:
                        works.append(dist.isend(x, src, group=ps, tag=_X))
                    for w in works:  # x does not change before it is on its way
                        w.wait(td)
            elif op == _DONE:
                active -= 1
            elif op != _PUSH:
                raise RuntimeError(f"serve: unknown request {op} from rank {src}")


def _make_comm(cfg, server: bool, dist_backend: str, local_rank: int) -> TorchComm:
    # NCCL's GPU: the rank's ctx.device under topology.devices=cuda (NCCL is chosen with a GPU per rank
    # here, so cuda:(local rank mod GPUs) is cuda:local_rank); with a CPU model, where it stages.
    device = torch.device("cuda", local_rank) if dist_backend == "nccl" else None
    return TorchComm(has_server=server, timeout_s=float(cfg.backend.timeout_s), dist_backend=dist_backend,
                     device=device)


def _rank_ctx(cfg, run_dir: Path, run_id: str, comm: TorchComm, server: bool, local_rank: int) -> RankCtx:
    from hdist.backends._ranks import make_ctx

    role = "server" if server and comm.rank == 0 else "worker"
    return make_ctx(cfg, run_dir, run_id, comm.rank, comm.world_size, comm, role=role, local_index=local_rank)


# ---------------------------------------------------------------------------------------------
# Spawned ranks (one machine)
# ---------------------------------------------------------------------------------------------


def _context(method: str):
    import torch.multiprocessing as tmp

    ctx = tmp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)  # no effect once the forkserver runs (e.g. started by backend=process)
    return ctx


def _child(rank: int, world: int, port: int, cfg_dict: dict, run_dir: str, run_id: str, server: bool,
           dist_backend: str, rank_fn: Callable[[RankCtx], None], errq, threads: int, owner_pid: int) -> None:
    die_with_parent()
    rank_guard(Path(run_dir), owner_pid, rank)  # the forkserver, our parent, outlives the owner
    signal.signal(signal.SIGTERM, raise_interrupted)
    lo = _loopback()
    if lo:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", lo)  # every rank is on this machine
    torch.set_num_threads(threads)
    try:
        from omegaconf import OmegaConf

        from hdist.backends._ranks import run_rank

        dist = _dist()
        cfg = OmegaConf.create(cfg_dict)
        td = _timeout(cfg)
        with TorchComm._Guard("rendezvous", td.total_seconds()):
            store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=td)
            dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=td)
        comm = _make_comm(cfg, server, dist_backend, rank)  # every rank on this machine: its local index is its rank
        run_rank(_rank_ctx(cfg, Path(run_dir), run_id, comm, server, rank), rank_fn)
        comm.close()
        dist.destroy_process_group()
    except BaseException as e:  # noqa: B036 - every way out is reported to the parent
        report_and_exit(errq, rank, e)


def launch(run_dir: Path, cfg, rank_fn: Callable[[RankCtx], None], world: World, run_id: str = "",
           n_params: int = 0) -> None:
    from omegaconf import OmegaConf

    from hdist.backends._ranks import threads_per_rank

    server, ranks = bool(world.servers), world.ranks  # the layout launch computed: nothing recomputed here
    validate(cfg)
    run_dir = Path(run_dir).resolve()
    if in_external_world(cfg):
        return _WORLD.lead(run_dir, cfg, rank_fn, run_id, n_params, server, ranks)
    dist = _dist()
    world = ranks  # the workers (and the server), or one rank per stage of a pipeline algorithm
    dist_backend = choose_dist_backend(cfg, world)
    mp = _context(str(cfg.backend.get("start_method", "forkserver")).lower())
    # The rendezvous lives in the parent, on a port the OS picks: no free-port race between runs.
    store = dist.TCPStore("127.0.0.1", 0, world + 1, is_master=True, wait_for_workers=False, timeout=_timeout(cfg))
    errq = mp.Queue()
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    threads = threads_per_rank(cfg, world)
    procs = [mp.Process(target=_child, name=f"hdist-torchdist-rank{r}", daemon=True,
                        args=(r, world, store.port, cfg_dict, str(run_dir), run_id, server, dist_backend, rank_fn,
                              errq, threads, os.getpid()))
             for r in range(world)]
    try:
        timeout_s = float(cfg.backend.timeout_s)
        supervise_procs(procs, errq, min(timeout_s, _FAIL_GRACE_S), _STOP_GRACE_S, "rank", timeout_s=timeout_s)
    finally:
        remove_pid_files(run_dir)
        del store


# ---------------------------------------------------------------------------------------------
# External worlds (torchrun): world rank 0 leads, the others follow
# ---------------------------------------------------------------------------------------------


class _TorchrunWorld(ExternalWorld):
    """A torchrun world: the default group (env://, gloo) carries world rank 0's messages; the
    announcement carries the resolved config (no shared file system is needed for it) and the
    library backend the leader chose for every node."""

    NAME = "torchrun"

    def size(self) -> int:
        started = all(k in os.environ for k in _LAUNCHER_ENV)
        return int(os.environ.get("WORLD_SIZE", "1") or 1) if started else 1

    def rank(self) -> int:
        return int(os.environ["RANK"])

    def require(self) -> None:
        if not all(k in os.environ for k in _LAUNCHER_ENV):
            raise ConfigError("backend.external=true: no torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, "
                              "MASTER_PORT); start hdist with torchrun or set backend.external=auto")

    def start_hint(self, need: int) -> str:
        return f"start it with --nproc-per-node/--nnodes giving {need}"

    def tell(self, msg: dict) -> None:
        _control().broadcast_object_list([msg], src=0)

    def hear(self) -> dict:
        box: list[Any] = [None]
        _control().broadcast_object_list(box, src=0)
        return box[0]

    def announce(self, cfg, server: bool, ranks: int | None) -> dict:
        from omegaconf import OmegaConf

        here = int(os.environ.get("LOCAL_WORLD_SIZE", self.size()))
        return {"dist_backend": choose_dist_backend(cfg, here), "cfg": OmegaConf.to_container(cfg, resolve=True)}

    def run_part(self, msg: dict, rank_fn: Callable[[RankCtx], None], cfg=None) -> None:
        from omegaconf import OmegaConf

        run_dir = Path(msg["run_dir"])
        if cfg is None:
            run_dir.mkdir(parents=True, exist_ok=True)  # another node without a shared file system
            cfg = OmegaConf.create(msg["cfg"])
        _run_in_place(run_dir, cfg, rank_fn, msg["run_id"], msg["server"], msg["dist_backend"])


_WORLD = _TorchrunWorld()


# What launch.py calls for a world the user's launcher started: ExternalWorld's protocol over torchrun.
in_external_world = _WORLD.active
world_rank = _WORLD.rank
follow = _WORLD.follow
release = _WORLD.release


def _control():
    """torch.distributed with the default group joined (env://, gloo): the leader's messages."""
    dist = _dist()
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method="env://",
                                timeout=datetime.timedelta(seconds=_CONTROL_TIMEOUT_S))
        atexit.register(_leave_world)
    return dist


def _leave_world() -> None:
    """At exit, every rank of an external world: wait until all are leaving, then free the default group.

    It must go while the interpreter is whole: gloo's worker threads left to interpreter teardown
    abort the process ("terminate called without an active exception", SIGABRT;
    pytorch/pytorch#179291), which torchrun reports as a failed job after a good run. Sync point:
    the barrier keeps a rank from closing its sockets while a peer still reads the last message.
    Once per process, not per run, so a sweep under torchrun keeps one rendezvous.
    """
    dist = _dist()
    if not dist.is_initialized():
        return
    try:
        dist.barrier()
    except Exception:  # a peer already gone (it failed and exited): nothing left to wait for
        pass
    dist.destroy_process_group()


def _run_in_place(run_dir: Path, cfg, rank_fn, run_id: str, server: bool, dist_backend: str) -> None:
    """This process's rank of the run; on failure record it and exit (which ends the peers)."""
    from hdist.backends._ranks import run_rank, threads_per_rank

    dist = _control()
    rank = dist.get_rank()
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads_per_rank(cfg, int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))))
        local = local_rank(default=0)  # torchrun's LOCAL_RANK
        comm = _make_comm(cfg, server, dist_backend, local)
        run_rank(_rank_ctx(cfg, run_dir, run_id, comm, server, local), rank_fn)
        comm.close()
    except BaseException as e:  # noqa: B036 - every way out must end the whole world
        try:
            record_failure(run_dir, rank, e, write_status=True)
        except BaseException:
            traceback.print_exc()
        sys.stderr.flush()
        # No parent to stop the others: exiting closes this rank's sockets, its peers fail at
        # once, and torchrun reports the job failed (MPI_Abort's part on the mpi backend).
        os._exit(4 if isinstance(e, Diverged) else 1)
    finally:
        torch.set_num_threads(old)


class TorchDistBackend(ExternalWorldBackend):
    name, families, external = NAME, FAMILIES, _WORLD

    def launch(self, run_dir, cfg, rank_fn, world, run_id="", n_params=0) -> None:
        launch(run_dir, cfg, rank_fn, world, run_id, n_params)

    def validate(self, cfg) -> None:
        validate(cfg)

    def library_meta(self, cfg) -> dict:
        return library_meta(cfg)


BACKEND = TorchDistBackend()
