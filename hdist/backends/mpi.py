"""mpi: every rank is an MPI process (mpi4py); a parameter server is a rank of its own.

Launch. ``hdist.launch.execute`` has written the run directory; :func:`launch` runs

    <launcher> <launcher_args> -n <ranks> <python> -m hdist.backends.mpi_rank <run_dir> <module:qualname> \
        <run_id> <n_params> <server 0|1>

with ``ranks = topology.workers + 1`` when the algorithm is a parameter-server one (rank 0 is
the server, ranks 1..P the workers), else ``topology.workers``. The launcher is
``backend.launcher`` (default: the ``mpiexec`` next to this Python, which the ``mpich`` wheel
installs, else the one on PATH); ``backend.launcher_args`` go before ``-n`` (``srun`` works
the same way). Each rank (:mod:`hdist.backends.mpi_rank`) reads ``config.yaml``, builds an
:class:`MPIComm` and runs the algorithm's rank function.

External worlds (``backend.external: auto``). When this process already is a rank of an MPI
world larger than one (``mpiexec -n 3 hdist run backend=mpi ...``, or ``srun``), nothing is
spawned: world rank 0 prepares the run directory and records the result as usual, the other
ranks wait for it (:func:`follow`) and every rank runs its part in place.

Devices. Each rank computes on ``ctx.device``: ``cuda:(local rank mod GPUs)`` under
``topology.devices=cuda``, the local rank being the launcher's (``MPI_LOCALRANKID``,
``OMPI_COMM_WORLD_LOCAL_RANK``, ``SLURM_LOCALID``; :func:`hdist.devices.local_rank`). Messages of GPU
tensors go through reused host buffers (:class:`~hdist.backends.staging.Staging`) unless the MPI library
is CUDA-aware (:func:`cuda_aware`: ``MPIX_Query_cuda_support``), in which case MPI gets the GPU memory
itself; meta.json says which (``mpi_cuda_aware``). The server rank keeps x in host memory.

Failures. A rank that raises writes ``error-r<rank>.txt`` (reason line + traceback) and
``error-r<rank>.json`` (kind, message), then calls ``MPI_Abort``, which ends every rank. The
parent turns the first real error into ``RuntimeError("rank N: ...")`` or, for
:class:`~hdist.types.Diverged`, into ``Diverged``; a rank that dies without a word is named
from the launcher's exit codes. Every blocking wait of :class:`MPIComm` is a non-blocking MPI
call polled until ``backend.timeout_s``, so that a hung peer ends the run too. The parent is a
watchdog as well: once a rank has reported an error it gives the launcher a few seconds to
exit; when no rank file changes for ``max(120, 4 * timeout_s)`` seconds it kills the job. On
SIGTERM or Ctrl-C it freezes the launcher and hydra's proxies (SIGSTOP, so that they do not
SIGKILL the ranks), sends the ranks SIGTERM (their pids are in ``rank-r<rank>.pid``: each closes
its metrics file), and then SIGKILLs whatever is left: no process outlives a run.
"""

from __future__ import annotations

import collections
import ctypes
import glob
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from hdist.backends._ranks import (
    Interrupted,
    ServerRankChecks,
    parse_report_line,
    raise_interrupted,
    read_errors,
    record_failure,
)
from hdist.backends._supervise import (
    ExternalWorld,
    ExternalWorldBackend,
    die_with_parent_preexec,
    raise_first,
    signal_name,
    stop,
    stopped,
)
from hdist.backends.staging import Staging
from hdist.types import ConfigError, Diverged, RankCtx, RealClock, World
from hdist.types import PeerFailed as BasePeerFailed

NAME = "mpi"
FAMILIES = ("ps", "collective")

#: Environment variables that say "this process was started by an MPI launcher".
_LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
                 "HYDI_CONTROL_FD", "PMI_FD", "PMI_PORT")
_IDLE_MIN_S = 120.0  # watchdog: shortest silence (no rank file changed) before the job is killed
_ERROR_GRACE_S = 15.0  # watchdog: seconds the launcher gets to exit after a rank reported an error (> _PEER_CLOSE_S)
_STOP_GRACE_S = 3.0  # seconds the ranks get between SIGTERM and SIGKILL when the job is stopped
# Seconds a failing rank gives its peers to close their metrics files before MPI_Abort: a first flush
# imports pandas (pyarrow does, lazily), seconds on a busy machine.
_PEER_CLOSE_S = 10.0
_MPICH_SHM = "/dev/shm/mpich_shm_"  # MPICH's shared-memory segments (one per node and job)
_HWLOC_XML = "/tmp/hydra_hwloc_xmlfile_*"  # the topology hydra's proxy writes at start-up


class PeerFailed(BasePeerFailed):
    """A wait on another rank timed out (``backend.timeout_s``): that rank failed or hangs."""


# ---------------------------------------------------------------------------------------------
# MPI library, lazily (importing this module does not initialise MPI)
# ---------------------------------------------------------------------------------------------


