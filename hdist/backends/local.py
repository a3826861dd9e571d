"""The communication interface on one machine: threads or processes sharing memory.

:class:`LocalComm` implements :class:`~hdist.types.Comm` once for both the ``thread`` and the
``process`` backends. What differs is only where the state lives and which primitives guard it
(:class:`LocalState`): ``threading`` objects and ordinary tensors for threads;
``multiprocessing`` objects, :class:`ProcessBarrier`, :class:`ProcessFlag` and ``share_memory_()``
tensors for processes.

Shared state:
- ``x``: the shared parameter vector (the "server" of parameter-server algorithms).
- ``counts[r]``: updates applied by rank r. The version of x is ``counts.sum()``. Each rank
  writes only its own slot, so the counter needs no lock; a lock-free reader may see a sum
  that is a little behind (which is what an inconsistent read is).
- ``scratch[r]``: rank r's slot for collectives (all-reduce, broadcast), chunked when a
  tensor is larger than a slot.
- ``lock``: guards x for consistent reads and writes; ``barrier``: collectives; ``abort``: set
  by a failing rank so that every blocked peer gives up instead of waiting forever.
- ``inbox[r]``: messages to rank r (point-to-point).

Devices. All of that stays in host memory whatever ``topology.devices`` says; a rank's own tensors
live on its device (``ctx.device``: a GPU, or the CPU). A read copies host -> device (``copy_`` works
across devices); a write (push, the collectives) first copies the rank's tensor into a host buffer of
its own (:class:`~hdist.backends.staging.Staging`, reused call after call) and works on that. A
message (send) is a host copy: a CUDA tensor put on a queue would be shared with the receiving
process by CUDA IPC, valid only while the sender keeps it alive.
"""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch

from hdist.backends.staging import Staging
from hdist.types import PeerFailed as BasePeerFailed
from hdist.types import RealClock

# Seconds a blocked lock wait or receive sleeps before it looks at the abort flag again: how late a
# rank notices that a peer failed while it waited (a notified wait wakes at once, not after this).
ABORT_POLL_S = 0.5


class PeerFailed(BasePeerFailed):
    """Another rank failed (or a wait timed out): this rank stops too."""


class ProcessFlag:
    """The process backend's abort flag: one shared byte, set and read without a lock.

    ``multiprocessing.Event`` takes a lock in ``is_set`` and ``set`` and waits on it without a
    timeout: a rank stopped (SIGSTOP) inside ``is_set`` would hold it, and every peer's next check
    and the parent's ``set`` would block for good. A one-byte store is atomic and a peer sees it at
    its next read, which is all a flag that is only ever set (never waited on) needs.
    """

    def __init__(self, ctx):
        self._value = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)


