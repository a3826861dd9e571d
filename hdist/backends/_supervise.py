"""Supervising ranks that are processes of their own (backends process, mpi and torchdist).

One copy of what a parent does for its ranks, and of what a world started by the user's launcher
does instead of a parent:

- :func:`die_with_parent` / :func:`die_with_parent_preexec`: a rank (or a launcher) gets SIGKILL
  when the process that started it dies (Linux's PR_SET_PDEATHSIG), so nothing outlives hdist.
- :func:`report_and_exit`: a spawned rank's way out on any exception: ``(rank, kind, message)``
  on the parent's queue, then an exit code that says the kind.
- :func:`watch`: the parent waits for its ranks; after the first failure (a report, or a rank
  that died without one) it gives the others a grace period to end by themselves.
- :func:`stop`: SIGTERM, a grace period, then SIGKILL: no process outlives a run.
- :func:`raise_first`: the run's failure from the ranks' reports: the first real error, else the
  rank that died first without a word, else the first rank that only saw a peer fail.
- :class:`ExternalWorld`: the leader/follower protocol of a world that ``mpiexec``/``srun``/
  ``torchrun`` started: world rank 0 prepares the run directory and announces the run, every
  rank runs its part in place, and rank 0 tells the followers how the run ended.
"""

from __future__ import annotations

import queue
import signal
import time
import traceback
from pathlib import Path
from typing import Callable, NoReturn

from hdist.backends._ranks import failure_kind
from hdist.types import Backend, ConfigError, Diverged, RankCtx

#: (rank, kind, message): what a rank reports; kind is error | write | diverged | interrupted | peer.
Failure = tuple[int, str, str]

#: A rank's exit code by the kind of its failure.
EXIT_CODES = {"error": 1, "write": 1, "peer": 3, "diverged": 4, "interrupted": 128 + signal.SIGTERM}

#: ``backend.external`` values: always run in place / always spawn (anything else: auto).
EXTERNAL_ON = ("true", "yes", "on", "1", "always")
EXTERNAL_OFF = ("false", "no", "off", "0", "never")

_PR_SET_PDEATHSIG = 1


# --- dying with the parent -------------------------------------------------------------------------


def _prctl():
    """libc's prctl, or None where there is none (not Linux)."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort; a no-op elsewhere)."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def die_with_parent_preexec() -> Callable[[], None] | None:
    """:func:`die_with_parent` as a ``subprocess`` preexec_fn (None where it cannot be done). libc
    is loaded here, before the fork, so that the child only makes one call."""
    prctl = _prctl()
    if prctl is None:
        return None
    sig = int(signal.SIGKILL)
    return lambda: prctl(_PR_SET_PDEATHSIG, sig)


# --- a spawned rank's way out ----------------------------------------------------------------------


def report_and_exit(errq, rank: int, exc: BaseException,
                    on_failure: Callable[[], None] | None = None) -> NoReturn:
    """Put ``(rank, kind, message)`` on the parent's queue and exit with the kind's code.

    ``on_failure`` runs first for every kind but ``peer`` (a rank that only saw a peer fail has
    nothing new to tell the others): the process backend's abort flag, which wakes blocked peers.
    A real error carries its traceback; the other kinds are one line.
    """
    kind = failure_kind(exc)
    if on_failure is not None and kind != "peer":
        on_failure()
    if kind == "error":
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    elif kind == "write":
        message = str(exc)
    elif kind == "peer":
        message = f"{type(exc).__name__}: {exc}"
    else:
        message = str(exc)
    errq.put((rank, kind, message))
    raise SystemExit(EXIT_CODES[kind]) from None


# --- the parent ------------------------------------------------------------------------------------


def stopped(pid: int | None) -> bool:
    """True when ``pid`` is stopped (SIGSTOP, SIGTSTP, a debugger): Linux's /proc state T or t."""
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def watch(procs, errq, grace_s: float, on_failure: Callable[[], None] | None = None,
          poll_s: float = 0.1, timeout_s: float | None = None,
          label: str = "rank") -> tuple[list[Failure], dict[int, int], str]:
    """Wait for the ranks (``multiprocessing`` processes, rank = index); on the first failure call
    ``on_failure`` and give the others ``grace_s`` to end by themselves.

    Returns the ranks' reports, the exit codes of the ranks that ended on their own (rank ->
    code), in the order in which they were seen to end: the first rank to die comes first, not
    the lowest one, and the cause when a rank was stopped (SIGSTOP): a stopped rank is the
    failure, not the peers that timed out waiting for it. A rank stopped for ``timeout_s`` is a
    failure on its own (its peers may not wait for it at all), and a failed run whose remaining
    ranks are all stopped does not wait out the grace period: they cannot end by themselves.
    """
    errors: list[Failure] = []
    ended: dict[int, int] = {}
    failed_at = None
    stopped_since: dict[int, float] = {}
    cause = ""
    while True:
        try:
            errors.append(errq.get(timeout=poll_s))
        except queue.Empty:
            pass
        now = time.monotonic()
        for r, p in enumerate(procs):
            if r not in ended and p.exitcode is not None:
                ended[r] = p.exitcode
        for r, p in enumerate(procs):
            if r in ended or not stopped(p.pid):
                stopped_since.pop(r, None)
            else:
                stopped_since.setdefault(r, now)
        first_stopped = min(stopped_since, key=stopped_since.get) if stopped_since else None
        stuck = (first_stopped is not None and timeout_s is not None
                 and now - stopped_since[first_stopped] > timeout_s)
        if failed_at is None and (errors or any(c != 0 for c in ended.values()) or stuck):
            failed_at = now
            if first_stopped is not None:
                cause = f"{label} {first_stopped} stopped (SIGSTOP) and did not go on"
            if on_failure is not None:
                on_failure()
        if len(ended) == len(procs):
            break
        if failed_at is not None and (now - failed_at > grace_s or len(ended) + len(stopped_since) == len(procs)):
            break
    while True:  # reports sent just before their rank exited
        try:
            errors.append(errq.get(timeout=0.05))
        except queue.Empty:
            break
    return errors, ended, cause