def _mpi():
    """mpi4py's MPI module, initialised (only ranks, and processes inside an external world,
    call this: the parent of a spawned job never becomes an MPI process itself)."""
    if "mpi4py.MPI" not in sys.modules:
        import mpi4py

        mpi4py.rc.thread_level = "funneled"  # one thread calls MPI: no locking in the library
    from mpi4py import MPI

    if not MPI.Is_initialized():
        MPI.Init_thread(MPI.THREAD_FUNNELED)
    return MPI


def cuda_aware(MPI) -> bool:
    """Whether this (initialised) MPI reads and writes GPU memory itself: ``MPIX_Query_cuda_support()``,
    which Open MPI (2.0+) and MPICH (4.0+) export, looked up in the library mpi4py is linked to. A library
    without it (or any failure to ask) counts as not CUDA-aware: messages are then staged through host
    buffers, which is always correct."""
    try:
        return bool(ctypes.CDLL(MPI.__file__).MPIX_Query_cuda_support())
    except (AttributeError, OSError):
        return False


# The child imports no hdist (it would import torch: a second or more): cuda_aware's query, inline.
_VERSION_CODE = """
import ctypes, json, mpi4py
mpi4py.rc.thread_level = 'single'
from mpi4py import MPI
try:
    aware = bool(ctypes.CDLL(MPI.__file__).MPIX_Query_cuda_support())
except (AttributeError, OSError):
    aware = False
print(json.dumps([MPI.Get_library_version().strip().splitlines()[0].strip(), aware]))
"""
_LIBRARY: list[tuple[str, bool]] = []


def _library() -> tuple[str, bool]:
    """(first line of ``MPI_Get_library_version``, :func:`cuda_aware`).

    Asked of a short-lived child Python (an MPI singleton: the CUDA query needs an initialised MPI)
    unless mpi4py.MPI is loaded here already: loading it fixes, for the life of the process, whether
    it initialises MPI, and that is not hdist's call to make in the parent."""
    if "mpi4py.MPI" in sys.modules:
        MPI = sys.modules["mpi4py.MPI"]
        return (MPI.Get_library_version().strip().splitlines()[0].strip(),
                bool(MPI.Is_initialized() and not MPI.Is_finalized() and cuda_aware(MPI)))
    if not _LIBRARY:
        try:
            r = subprocess.run([sys.executable, "-c", _VERSION_CODE], capture_output=True, text=True, timeout=60,
                               env=_child_env(1))
            try:
                name, aware = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else (None, False)
            except (json.JSONDecodeError, IndexError, ValueError):
                name, aware = None, False
            _LIBRARY.append((name or f"unknown (mpi4py: {(r.stderr.strip().splitlines() or ['no output'])[-1]})",
                             bool(aware)))
        except (OSError, subprocess.SubprocessError) as e:
            _LIBRARY.append((f"unknown ({type(e).__name__})", False))
    return _LIBRARY[0]


def mpi_version() -> str:
    """First line of ``MPI_Get_library_version`` (stored in meta.json as ``mpi_library``)."""
    return _library()[0]