class ProcessBarrier:
    """A reusable barrier for processes whose every wait is bounded and that ``abort`` always breaks.

    ``multiprocessing.Barrier`` cannot be: its last arrival wakes the others with
    ``Condition.notify_all``, which waits, without a timeout and holding the barrier's lock, until
    each sleeper has woken and said so. A peer stopped (SIGSTOP) while it sleeps in the barrier
    never says so: the last arrival blocks for good, and so does ``abort`` (it needs the lock).

    Here no arrival waits on a peer: the last one of a round opens that round's gate (a semaphore)
    once for each of the others and goes on; every wait (the lock, the gate) is taken in slices of
    ``poll_s``, and between slices a rank looks at the broken flag and its deadline. ``abort`` writes
    the flag without the lock (its holder may be the stopped rank) and opens both gates, so that
    sleepers wake at once. Waiters then raise :class:`threading.BrokenBarrierError`, as
    ``threading.Barrier``'s do; a broken barrier stays broken (a failed run does not go on).

    Two gates, used by alternate rounds (generations): a rank leaves a round only by taking one
    token of its gate, so the n - 1 tokens of round g are all taken before round g + 1 can end, and
    round g + 2, the next to use that gate, finds it empty. With one gate, a rank quick to the next
    round could take a token meant for a peer still asleep in this one.
    """

    def __init__(self, parties: int, ctx, poll_s: float = ABORT_POLL_S):
        self.parties, self._poll_s = parties, poll_s
        self._lock = ctx.Lock()  # guards _count and _generation
        self._gates = (ctx.Semaphore(0), ctx.Semaphore(0))
        # [arrived in this round, round number, broken]; a RawArray: _lock guards the first two, and
        # broken is written without it (see abort)
        self._state = ctx.RawArray("q", 3)

    @property
    def broken(self) -> bool:
        return bool(self._state[2])

    def abort(self) -> None:
        # Without the lock: a rank stopped between its acquire and release holds it. A stale read of
        # the flag only delays a waiter to its next slice (poll_s).
        self._state[2] = 1
        for gate in self._gates:
            for _ in range(self.parties):
                gate.release()

    def _take(self, sem, deadline: float) -> None:
        """Acquire ``sem`` in slices of poll_s; raise BrokenBarrierError once the barrier is broken
        or ``deadline`` (monotonic s) has passed (and then break it: the peers stop waiting too)."""
        while not sem.acquire(timeout=max(0.0, min(self._poll_s, deadline - time.monotonic()))):
            if self.broken:
                raise threading.BrokenBarrierError
            if time.monotonic() >= deadline:
                self.abort()
                raise threading.BrokenBarrierError

    def wait(self, timeout: float | None = None) -> int:
        """Wait until ``parties`` ranks have called it (this round); return the arrival index, as
        ``threading.Barrier.wait`` does. ``timeout`` in seconds (None: until the barrier is broken)."""
        deadline = float("inf") if timeout is None else time.monotonic() + timeout
        state = self._state
        self._take(self._lock, deadline)
        try:
            if self.broken:
                raise threading.BrokenBarrierError
            index, generation = state[0], state[1]
            if index + 1 == self.parties:
                # Last arrival: the next round starts now, and this round's sleepers are released
                # without waiting for any of them to wake (a semaphore's release never blocks).
                state[0], state[1] = 0, generation + 1
                gate = self._gates[generation % 2]
                for _ in range(self.parties - 1):
                    gate.release()
                return index
            state[0] = index + 1
        finally:
            self._lock.release()
        self._take(self._gates[generation % 2], deadline)
        # A token taken after an abort may be one of abort's: the round did not necessarily end.
        if self.broken:
            raise threading.BrokenBarrierError
        return index


@dataclass
class LocalState:
    x: torch.Tensor  # [d] shared parameters (allocated at launch; ps_init fills it)
    counts: torch.Tensor  # [P] int64 updates applied per rank
    scratch: torch.Tensor  # [P, slot] collective buffers
    lock: Any
    barrier: Any
    abort: Any  # a flag with set() and is_set(): threading.Event, ProcessFlag
    inboxes: list  # one queue per rank
    timeout_s: float
    spin_s: float = 0.0  # seconds a rank polls a held lock before it sleeps on it (0: sleep at once)

    def fail(self) -> None:
        """Tell every rank that the run failed: the abort flag (checked at every pull, send, recv and
        barrier), and a broken barrier, so that ranks already waiting in one wake now instead of at
        ``timeout_s``. On the process backend neither step waits on a rank (:class:`ProcessFlag`,
        :class:`ProcessBarrier`): the parent's watcher calls it while a rank may be stopped."""
        self.abort.set()
        self.barrier.abort()