def stop(terminate: Callable[[], None], alive: Callable[[], bool], kill: Callable[[], None],
         grace_s: float) -> None:
    """SIGTERM (``terminate``), up to ``grace_s`` for everything to end (a rank's SIGTERM handler
    closes its metrics files), then SIGKILL (``kill``) for whatever is left."""
    terminate()
    deadline = time.monotonic() + grace_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    kill()


def stop_procs(procs, grace_s: float) -> None:
    """:func:`stop` for ``multiprocessing`` processes; a rank blocked inside a library, where its
    SIGTERM handler cannot run, gets the SIGKILL."""

    def terminate() -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()

    def kill() -> None:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=2)

    def alive() -> bool:
        # A stopped rank cannot handle its SIGTERM: waiting for it would only add the grace period.
        return any(p.is_alive() and not stopped(p.pid) for p in procs)

    stop(terminate, alive, kill, grace_s)


def exit_how(code: int) -> str:
    """A ``multiprocessing``/``subprocess`` exit code in words: negative codes are signals."""
    return f"killed by {signal_name(-code)}" if code < 0 else f"exit code {code}"


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def raise_first(failures: list[Failure], died: list[tuple[int, str]], label: str = "rank",
                killed_because: str = "") -> None:
    """Raise the run's failure, if the ranks' reports and deaths say there was one.

    ``failures``: the reports, earliest first; ``died``: ``(rank, how)`` of the ranks that ended
    on their own with a failure, first to die first; ``killed_because``: why the parent ended
    the ranks itself (a watchdog), which is the cause when no rank reports a real error.
    Order: the first real error (:class:`Diverged` for a diverged rank), ``killed_because``, the
    first rank that died without a report (the others only saw it die), the first report.
    """
    from hdist.rundir import RankWriteFailed

    real = [f for f in failures if f[1] not in ("peer", "interrupted")]
    if real:
        rank, kind, msg = real[0]
        if kind == "diverged":
            raise Diverged(msg)
        if kind == "write":
            raise RankWriteFailed(f"{label} {rank}: {msg}")
        raise RuntimeError(f"{label} {rank}: {msg}")
    if killed_because:
        raise RuntimeError(killed_because)
    reported = {f[0] for f in failures}
    # A rank that exited with the peer code only saw another fail, even when its report was lost.
    peer_exit = f"exit code {EXIT_CODES['peer']}"
    silent = [(r, how) for r, how in died if r not in reported and how != peer_exit]
    if silent:
        rank, how = silent[0]
        if how.startswith("killed by"):
            raise RuntimeError(f"{label} {rank} {how}")
        raise RuntimeError(f"{label} {rank} died ({how}) without a message")
    if failures:
        rank, _, msg = failures[0]
        raise RuntimeError(f"{label} {rank}: {msg}")


def supervise_procs(procs, errq, grace_s: float, stop_grace_s: float, label: str,
                    on_failure: Callable[[], None] | None = None, timeout_s: float | None = None) -> None:
    """Start ``procs`` (rank = index), :func:`watch` them, :func:`stop_procs` what is left and
    :func:`raise_first`; a rank stopped by the parent is named only when nothing else explains
    the failure."""
    errors: list[Failure] = []
    ended: dict[int, int] = {}
    cause = ""
    try:
        for p in procs:
            p.start()
        errors, ended, cause = watch(procs, errq, grace_s, on_failure, timeout_s=timeout_s, label=label)
    finally:
        stop_procs(procs, stop_grace_s)
    raise_first(errors, [(r, exit_how(c)) for r, c in ended.items() if c != 0], label, cause)
    bad = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode not in (0, None)]
    if bad:
        rank, code = bad[0]
        raise RuntimeError(f"{label} {rank} exited with code {code}")


# --- worlds started by the user's launcher ---------------------------------------------------------


def external_mode(cfg) -> str:
    """``backend.external`` as on | off | auto (no config: auto)."""
    mode = "auto" if cfg is None else str(cfg.backend.get("external", "auto")).lower()
    return "on" if mode in EXTERNAL_ON else "off" if mode in EXTERNAL_OFF else "auto"