class _MPIWorld(ExternalWorld):
    """An MPI world started by ``mpiexec``/``srun``: rank 0's messages are broadcasts on
    COMM_WORLD; a follower reads the resolved config from the run directory (stand-ins included)."""

    NAME = "MPI"

    def __init__(self):
        self._size: int | None = None

    def size(self) -> int:
        if self._size is None:
            started = any(k in os.environ for k in _LAUNCHER_ENV) or \
                int(os.environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1
            # Without a launcher's environment, MPI is not touched at all (a plain `hdist run`).
            self._size = _mpi().COMM_WORLD.Get_size() if started else 1
        return self._size

    def rank(self) -> int:
        return _mpi().COMM_WORLD.Get_rank()

    def start_hint(self, need: int) -> str:
        return f"start it with -n {need}"

    @staticmethod
    def _wait_for_leader() -> None:
        """Poll a barrier with sleeps: followers do not spin a core while rank 0 loads data."""
        req = _mpi().COMM_WORLD.Ibarrier()
        while not req.Test():
            time.sleep(0.005)

    def tell(self, msg: dict) -> None:
        self._wait_for_leader()
        _mpi().COMM_WORLD.bcast(msg, root=0)

    def hear(self) -> dict:
        self._wait_for_leader()
        return _mpi().COMM_WORLD.bcast(None, root=0)

    def run_part(self, msg: dict, rank_fn: Callable[[RankCtx], None], cfg=None) -> None:
        from omegaconf import OmegaConf

        run_dir = Path(msg["run_dir"])
        if cfg is None:
            cfg = OmegaConf.load(run_dir / "config.yaml")  # rank 0's resolved config, stand-ins included
        old = torch.get_num_threads()
        try:
            run_in_world(run_dir, rank_fn, msg["run_id"], msg["n_params"], msg["server"], cfg=cfg, external=True)
        finally:
            torch.set_num_threads(old)


_WORLD = _MPIWorld()


# What launch.py calls for a world the user's launcher started: ExternalWorld's protocol over MPI.
in_external_world = _WORLD.active
world_rank = _WORLD.rank
follow = _WORLD.follow
release = _WORLD.release


# ---------------------------------------------------------------------------------------------
# One rank (python -m hdist.backends.mpi_rank, or a process of an external world)
# ---------------------------------------------------------------------------------------------


def resolve(ref: str) -> Callable[[RankCtx], None]:
    """``package.module:qualname`` (:func:`_fn_ref`) -> the function."""
    module, _, qualname = ref.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def run_in_world(run_dir: Path, rank_fn: Callable[[RankCtx], None] | str, run_id: str, n_params: int,
                 server: bool, cfg=None, external: bool = False) -> None:
    """Run this process's rank of the run in ``run_dir``; on failure record it and abort the world.

    On any exception the rank writes ``error-r<rank>.txt`` (a one-line reason, then the traceback)
    and ``error-r<rank>.json`` (rank, kind = error | diverged | peer | interrupted, message, time)
    (in an external world, with no parent to do it, also status.json), closes its metrics
    (complete files) and calls ``MPI_Abort`` so that no rank waits for it; the parent reads the
    files and reports the first real error.
    """
    from hdist.backends._ranks import make_ctx, run_rank, threads_per_rank
    from hdist.devices import local_rank

    MPI = _mpi()
    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    run_dir = Path(run_dir)
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, raise_interrupted) if main_thread and not external else None
    try:
        from omegaconf import OmegaConf

        if not external:
            (run_dir / f"rank-r{rank}.pid").write_text(f"{os.getpid()}\n")
        if cfg is None:
            cfg = OmegaConf.load(run_dir / "config.yaml")
        fn = resolve(rank_fn) if isinstance(rank_fn, str) else rank_fn
        torch.set_num_threads(threads_per_rank(cfg, size))
        comm = MPIComm(world, has_server=server, timeout_s=float(cfg.backend.timeout_s))
        role = "server" if server and rank == 0 else "worker"
        # The rank's index on its machine (its GPU): the launcher's (mpiexec, srun), else its rank.
        ctx = make_ctx(cfg, run_dir, run_id, rank, size, comm, role=role, local_index=local_rank(default=rank))
        run_rank(ctx, fn)
        comm.close()
    except BaseException as e:  # noqa: B036 - every way out must end the whole world
        if main_thread and not external:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # this rank is ending already: peers' requests can wait
        try:
            record_failure(run_dir, rank, e, write_status=external)
        except BaseException:
            traceback.print_exc()
        sys.stderr.flush()
        if isinstance(e, Interrupted):
            # Every rank got the signal (the parent stops the whole job, or a failing peer asks all
            # to close): no abort cascade, and no MPI_Finalize, which would wait for ranks that are
            # gone. The launcher kills every rank once one exits, so this one first waits for its
            # peers' files to close (a server still closing would lose its rows).
            if not external:
                _wait_for_peers(run_dir, rank, _peer_pids(run_dir, rank), closed=True)
            os._exit(128 + signal.SIGTERM)
        if not external:
            _close_peers(run_dir, rank)
        world.Abort(4 if isinstance(e, Diverged) else 1)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _peer_pids(run_dir: Path, rank: int) -> dict[int, int]:
    """rank -> pid of this run's other ranks (their ``rank-r<rank>.pid``, checked against /proc)."""
    peers = {}
    for f in run_dir.glob("rank-r*.pid"):
        try:
            r, pid = int(f.name[len("rank-r"):-len(".pid")]), int(f.read_text().split()[0])
            if r != rank and str(run_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                peers[r] = pid
        except (OSError, ValueError, IndexError):
            continue
    return peers


def _close_peers(run_dir: Path, rank: int) -> None:
    """Before MPI_Abort (which kills every rank at once): SIGTERM the other ranks of this run, so that
    each closes its metrics file with every row it logged (a diverged run keeps all ranks' rows),
    and wait up to ``_PEER_CLOSE_S`` for them to end. A stopped peer is not waited for."""
    peers = _peer_pids(run_dir, rank)
    for pid in peers.values():
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
    _wait_for_peers(run_dir, rank, peers)


def _wait_for_peers(run_dir: Path, rank: int, peers: dict[int, int], closed: bool = False) -> None:
    """Wait up to ``_PEER_CLOSE_S`` until every peer has ended (stopped and zombie peers count as
    ended); with ``closed``, a peer that wrote its final metrics file counts too."""
    deadline = time.monotonic() + _PEER_CLOSE_S
    while time.monotonic() < deadline:
        waiting = [r for r, p in peers.items() if Path(f"/proc/{p}").exists() and not stopped(p) and not _zombie(p)
                   and not (closed and (run_dir / f"metrics-r{r}.parquet").exists())]
        if not waiting:
            return
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


# ---------------------------------------------------------------------------------------------
# Spawning a job
# ---------------------------------------------------------------------------------------------


def resolve_launcher(name: str | None) -> str:
    """A path is used as given; a bare name is looked up next to this Python first, then on PATH."""
    name = str(name or "mpiexec")
    if os.sep in name:
        if not os.access(name, os.X_OK):
            raise ConfigError(f"backend.launcher={name}: not an executable file")
        return name
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"backend.launcher={name}: not found next to {sys.executable} or on PATH "
                          f"(pip install mpich, or set backend.launcher=/path/to/mpiexec)")
    return found


