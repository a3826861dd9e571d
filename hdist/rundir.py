"""One writer per run directory: the owner's lock, the ranks' lock, and room to record a failure.

- ``<run_dir>/.lock``: ``fcntl.flock`` held exclusively, for the whole run, by the process that owns
  the run (the one that runs ``hdist.launch.execute``). It names its holder (pid, host). A second
  process that finds it held skips the run and touches nothing; the OS drops the lock of a dead
  process, so a stale lock is never in the way.
- ``<run_dir>/.ranks.lock``: every rank of the run holds it shared (:func:`hold_ranks_lock`). A new
  owner takes it exclusively before it clears the directory, so a run is only redone once the
  ranks of its previous owner are gone, never while an orphan still writes into it; then it
  downgrades to shared so its own ranks can join.
- ``<run_dir>/.reserve``: a few KB set aside when the run starts. On a full disk the owner frees it
  to write the ``failed`` status (:func:`with_reserve`).
- :func:`die_with_owner`: a rank's watchdog on the owner's pid. Ranks started by a forkserver are
  not the owner's children (the forkserver outlives it), so PR_SET_PDEATHSIG alone would not end them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

LOCK = ".lock"
RANKS_LOCK = ".ranks.lock"
RESERVE = ".reserve"
RESERVE_BYTES = 64 * 1024  # enough for status.json, meta.json and error.txt of a failed run
_ACQUIRE_TRIES = 4  # tries 50 ms apart before a held lock counts as another owner's
_KEEP = (LOCK, RANKS_LOCK)  # what clearing the directory leaves: the locks held by this owner

#: errno values that mean "this file cannot be written here" (the run fails with the reason).
WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted", errno.EFBIG: "file too large"}


class WriteFailed(OSError):
    """A file of the run could not be written (disk full, read-only, no permission)."""

    def __str__(self) -> str:
        return f"{WRITE_ERRNOS.get(self.errno, os.strerror(self.errno or 0))} writing {self.filename}"


def write_failed(exc: BaseException, path) -> WriteFailed | None:
    """``exc`` as a :class:`WriteFailed` naming ``path`` when it is a write error of the disk (else None)."""
    if isinstance(exc, WriteFailed):
        return exc
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        return WriteFailed(exc.errno, os.strerror(exc.errno), str(path))
    # pyarrow reports a full disk as its own OSError subclass without errno, in its message.
    if isinstance(exc, OSError) and "No space left on device" in str(exc):
        return WriteFailed(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return None


class RankWriteFailed(RuntimeError):
    """A rank of the run could not write one of its files (its :class:`WriteFailed`, with the rank named)."""


class Held(Exception):
    """The run directory is owned by another live process."""

    def __init__(self, holder: dict):
        self.holder = holder
        super().__init__(f"running elsewhere, pid {holder.get('pid', '?')} on host {holder.get('host', '?')}")


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def holder(run_dir: Path) -> dict | None:
    """The owner of ``run_dir`` when a live process holds its lock (``{"pid", "host"}``), else None.

    Probes with a shared, non-blocking lock that it drops at once: it never keeps an owner out."""
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(path) or {"pid": "?", "host": "?"}
    finally:
        os.close(fd)  # closing drops a lock this probe took
    return None


class RunLock:
    """The owner's exclusive lock on one run directory (see the module doc); a context manager."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None
        self._ranks_fd: int | None = None

    def acquire(self) -> None:
        """Take ``.lock`` or raise :class:`Held`; creates the directory."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        # A few tries: `hdist ls` probes the lock (shared, for an instant) and must not turn a run away.
        for attempt in range(_ACQUIRE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _ACQUIRE_TRIES - 1:
                    os.close(fd)
                    raise Held(_read_holder(path)) from None
                time.sleep(0.05)
        self._fd = fd
        # Who holds it, for the second process's message and `hdist ls`. Written in place: readers
        # that find it empty or torn say "?" (the lock, not this text, is what counts).
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        except OSError:
            pass

    def wait_for_old_ranks(self, timeout_s: float) -> bool:
        """Take ``.ranks.lock`` exclusively (ranks of a previous owner hold it shared), then downgrade
        to shared so this owner's ranks can join. False when old ranks still run after ``timeout_s``."""
        fd = os.open(self.run_dir / RANKS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    return False
                time.sleep(0.1)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._ranks_fd = fd
        return True

    def clear(self) -> None:
        """Empty the directory of a previous attempt, keeping the locks this owner holds."""
        import shutil

        for entry in os.scandir(self.run_dir):
            if entry.name in _KEEP:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass

    def reserve(self) -> None:
        """Set ``RESERVE_BYTES`` aside (best effort: a disk already full has none to give)."""
        try:
            with open(self.run_dir / RESERVE, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            drop_reserve(self.run_dir)

    def release(self) -> None:
        drop_reserve(self.run_dir)
        for fd in (self._ranks_fd, self._fd):
            if fd is not None:
                os.close(fd)  # drops the lock
        self._fd = self._ranks_fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def drop_reserve(run_dir: Path) -> None:
    try:
        os.unlink(Path(run_dir) / RESERVE)
    except OSError:
        pass


def with_reserve(run_dir: Path, write) -> None:
    """``write()``; on a full disk free the reserve and try once more (the failed status must land)."""
    try:
        write()
    except OSError as e:
        if write_failed(e, "") is None:
            raise
        drop_reserve(run_dir)
        write()


# --- the ranks' side ---------------------------------------------------------------------------------


def hold_ranks_lock(run_dir: Path) -> int | None:
    """A rank holds ``.ranks.lock`` shared for its life (the fd is never closed: the OS drops the lock
    when the process ends). None where the file is not there (a run directory of an older layout)."""
    try:
        fd = os.open(Path(run_dir) / RANKS_LOCK, os.O_RDONLY)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_owner(owner_pid: int, poll_s: float = 0.5) -> None:
    """SIGKILL this rank as soon as ``owner_pid`` (the run's owner) is gone: a daemon thread waits on a
    pidfd (Linux >= 5.3), else polls the pid. Nothing is flushed: the next owner clears the directory."""
    import select
    import signal

    if owner_pid <= 1 or owner_pid == os.getpid():
        return
    try:
        pidfd = os.pidfd_open(owner_pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None and not _alive(owner_pid):
        os.kill(os.getpid(), signal.SIGKILL)

    def wait() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the process has ended
        else:
            while _alive(owner_pid):
                time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait, name="hdist-die-with-owner", daemon=True).start()


def rank_guard(run_dir: Path, owner_pid: int, rank: int) -> None:
    """What every spawned rank does first: die with the owner, hold the ranks' lock, and leave its pid
    in ``rank-r<rank>.pid`` (as MPI ranks do) for whoever has to find it; the owner removes them."""
    die_with_owner(owner_pid)
    hold_ranks_lock(run_dir)
    try:
        (Path(run_dir) / f"rank-r{rank}.pid").write_text(f"{os.getpid()}\n")
    except OSError:
        pass  # only a convenience: a full disk fails the run where it matters


def remove_pid_files(run_dir: Path) -> None:
    for f in Path(run_dir).glob("rank-r*.pid"):
        try:
            f.unlink()
        except OSError:
            pass