class ExternalWorld:
    """The leader/follower protocol of a world the user's launcher started (``mpiexec``, ``srun``,
    ``torchrun``): nothing is spawned, every process of the world is one rank of the run.

    World rank 0 prepares the run directory and, from the backend's ``launch``, :meth:`lead`\\ s:
    it checks the world's size, announces the run and runs its own rank. Every other rank waits in
    :meth:`follow`, runs the part rank 0 announced, and returns with the result that rank 0 sends
    with :meth:`release` after it recorded the run (or skipped it, or failed before the start).

    A backend gives the transport (:meth:`tell` on rank 0, :meth:`hear` on the others, in the
    same order on every rank), the world (:meth:`size`, :meth:`rank`), what else the run's
    announcement carries (:meth:`announce`) and how this process runs its rank (:meth:`run_part`).
    """

    #: The world's name in messages ("this MPI world has ...").
    NAME = ""

    def size(self) -> int:
        """The number of processes in the world (1 where no launcher started this process)."""
        raise NotImplementedError

    def rank(self) -> int:
        raise NotImplementedError

    def require(self) -> None:
        """With ``backend.external`` on: raise ConfigError when there is no such world (default: none)."""

    def start_hint(self, need: int) -> str:
        """How to start a world of ``need`` processes, for the size error."""
        raise NotImplementedError

    def tell(self, msg: dict) -> None:
        """World rank 0: send ``msg`` to every other rank."""
        raise NotImplementedError

    def hear(self) -> dict:
        """A non-zero rank: the next message of world rank 0."""
        raise NotImplementedError

    def announce(self, cfg, server: bool, ranks: int | None) -> dict:
        """What the run's announcement carries besides run_dir, run_id, n_params and server (default: nothing)."""
        return {}

    def run_part(self, msg: dict, rank_fn: Callable[[RankCtx], None], cfg=None) -> None:
        """This process's rank of the announced run ``msg``; ``cfg`` is rank 0's (None on a follower)."""
        raise NotImplementedError

    # --- the protocol -----------------------------------------------------------------------------
    def active(self, cfg=None) -> bool:
        """True when this process is one rank of such a world larger than one (and ``backend.external``
        is not off): the run's ranks are then that world's ranks."""
        mode = external_mode(cfg)
        if mode == "off":
            return False
        if mode == "on":
            self.require()
            return True
        return self.size() > 1

    def lead(self, run_dir: Path, cfg, rank_fn: Callable[[RankCtx], None], run_id: str, n_params: int,
             server: bool, ranks: int | None = None) -> None:
        """World rank 0: check that the world has the run's ranks, announce the run, run rank 0."""
        size = self.size()
        need = int(ranks or int(cfg.topology.workers) + (1 if server else 0))  # ranks: one per pipeline stage
        if size != need and ranks:
            raise ConfigError(f"topology.stages={ranks}: this {self.NAME} world has {size} rank(s) but a pipeline "
                              f"needs one rank per stage; {self.start_hint(ranks)} or set topology.stages={size}")
        if size != need:
            raise ConfigError(f"topology.workers={cfg.topology.workers}: this {self.NAME} world has {size} rank(s) "
                              f"but the run needs {need} ({cfg.topology.workers} worker(s)"
                              f"{' + 1 server' if server else ''}); {self.start_hint(need)} or set "
                              f"topology.workers={size - (1 if server else 0)}")
        msg = {"kind": "run", "run_dir": str(run_dir), "run_id": run_id, "n_params": int(n_params),
               "server": bool(server), **self.announce(cfg, server, ranks)}
        self.tell(msg)
        self.run_part(msg, rank_fn, cfg)

    def follow(self, rank_fn: Callable[[RankCtx], None]) -> tuple:
        """A non-zero rank: run the part of the run rank 0 announces.

        Returns ``(run_id, run_dir, status, reason, skipped)`` as rank 0 recorded it.
        """
        msg = self.hear()
        if msg["kind"] == "run":
            self.run_part(msg, rank_fn)
            msg = self.hear()
        return msg["run_id"], Path(msg["run_dir"]), msg["status"], msg["reason"], msg["skipped"]

    def release(self, result) -> None:
        """World rank 0 after its run (or its skip, or its failure before the start): tell the
        followers how it ended so that they return too. ``result`` is a RunResult-like object."""
        self.tell({"kind": "end", "run_id": result.run_id, "run_dir": str(result.run_dir),
                   "status": result.status, "reason": result.reason, "skipped": bool(result.skipped)})


class ExternalWorldBackend(Backend):
    """A backend whose ranks may be a world the user's launcher started (mpi, torchdist): rank 0
    serves a parameter-server algorithm, and the external-world hooks go to its :class:`ExternalWorld`."""

    external: ExternalWorld

    def server_rank(self, cfg) -> bool:
        return True

    def in_external_world(self, cfg) -> bool:
        return self.external.active(cfg)

    def world_rank(self) -> int:
        return self.external.rank()

    def follow(self, rank_fn) -> tuple:
        return self.external.follow(rank_fn)

    def release(self, result) -> None:
        self.external.release(result)