def _is_hydra(launcher: str) -> bool:
    p = Path(launcher)
    return p.name.startswith("mpiexec") and (p.parent / "hydra_pmi_proxy").exists()


def _fn_ref(rank_fn: Callable) -> str:
    ref = f"{rank_fn.__module__}:{rank_fn.__qualname__}"
    if "<" in ref or rank_fn.__module__ == "__main__":
        raise ValueError(f"backend=mpi: rank function {ref} must be a module-level function of an importable module")
    return ref


def _child_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "HYDI_", "HYDRA_", "OMPI_", "MPI_LOCAL"))}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return env


def launch(run_dir: Path, cfg, rank_fn: Callable[[RankCtx], None], world: World, run_id: str = "",
           n_params: int = 0) -> None:
    from hdist.backends._ranks import threads_per_rank

    server, ranks = bool(world.servers), world.ranks  # the layout launch computed: nothing recomputed here
    run_dir = Path(run_dir).resolve()
    if in_external_world(cfg):
        return _WORLD.lead(run_dir, cfg, rank_fn, run_id, n_params, server)
    launcher = resolve_launcher(cfg.backend.get("launcher"))
    extra = [str(a) for a in (cfg.backend.get("launcher_args") or [])]
    if _is_hydra(launcher) and "-print-all-exitcodes" not in extra:
        extra.append("-print-all-exitcodes")  # names the rank that died without a word
    cmd = [launcher, *extra, "-n", str(ranks), sys.executable, "-m", "hdist.backends.mpi_rank", str(run_dir),
           _fn_ref(rank_fn), run_id or "-", str(int(n_params)), "1" if server else "0"]
    timeout_s = float(cfg.backend.timeout_s)
    job = _Job(cmd, run_dir, _child_env(threads_per_rank(cfg, ranks)))
    try:
        job.watch(idle_s=max(_IDLE_MIN_S, 4 * timeout_s), grace_s=_ERROR_GRACE_S, stopped_s=timeout_s)
    finally:
        job.stop()
        if job.proc.returncode != 0 or job.killed_because:
            job.remove_leftovers()
    _raise_from(run_dir, job, Path(launcher).name)