class LocalComm(RealClock):
    """:class:`~hdist.types.Comm` over a :class:`LocalState` (threads or processes)."""

    has_server = False
    shared_memory = True

    def __init__(self, state: LocalState, rank: int, world_size: int, block: int | None = None, seed: int = 0,
                 staging: Staging | None = None):
        self.s, self.rank, self.world_size = state, rank, world_size
        # This rank's host buffers for its device tensors (the shared state is host memory).
        self._stage = staging if staging is not None else Staging("cpu")
        self.n_workers, self.worker_index = world_size, rank
        self._pending: list[tuple[int, int, torch.Tensor]] = []
        self._block = block
        self._gen = torch.Generator().manual_seed(seed)

    # --- failure handling ---------------------------------------------------------------------
    def _check(self) -> None:
        if self.s.abort.is_set():
            raise PeerFailed("another rank failed")

    def _wait_barrier(self) -> None:
        # A broken barrier means a peer failed or timed out: never wait past timeout_s.
        self._check()
        try:
            self.s.barrier.wait(timeout=self.s.timeout_s)
        except Exception as e:  # threading.BrokenBarrierError / multiprocessing's equivalent
            self.s.abort.set()
            raise PeerFailed(f"barrier: {type(e).__name__} (a peer failed or took > "
                             f"{self.s.timeout_s:.0f} s)") from None
        self._check()

    def _acquire(self):
        # Poll first, then sleep. The lock is held for one copy of x (tens of us); a rank that
        # sleeps on it instead is woken ~30 us after the release, and its core, idle meanwhile,
        # runs its next step slower (measured on the process backend, MLP, 2 workers on 2 cores:
        # 450-490 us per update sleeping at once, 360-375 polling, compute per step back to the
        # 1-worker value; bench-process-speedup times both ways: 1.22x). Polling is off when ranks
        # outnumber cores (the poller would take the holder's core): the launcher sets spin_s to 0 then.
        if self.s.spin_s:
            lock, until = self.s.lock, time.perf_counter() + self.s.spin_s
            while True:
                if lock.acquire(False):
                    return
                if time.perf_counter() >= until:
                    break
        # Sleep on it in slices, checking the abort flag between them: a peer can fail holding the
        # lock and never release it (a SIGTERM raised in rank 0 between its acquire and the try
        # that releases it, a killed process), and the ranks waiting must stop with the run, not
        # timeout_s later (the thread backend's SIGTERM test took 33 s about one run in ten).
        deadline = time.monotonic() + self.s.timeout_s
        while not self.s.lock.acquire(timeout=min(ABORT_POLL_S, self.s.timeout_s)):
            self._check()
            if time.monotonic() > deadline:
                self.s.fail()
                raise PeerFailed(f"lock not acquired within {self.s.timeout_s:.0f} s")

    # --- collectives --------------------------------------------------------------------------
    def barrier(self) -> None:
        self._wait_barrier()

    def _slots(self, dtype: torch.dtype) -> torch.Tensor:
        """The [P, slot] scratch buffers in ``dtype``: the float32 memory reinterpreted, so a float64
        tensor is carried and summed in float64 (a copy through float32 slots would round it: the
        dual methods' duality gap near 1e-10 needs every bit). The slot is even (scratch_slot)."""
        scratch = self.s.scratch
        return scratch if dtype == scratch.dtype else scratch.view(dtype)

    def allreduce(self, tensor: torch.Tensor, op: str = "sum") -> None:
        if op not in ("sum", "mean"):
            raise ValueError(f"allreduce op {op!r}: expected sum or mean")
        flat = self._stage.to_home(tensor, "collective")  # the tensor itself when it is in host memory
        scratch = self._slots(flat.dtype)
        slot = scratch.shape[1]
        for lo in range(0, flat.numel(), slot):
            hi = min(flat.numel(), lo + slot)
            scratch[self.rank, : hi - lo].copy_(flat[lo:hi])
            self._wait_barrier()  # every slot written
            # Sum in rank order on every rank: identical results everywhere (deterministic).
            torch.sum(scratch[:, : hi - lo], dim=0, out=flat[lo:hi])
            self._wait_barrier()  # every rank has read before any slot is overwritten
        if op == "mean":
            flat.div_(self.world_size)
        self._stage.back(tensor, flat)

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> None:
        # The root's values go out; the others' buffer only receives (no copy of what it held).
        stage = self._stage
        flat = stage.to_home(tensor, "collective") if self.rank == root else stage.home_for(tensor, "collective")
        scratch = self._slots(flat.dtype)
        slot = scratch.shape[1]
        for lo in range(0, flat.numel(), slot):
            hi = min(flat.numel(), lo + slot)
            if self.rank == root:
                scratch[root, : hi - lo].copy_(flat[lo:hi])
            self._wait_barrier()
            if self.rank != root:
                flat[lo:hi].copy_(scratch[root, : hi - lo])
            self._wait_barrier()
        if self.rank != root:
            stage.back(tensor, flat)

    # --- point to point -----------------------------------------------------------------------
    def send(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> None:
        self._check()
        # A copy, in host memory: the receiver must not see later writes to the sender's buffer, and a
        # device tensor would reach another process as a CUDA IPC handle only while this one lives.
        self.s.inboxes[dst].put((self.rank, tag, tensor.detach().to("cpu", copy=True)))

    def recv(self, tensor: torch.Tensor, src: int | None = None, tag: int = 0) -> int:
        for i, (s, t, payload) in enumerate(self._pending):
            if (src is None or s == src) and t == tag:
                del self._pending[i]
                tensor.copy_(payload)
                return s
        deadline = time.monotonic() + self.s.timeout_s
        while True:
            self._check()
            try:
                s, t, payload = self.s.inboxes[self.rank].get(timeout=ABORT_POLL_S)
            except queue_mod.Empty:
                if time.monotonic() > deadline:
                    self.s.fail()
                    raise PeerFailed(f"recv from {src} tag {tag}: nothing within {self.s.timeout_s:.0f} s") from None
                continue
            if (src is None or s == src) and t == tag:
                tensor.copy_(payload)
                return s
            self._pending.append((s, t, payload))

    # --- parameter server / shared state ------------------------------------------------------
    def ps_init(self, x0: torch.Tensor) -> None:
        if x0.dtype != self.s.x.dtype:
            # x was allocated at launch in the algorithm's declared AlgoSpec.ps_dtype; copying another dtype in
            # would round (float64 -> float32) without a word
            raise RuntimeError(f"ps_init: x0 is {x0.dtype} but the shared x was allocated as {self.s.x.dtype} "
                               f"(the algorithm's AlgoSpec.ps_dtype): declare the dtype the algorithm hands to ps_init")
        if self.rank == 0:
            self.s.x.copy_(x0.view(-1))
            self.s.counts.zero_()
        self._wait_barrier()

    def ps_version(self) -> int:
        # Lock-free sum of per-rank counters: may lag a concurrent update by one.
        return int(self.s.counts.sum())

    def pull(self, out: torch.Tensor, consistent: bool = True) -> int:
        # A failed or interrupted peer stops this rank at its next read of x, not at the run's end.
        self._check()
        if consistent:
            self._acquire()
            try:
                # Into a device `out` too: a blocking host -> device copy has read all of x when it
                # returns, so the lock is released after the read, as on the CPU.
                out.copy_(self.s.x)
                return int(self.s.counts.sum())
            finally:
                self.s.lock.release()
        # Inconsistent read (AsySG-incon): no lock. Other ranks may be writing x while this
        # copy runs, so `out` can mix coordinates from before and after their updates.
        version = int(self.s.counts.sum())
        out.copy_(self.s.x)
        return version

    def push(self, delta: torch.Tensor, version: int, consistent: bool = True, donate: bool = False) -> int:
        # A device delta is copied to host memory before the lock is taken: the lock covers the add only.
        delta = self._stage.to_home(delta, "delta")
        if consistent:
            self._acquire()
            try:
                now = int(self.s.counts.sum())
                self.s.x.add_(delta)
                self.s.counts[self.rank] += 1
            finally:
                self.s.lock.release()
            return now - version
        # Lock-free write (Hogwild / AsySG-incon): coordinates land one by one (or block by
        # block in random order when `block` is set); concurrent writers interleave freely.
        now = int(self.s.counts.sum())
        if self._block:
            d = delta.numel()
            n_blocks = (d + self._block - 1) // self._block
            for b in torch.randperm(n_blocks, generator=self._gen).tolist():
                lo = b * self._block
                self.s.x[lo:lo + self._block].add_(delta[lo:lo + self._block])
        else:
            self.s.x.add_(delta)
        # Own slot only: no other rank writes it, so no lock is needed.
        self.s.counts[self.rank] += 1
        return now - version

    def push_pull(self, delta: torch.Tensor, version: int, out: torch.Tensor) -> tuple[int, int]:
        delta = self._stage.to_home(delta, "delta")  # copied before the lock, as in push
        self._acquire()
        try:
            now = int(self.s.counts.sum())
            self.s.x.add_(delta)
            self.s.counts[self.rank] += 1
            out.copy_(self.s.x)
            return now - version, now + 1
        finally:
            self.s.lock.release()

    def serve(self, on_apply=None) -> None:
        raise RuntimeError("serve: shared-memory backends have no server rank")

    def ps_done(self) -> None:
        return None