class _Job:
    """The launcher process: its output forwarded and kept, its ranks watched and killed."""

    def __init__(self, cmd: list[str], run_dir: Path, env: dict):
        self.run_dir, self.cmd = run_dir, cmd
        self.tail: collections.deque[str] = collections.deque(maxlen=400)
        self.killed_because = ""
        self.reports: list[dict] = []
        self._proxies: list[int] = []
        # What an abnormal end leaves behind (MPICH removes them itself on a normal end): the shared
        # memory segments the ranks map, and hydra's topology files made while the job started.
        self._shm: set[str] = set()
        self._maps_read: set[int] = set()
        self._xml_before = set(glob.glob(_HWLOC_XML))
        self._xml: set[str] = set()
        self._started_ns = time.time_ns()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True,
                                     preexec_fn=die_with_parent_preexec())
        self._reader = threading.Thread(target=self._forward, name="hdist-mpi-output", daemon=True)
        self._reader.start()

    def _forward(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            report = parse_report_line(line)
            if report is not None:  # a rank that could not write its error file: kept, not shown
                self.reports.append(report)
                continue
            self.tail.append(line.rstrip("\n"))
            if "Exit codes:" in line:  # hydra's -print-all-exitcodes, which hdist asked for: kept, not shown
                continue
            if "application called MPI_Abort" in line:  # our own rank's abort: hdist names its cause
                continue
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def _activity(self) -> tuple:
        sig = []
        try:
            with os.scandir(self.run_dir) as it:
                for e in it:
                    try:
                        sig.append((e.name, e.stat().st_mtime_ns, e.stat().st_size))
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
        return tuple(sorted(sig))

    def watch(self, idle_s: float, grace_s: float, stopped_s: float = float("inf")) -> None:
        """Until the launcher exits, or: a rank reported an error and the launcher has not exited
        ``grace_s`` later; no rank file changed for ``idle_s``; a rank has been stopped (SIGSTOP)
        for ``stopped_s``, or is stopped when a peer reports its error (the peer only timed out
        waiting for it: the stopped rank is the failure, and nothing is gained by waiting)."""
        last_sig, last_change, error_at = None, time.monotonic(), None
        stopped_since: dict[int, float] = {}
        while True:
            try:
                self.proc.wait(timeout=0.2)
                if self.proc.returncode != 0 and stopped_since:
                    # MPI_Abort of the peer that timed out took the stopped rank with it: name the cause.
                    self.killed_because = f"rank {min(stopped_since, key=stopped_since.get)} stopped (SIGSTOP) " \
                                          f"and did not go on"
                return
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            sig = self._activity()
            if sig != last_sig:
                last_sig, last_change = sig, now
            pids = self.rank_pid_map()
            self._note_leftovers(pids)
            for rank, pid in pids.items():
                if stopped(pid):
                    stopped_since.setdefault(rank, now)
                else:
                    stopped_since.pop(rank, None)
            first_stopped = min(stopped_since, key=stopped_since.get) if stopped_since else None
            if error_at is None and any(n.startswith("error-r") for n, *_ in sig):
                error_at = now
            if first_stopped is not None and (error_at is not None or now - stopped_since[first_stopped] > stopped_s):
                self.killed_because = f"rank {first_stopped} stopped (SIGSTOP) and did not go on"
                return
            if error_at is not None and now - error_at > grace_s:
                self.killed_because = f"a rank reported an error and the launcher had not exited {grace_s:.0f} s later"
                return
            if now - last_change > idle_s:
                self.killed_because = (f"watchdog: no rank wrote anything for {idle_s:.0f} s and the launcher had not "
                                       f"exited; killed the MPI job")
                return

    def rank_pid_map(self) -> dict[int, int]:
        """rank -> pid of this run's live ranks (from ``rank-r<rank>.pid``)."""
        out = {}
        for f in self.run_dir.glob("rank-r*.pid"):
            try:
                rank = int(f.name[len("rank-r"):-len(".pid")])
                pid = int(f.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:  # only our own rank: the pid's command line names this run directory
                if str(self.run_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out[rank] = pid
            except OSError:
                continue
        return out

    def rank_pids(self) -> list[int]:
        return list(self.rank_pid_map().values())

    def _note_leftovers(self, pids: dict[int, int]) -> None:
        """Record the MPICH segments the ranks map, and hydra's topology files that appeared between the
        launcher's start and the ranks' (its proxies make them at start-up, under a random name)."""
        for pid in set(pids.values()) - self._maps_read:
            try:
                maps = Path(f"/proc/{pid}/maps").read_text()
            except OSError:
                continue
            for line in maps.splitlines():
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith(_MPICH_SHM) and not parts[5].endswith("(deleted)"):
                    self._shm.add(parts[5])
                    self._maps_read.add(pid)  # a rank maps its node's segment once, at MPI_Init
        if pids and not self._xml:
            for f in set(glob.glob(_HWLOC_XML)) - self._xml_before:
                try:
                    if os.stat(f).st_mtime_ns >= self._started_ns - 1_000_000_000:
                        self._xml.add(f)
                except OSError:
                    continue

    def remove_leftovers(self) -> None:
        """After an abnormal end (the ranks are gone): remove the run's shared memory and topology files."""
        for f in self._shm | self._xml:
            try:
                os.unlink(f)
            except OSError:
                pass

    def _hydra_proxies(self) -> list[int]:
        """The parents of our ranks that are hydra proxies (they setsid() away from the launcher)."""
        out = set()
        for pid in self.rank_pids():
            try:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if b"hydra_pmi_proxy" in Path(f"/proc/{ppid}/cmdline").read_bytes():
                    out.add(ppid)
            except (OSError, ValueError, IndexError):
                continue
        return sorted(out)

    def _signal_all(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        # Ranks and hydra's proxies sit in sessions of their own, outside the launcher's group.
        for pid in self._proxies + self.rank_pids():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _wait_ranks(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.rank_pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _terminate(self) -> None:
        """Freeze the launcher and hydra's proxies (SIGSTOP: they cannot SIGKILL the ranks on the
        first exit), then SIGTERM the ranks; a launcher that exited has nothing left to freeze."""
        if self.proc.poll() is not None:
            return
        self._proxies = self._hydra_proxies()
        for kill, target in [(os.killpg, self.proc.pid)] + [(os.kill, p) for p in self._proxies]:
            try:
                kill(target, signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in self.rank_pids():  # ranks sit in sessions of their own (hydra's proxy setsid()s them)
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self) -> None:
        """Leave no process behind: :func:`~hdist.backends._supervise.stop` with the ranks' SIGTERM
        (each closes its metrics files), then SIGKILL for the launcher, its proxies and the ranks."""
        # Waiting is for ranks that still have files to close: not for a stopped rank (it cannot
        # handle its SIGTERM), nor for one that reported its error (it closed them before).
        def closing() -> bool:
            return any(not stopped(pid) and not (self.run_dir / f"error-r{r}.json").exists()
                       for r, pid in self.rank_pid_map().items())

        stop(self._terminate, closing, lambda: self._signal_all(signal.SIGKILL), _STOP_GRACE_S)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(timeout=2)
        for f in self.run_dir.glob("rank-r*.pid"):
            try:
                f.unlink()
            except OSError:
                pass


def _exit_codes(tail) -> list[int] | None:
    """Hydra's ``Exit codes: [host] s0,s1,...`` (wait statuses by rank; one host only)."""
    lines = [ln for ln in tail if "Exit codes:" in ln]
    if len(lines) != 1:
        return None
    m = re.search(r"Exit codes:\s*\[[^\]]*\]\s*([\d,\s]+)$", lines[0].strip())
    return [int(v) for v in m.group(1).replace(" ", "").split(",") if v] if m else None


def _died(tail) -> list[tuple[int, str]]:
    """``(rank, how)`` of the ranks hydra's exit codes say died, the first to die first: a
    non-zero exit or a signal of its own, before the SIGKILLs with which the launcher then cleans
    up the others."""
    codes = _exit_codes(tail) or []
    exits = [(r, f"exit code {s >> 8}") for r, s in enumerate(codes) if not s & 0x7F and s >> 8]
    signals = [(r, s & 0x7F) for r, s in enumerate(codes) if s & 0x7F]
    signals.sort(key=lambda rs: rs[1] == signal.SIGKILL)
    return exits + [(r, f"killed by {signal_name(sig)}") for r, sig in signals]


def _raise_from(run_dir: Path, job: _Job, launcher_name: str) -> None:
    errors = [(e.get("rank"), e.get("kind", "error"), e.get("message", "")) for e in read_errors(run_dir, job.reports)]
    rc = job.proc.returncode
    raise_first(errors, _died(job.tail) if rc else [], "rank", job.killed_because)
    if rc == 0:
        return
    if rc is not None and rc < 0:
        raise RuntimeError(f"{launcher_name} was killed by signal {-rc}")
    last = next((ln for ln in reversed(job.tail) if ln.strip() and "Exit codes:" not in ln), "")
    raise RuntimeError(f"{launcher_name} exited with code {rc} and no rank reported an error"
                       + (f"; its last output: {last.strip()}" if last else ""))


# ---------------------------------------------------------------------------------------------
# The communication interface
# ---------------------------------------------------------------------------------------------

# Parameter-server protocol, on a communicator of its own (user tags never collide). Every request
# and every reply is ONE message, as in a hand-written server loop; what is not data travels in
# the tag:
#   worker -> server  tag = op + _NOPS * (version mod M), payload: the delta (PUSH, PUSH_PULL) or
#                     nothing (PULL, VERSION, DONE)
#   server -> worker  tag = (server version) mod M, payload: x (PULL, PUSH_PULL) or nothing (VERSION)
# M is a power of two that fits the library's MPI_TAG_UB (2^24 with MPICH). The server recovers
# the pusher's version as the latest one congruent to it, so staleness is exact while it is < M;
# a worker recovers the server's version from the last one it saw (exact while fewer than M
# updates happen between two of its reads). Both bounds are millions of updates.
_PULL, _PUSH, _PUSH_PULL, _VERSION, _DONE = 1, 2, 3, 4, 5
_NOPS = 8
_SPIN_S = 0.05  # a wait spins this long, then polls every _IDLE_SLEEP_S
_IDLE_SLEEP_S = 0.0005
_YIELD_MASK = 0  # while spinning, sched_yield() after every (_YIELD_MASK + 1)-th poll


class MPIComm(ServerRankChecks, RealClock):
    """:class:`~hdist.types.Comm` over MPI: buffer (upper-case) mpi4py calls on numpy views of
    torch tensors; every blocking wait is a non-blocking call polled until ``timeout_s``.

    With ``has_server``, rank 0 is the parameter server: it keeps x and its version, and
    :meth:`serve` applies the workers' pushes one at a time in arrival order.
    """

    BACKEND = "MPI"  # in error messages

    shared_memory = False

    def __init__(self, world=None, has_server: bool = False, timeout_s: float = 30.0):
        MPI = _mpi()
        self.MPI = MPI
        world = world if world is not None else MPI.COMM_WORLD
        self.c = world.Dup()  # collectives and user point to point
        self.ps = world.Dup()  # the parameter-server protocol
        self.rank, self.world_size = self.c.Get_rank(), self.c.Get_size()
        self.has_server = bool(has_server)
        if self.has_server and self.world_size < 2:
            raise ValueError("backend=mpi: a server rank needs a world of at least 2 ranks")
        self.n_workers = self.world_size - 1 if self.has_server else self.world_size
        self.worker_index = (self.rank - 1 if self.rank > 0 else None) if self.has_server else self.rank
        self.timeout_s = float(timeout_s)
        tag_ub = self.ps.Get_attr(MPI.TAG_UB) or 32767
        self._mod = 1 << min(24, ((int(tag_ub) + 1) // _NOPS).bit_length() - 1)
        self._status = MPI.Status()
        self._empty = torch.zeros(0).numpy()
        self._pending: list = []  # (request, buffer) of sends not yet complete
        # Parameter-server state: x on the server; the last version seen on a worker.
        self._x: torch.Tensor | None = None
        self._xn = None
        self._delta = None
        self._numel, self._dtype = 0, None
        self._version = 0
        self._done = False
        self._views: list = [None, None]  # (tensor, data_ptr, numel, numpy view) of the last out / delta
        # Device tensors: handed to MPI itself when it is CUDA-aware, else through reused host buffers.
        self.cuda_aware = cuda_aware(MPI)
        self._stage = Staging("cpu")

    # --- buffers ------------------------------------------------------------------------------
    def _buf(self, t: torch.Tensor, slot: str, fill: bool = True):
        """(what MPI reads or writes for ``t``, the host buffer to copy back into ``t`` from, or None).

        A contiguous CPU tensor: a numpy view of its own memory. A contiguous CUDA tensor on a CUDA-aware
        MPI: the tensor itself (mpi4py takes GPU memory through DLPack), once the device has finished the
        kernels that write it (MPI does not wait for torch's stream). Anything else (a GPU tensor on an MPI
        without CUDA support, a strided view): this call site's reused host buffer, filled from ``t`` when
        ``fill`` (MPI reads it)."""
        if self._stage.in_place(t):
            return (t.detach() if t.requires_grad else t).numpy(), None
        if self.cuda_aware and t.is_cuda and t.is_contiguous():
            torch.cuda.synchronize(t.device)  # sync point: t's values are written before MPI reads them
            return t.detach(), None
        host = self._stage.to_home(t, slot) if fill else self._stage.home_for(t, slot)
        return host.numpy(), host

    def _back(self, t: torch.Tensor, host: torch.Tensor | None) -> None:
        if host is not None:
            self._stage.back(t, host)

    # --- waiting ------------------------------------------------------------------------------
    def _poll(self, done: Callable[[], bool], what: str) -> None:
        """Call ``done`` (an MPI test) until it says yes: spinning while a reply is quick (and
        yielding the core every few polls, for ranks that share it), then with short sleeps;
        give up after ``timeout_s``."""
        yield_, clock = os.sched_yield, time.monotonic
        t0 = clock()
        spin_until, deadline = t0 + _SPIN_S, t0 + self.timeout_s
        n, idle = 0, False
        while not done():
            n += 1
            if idle:
                time.sleep(_IDLE_SLEEP_S)
            elif not n & _YIELD_MASK:
                yield_()
            if not n & 255:
                now = clock()
                if now > deadline:
                    raise PeerFailed(f"{what}: nothing within {self.timeout_s:.0f} s (a peer failed or hangs; "
                                     f"backend.timeout_s)")
                idle = now > spin_until

    def _wait(self, req, what: str, status=None) -> None:
        if not req.Test(status):
            self._poll(lambda: req.Test(status), what)

    def _waitall(self, reqs: list, what: str) -> None:
        testall = self.MPI.Request.Testall
        if not testall(reqs):
            self._poll(lambda: testall(reqs), what)

    # --- collectives --------------------------------------------------------------------------
    def barrier(self) -> None:
        self._wait(self.c.Ibarrier(), "barrier")

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> None:
        arr, host = self._buf(tensor, "collective", fill=self.rank == root)
        self._wait(self.c.Ibcast(arr, root=root), f"broadcast from rank {root}")
        if self.rank != root:
            self._back(tensor, host)

    def allreduce(self, tensor: torch.Tensor, op: str = "sum") -> None:
        if op not in ("sum", "mean"):
            raise ValueError(f"allreduce op {op!r}: expected sum or mean")
        arr, host = self._buf(tensor, "collective")
        self._wait(self.c.Iallreduce(self.MPI.IN_PLACE, arr, op=self.MPI.SUM), "allreduce")
        self._back(tensor, host)
        if op == "mean":
            tensor.div_(self.world_size)

    # --- point to point -----------------------------------------------------------------------
    def send(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> None:
        # Buffered, like the shared-memory backends: the receiver gets the values at the time of
        # the call, and a send never waits for its receive (a ring of sends then receives works).
        # A copy of its own (the pending send reads it later): on the GPU for a CUDA-aware MPI, else in host memory.
        if self.cuda_aware and tensor.is_cuda:
            arr = tensor.detach().reshape(-1).clone()
            torch.cuda.synchronize(arr.device)  # sync point: the copy is made before MPI reads it
        else:
            arr = self._stage.fresh(tensor).numpy()
        self._pending.append((self.c.Isend(arr, dst, tag), arr))
        self._pending = [(r, a) for r, a in self._pending if not r.Test()]

    def recv(self, tensor: torch.Tensor, src: int | None = None, tag: int = 0) -> int:
        arr, host = self._buf(tensor, "recv", fill=False)
        source = self.MPI.ANY_SOURCE if src is None else src
        st = self._status
        self._wait(self.c.Irecv(arr, source, tag), f"recv from {'any rank' if src is None else src} tag {tag}", st)
        self._back(tensor, host)
        return st.Get_source()

    def close(self) -> None:
        """Complete the sends still in flight (at most ``timeout_s``), then free the communicators."""
        if self._pending:
            self._waitall([r for r, _ in self._pending], "sends in flight")
            self._pending = []
        for c in (self.c, self.ps):
            try:
                c.Free()
            except Exception:
                pass

    # --- parameter server ---------------------------------------------------------------------
    def _view(self, t: torch.Tensor, slot: int, fill: bool):
        """``_buf(t)``, remembered per call site (0: out, 1: delta) for the CPU tensor passed last time:
        algorithms pull into (and often push from) the same buffer at every step."""
        cached = self._views[slot]
        if (cached is not None and cached[0] is t and cached[1] == t.data_ptr() and cached[2] == t.numel()
                and t.is_contiguous()):
            return cached[3], None
        arr, host = self._buf(t, ("out", "delta")[slot], fill)
        self._views[slot] = (t, t.data_ptr(), t.numel(), arr) if host is None and t.is_cpu else None
        return arr, host

    def _seen(self, tag: int) -> int:
        """The server's version from a reply tag (its value mod M) and the last version seen."""
        self._version += (tag - self._version) % self._mod
        return self._version

    def _server_buffers(self) -> None:
        # Buffer calls read and write numpy views: x's own, and one receive buffer for pushed deltas.
        self._xn = self._x.numpy()
        self._delta = torch.empty_like(self._x)

    def ps_version(self) -> int:
        self._need_server("ps_version")
        if self.rank == 0 or self._done:
            return self._version
        st = self._status
        req = self.ps.Irecv(self._empty, 0, self.MPI.ANY_TAG)
        self.ps.Send(self._empty, 0, _VERSION)
        self._wait(req, "ps_version: the server's reply", st)
        return self._seen(st.Get_tag())

    def pull(self, out: torch.Tensor, consistent: bool = True) -> int:
        # Always consistent: the server sends a whole x between two updates.
        self._need_server("pull")
        if self.rank == 0:
            out.copy_(self._x.view_as(out))
            return self._version
        if self._done:
            raise RuntimeError("pull: called after ps_done")
        arr, host = self._view(out, 0, fill=False)
        st = self._status
        req = self.ps.Irecv(arr, 0, self.MPI.ANY_TAG)  # posted before the request goes out
        self.ps.Send(self._empty, 0, _PULL)
        self._wait(req, "pull: the server's reply", st)
        self._back(out, host)
        return self._seen(st.Get_tag())

    def push(self, delta: torch.Tensor, version: int, consistent: bool = True, donate: bool = False) -> None:
        """Send ``delta`` to the server and return None: the server applies it in arrival order
        and reports the staleness to ``serve``'s ``on_apply``."""
        self._worker_only("push")
        self._check_delta(delta)
        arr, _ = self._view(delta, 1, fill=True)
        self._wait(self.ps.Isend(arr, 0, _PUSH + _NOPS * (int(version) % self._mod)), "push: the server's receive")
        return None

    def push_pull(self, delta: torch.Tensor, version: int, out: torch.Tensor) -> tuple[int, int]:
        self._worker_only("push_pull")
        self._check_delta(delta)
        darr, _ = self._view(delta, 1, fill=True)
        oarr, host = self._view(out, 0, fill=False)
        st = self._status
        rreq = self.ps.Irecv(oarr, 0, self.MPI.ANY_TAG)
        self._wait(self.ps.Isend(darr, 0, _PUSH_PULL + _NOPS * (int(version) % self._mod)),
                   "push_pull: the server's receive")
        self._wait(rreq, "push_pull: the server's reply", st)
        self._back(out, host)
        after = self._seen(st.Get_tag())
        return after - 1 - int(version), after

    def ps_done(self) -> None:
        if not self.has_server or self.rank == 0 or self._done:
            return None
        self.ps.Send(self._empty, 0, _DONE)
        self._done = True
        return None

    def serve(self, on_apply: Callable[[int, torch.Tensor, int], None] | None = None) -> None:
        """The server loop: one request at a time, in arrival order, until every worker is done."""
        self._server_only()
        ps, wait, st = self.ps, self._wait, self._status
        x, xn, delta = self._x, self._xn, self._delta
        dn = delta.numpy()
        any_source, any_tag, mod = self.MPI.ANY_SOURCE, self.MPI.ANY_TAG, self._mod
        active = self.n_workers
        while active:
            wait(ps.Irecv(dn, any_source, any_tag), "serve: a worker's request", st)
            src, tag = st.Get_source(), st.Get_tag()
            op = tag % _NOPS
            if op == _PUSH or op == _PUSH_PULL:
                staleness = (self._version - tag // _NOPS) % mod
                x.add_(delta)
                self._version += 1
                if on_apply is not None:
                    on_apply(self._version, x, staleness)
                if op == _PUSH_PULL:
                    wait(ps.Isend(xn, src, self._version % mod), f"serve: the reply to rank {src}")
            elif op == _PULL:
                wait(ps.Isend(xn, src, self._version % mod), f"serve: the reply to rank {src}")
            elif op == _VERSION:
                wait(ps.Isend(self._empty, src, self._version % mod), f"serve: the reply to rank {src}")
            elif op == _DONE:
                active -= 1
            else:
                raise RuntimeError(f"serve: unknown request {op} from rank {src}")


class MPIBackend(ExternalWorldBackend):
    name, families, external = NAME, FAMILIES, _WORLD

    def launch(self, run_dir, cfg, rank_fn, world, run_id="", n_params=0) -> None:
        launch(run_dir, cfg, rank_fn, world, run_id, n_params)

    def library_meta(self, cfg) -> dict:
        # mpi_cuda_aware: whether GPU ranks hand MPI their device memory (true) or stage every message
        # through host buffers (false); see MPIComm.
        name, aware = _library()
        return {"mpi_library": name, "mpi_cuda_aware": aware}


BACKEND = MPIBackend()
