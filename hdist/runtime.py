"""Time accounting and stragglers for every algorithm on every backend (runtime side).

Algorithms do not read clocks: each rank's :class:`~hdist.types.Comm` is wrapped in a
:class:`TimedComm` where its context is built (:func:`hdist.backends._ranks.make_ctx`, the
serial backend), and the wrapper attributes the rank's time:

- ``comm_s``: every communication call (barrier, broadcast, allreduce, send, recv, pull, push,
  push_pull).
- ``compute_s``: the blocks an algorithm marks ``with comm.compute(samples):``. At a block's end
  the backend's ``compute_done`` runs (the sim advances the rank's virtual clock there, stragglers
  included: its cost model) and, on real backends, the straggler model of thesis 3.5 holds the
  rank ``m`` times the block's time (a real sleep, logged as ``straggle_s``): the same straggling
  for every algorithm on every backend. Communication inside a block is part of the block.
- ``wait_s``: those straggler sleeps.
- A server rank's loop (:meth:`TimedComm.serve`): ``serve_s``, ``wait_s`` (its time not spent on the
  algorithm's per-update work) and ``apply_s`` (that work), and ``updates_applied``.

Consecutive intervals of one kind are one span, from the first one's start to the last one's
end (an elastic exchange is one pull and one push; a data-parallel step's micro-batches are one
compute span). Spans are summed per step (:meth:`TimedComm.mark_step`: at every mini-batch of
:class:`hdist.algos._ps.Worker`, and where a loop steps on its own) and each step's sums are
added to the totals: the same additions, in the same order, as when every loop read the clock
itself, so the accounts in virtual time are the same to the last bit.

An algorithm's side of it: ``with comm.compute(samples):`` around its computation,
``comm.restart_timing()`` at the run's common start, ``comm.timing()`` (and ``elapsed_s()``,
``train_s``) at its end, ``comm.untimed()`` around communication that is no step's.

``algo.precision`` (bf16, fp16) is the runtime's too: each outermost compute block runs under autocast
(:mod:`hdist.precision`), so every algorithm's forward passes take the knob where they are timed.

On a GPU every clock read of these accounts first waits for the work queued on the rank's device
(:func:`device_clock`): CUDA kernels run asynchronously, so a clock read right after a forward pass
would time its launch, not its work, and the next communication call would be charged for it. On the
CPU the clock is read as it always was, and so is the sim's virtual clock (its cost model's time).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable

from hdist.devices import synchronize
from hdist.stragglers import Straggler

COMPUTE, COMM, WAIT = 0, 1, 2


def device_clock(clock: Callable[[], float], device) -> Callable[[], float]:
    """``clock`` that, on a CUDA ``device``, first waits for the work queued there (the read closes it);
    ``clock`` itself on the CPU or without a device, so CPU timing is what it always was."""
    if device is None or device.type != "cuda":
        return clock

    def synced() -> float:
        synchronize(device)
        return clock()

    return synced


class TimedComm:
    """A rank's Comm with its time accounted (see the module doc); every Comm call is forwarded.

    ``straggler(worker)`` makes the real-time straggler of a worker index (None: no straggling,
    as on the sim, whose cost model straggles in virtual time); ``log`` receives ``straggle_s``.
    ``device``: the rank's device; on a GPU every clock read of the accounts synchronizes it first.
    ``precision``: the rank's :class:`hdist.precision.Precision` (None: fp32), entered by compute blocks.
    """

    def __init__(self, comm, log=None, straggler=None, device=None, precision=None):
        self.inner, self.log = comm, log
        self.device, self.precision = device, precision
        # Every read of the accounts' clock: the inner comm's own now() on the CPU, and on the sim, whose
        # virtual clock counts its cost model's seconds, not the device's (a sync there would only stall
        # the GPU the simulated ranks share).
        self._now = comm.now if comm.virtual_time else device_clock(comm.now, device)
        self._make_straggler = straggler
        self._stragglers: dict[int | None, Straggler | None] = {}
        self._depth = 0  # compute blocks open (communication inside one is part of it)
        self._untimed = 0
        self.restart_timing()

    # --- the accounts -------------------------------------------------------------------------
    def restart_timing(self) -> None:
        """Zero the totals and restart :meth:`elapsed_s`: the accounts start at the run's common
        clock start."""
        self._start = self._now()
        self._span: list | None = None  # [kind, start, end] of the span being extended
        self._step = [0.0, 0.0, 0.0]
        self._total = [0.0, 0.0, 0.0]

    def _extend(self, kind: int, start: float, end: float) -> None:
        span = self._span
        if span is not None and span[0] == kind:
            span[2] = end
            return
        self._close()
        self._span = [kind, start, end]

    def _close(self) -> None:
        if self._span is not None:
            kind, start, end = self._span
            self._step[kind] += end - start
            self._span = None

    def elapsed_s(self) -> float:
        """Seconds on the rank's clock (real, or virtual on the sim) since :meth:`restart_timing`:
        the run's ``train_s``."""
        return self._now() - self._start

    def mark_step(self) -> None:
        """A step ends: its compute, comm and wait seconds are added to the totals."""
        self._close()
        s, t = self._step, self._total
        t[COMPUTE] += s[COMPUTE]
        t[COMM] += s[COMM]
        t[WAIT] += s[WAIT]
        self._step = [0.0, 0.0, 0.0]

    def timing(self) -> dict[str, float]:
        """Seconds of compute, communication, waiting and straggling since :meth:`restart_timing`
        (the step in progress included)."""
        self.mark_step()
        return {"compute_s": self._total[COMPUTE], "comm_s": self._total[COMM], "wait_s": self._total[WAIT],
                "straggle_s": self.straggle_s()}

    def straggle_s(self) -> float:
        """Real seconds the straggler model held this rank (0 on the sim: its time is virtual)."""
        return sum(s.total_s for s in self._stragglers.values() if s is not None)

    def log_straggle_total(self) -> None:
        """The run's closing totals (every training algorithm calls it at its end): ``straggle_s_total``
        where the straggler model held the rank, and under fp16 ``fp16_skipped_steps`` (gradients zeroed
        for an inf or a nan) and the final ``loss_scale``."""
        total = self.straggle_s()
        if total:
            self.log.log("event", "straggle_s_total", total)
        scaler = self.precision.scaler if self.precision is not None else None
        if scaler is not None and self.log is not None:
            self.log.log("event", "fp16_skipped_steps", float(scaler.skipped.item()))
            self.log.log("event", "loss_scale", float(scaler.scale.item()))

    @contextmanager
    def untimed(self):
        """Communication that belongs to no step's accounts (an evaluation's synchronisation, a
        wait for another worker's pre-training)."""
        self._untimed += 1
        try:
            yield
        finally:
            self._untimed -= 1

    @contextmanager
    def compute(self, samples: int | None = None, work: float = 1.0, worker: int | None = None):
        """A block of computation. At its end the backend is told that ``samples`` samples were
        computed (``work``: the fraction of a model step, as a pipeline stage's forward), unless
        ``samples`` is None (the block charges the sim itself, with ``compute_done``), and on a
        real backend the straggler model may hold ``worker`` (default: this rank's worker index;
        a serial pipeline runs every stage's worker) for ``m`` times the block's time."""
        now = self._now
        t0 = now()
        self._depth += 1
        try:
            if self.precision is not None and self._depth == 1:
                with self.precision.region():
                    yield
            else:
                yield
        finally:
            self._depth -= 1
        if samples is not None:
            self.inner.compute_done(samples, work)
        if self._depth:
            return
        t1 = now()
        self._extend(COMPUTE, t0, t1)
        straggler = self._straggler(self.worker_index if worker is None else worker)
        if straggler is not None and straggler.after_compute(t1 - t0, self.log, self.inner.sleep):
            self._extend(WAIT, t1, now())

    def _outside_autocast(self, call, *args, **kwargs):
        """A call from inside a low-precision compute block that may hand the thread to another rank (the
        sim's), made with autocast paused (:meth:`hdist.precision.Precision.paused`)."""
        if not self._depth or self.precision is None:
            return call(*args, **kwargs)
        with self.precision.paused():
            return call(*args, **kwargs)

    def _straggler(self, worker: int | None) -> Straggler | None:
        if worker not in self._stragglers:
            self._stragglers[worker] = self._make_straggler(worker) if self._make_straggler else None
        return self._stragglers[worker]

    def _timed(self, call, *args, **kwargs):
        if self._depth and self.precision is not None:
            return self._outside_autocast(call, *args, **kwargs)
        if self._depth or self._untimed:
            return call(*args, **kwargs)
        now = self._now
        t0 = now()
        out = call(*args, **kwargs)
        self._extend(COMM, t0, now())
        return out

    # --- the world and the clock (forwarded) --------------------------------------------------
    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def world_size(self) -> int:
        return self.inner.world_size

    @property
    def n_workers(self) -> int:
        return self.inner.n_workers

    @property
    def worker_index(self) -> int | None:
        return self.inner.worker_index

    @property
    def has_server(self) -> bool:
        return self.inner.has_server

    @property
    def shared_memory(self) -> bool:
        return self.inner.shared_memory

    @property
    def virtual_time(self) -> bool:
        return self.inner.virtual_time

    def now(self) -> float:
        """The rank's clock (real, or virtual on the sim); on a GPU, read after the device's queued work."""
        return self._now()

    def sleep(self, seconds: float) -> None:
        self._outside_autocast(self.inner.sleep, seconds)

    def compute_done(self, samples: int, work: float = 1.0) -> None:
        """Charge one more model step to the sim from inside a compute block (a block of many steps)."""
        self._outside_autocast(self.inner.compute_done, samples, work)

    # --- the parameter server's life (forwarded, not timed: the frame's, or the server's) ------
    def ps_init(self, x0) -> None:
        self._outside_autocast(self.inner.ps_init, x0)

    def ps_version(self) -> int:
        return self._outside_autocast(self.inner.ps_version)

    def serve(self, on_apply=None) -> None:
        """The server loop, with the server's time split logged at its end (``comm`` rows): ``serve_s``, the
        whole loop on the rank's clock; ``apply_s``, the algorithm's work on each applied update
        (``on_apply``: logging, snapshots); ``wait_s``, the rest: waiting for, receiving and answering the
        workers' requests and adding their updates to x; ``updates_applied``."""
        now = self._now
        acc = {"apply_s": 0.0, "updates_applied": 0}

        def timed_apply(version, x, staleness):
            t0 = now()
            if on_apply is not None:
                on_apply(version, x, staleness)
            acc["apply_s"] += now() - t0
            acc["updates_applied"] += 1

        t0 = now()
        try:
            self.inner.serve(timed_apply)
        finally:
            serve_s = now() - t0
            if self.log is not None:
                self.log.log_many("comm", {"serve_s": serve_s, "wait_s": serve_s - acc["apply_s"],
                                           "apply_s": acc["apply_s"], "updates_applied": acc["updates_applied"]})

    def ps_done(self) -> None:
        self._outside_autocast(self.inner.ps_done)

    # --- communication (timed) ----------------------------------------------------------------
    def barrier(self) -> None:
        self._timed(self.inner.barrier)

    def broadcast(self, tensor, root: int = 0) -> None:
        self._timed(self.inner.broadcast, tensor, root)

    def allreduce(self, tensor, op: str = "sum") -> None:
        self._timed(self.inner.allreduce, tensor, op)

    def send(self, tensor, dst: int, tag: int = 0) -> None:
        self._timed(self.inner.send, tensor, dst, tag)

    def recv(self, tensor, src: int | None = None, tag: int = 0) -> int:
        return self._timed(self.inner.recv, tensor, src, tag)

    def pull(self, out, *args, **kwargs) -> int:
        return self._timed(self.inner.pull, out, *args, **kwargs)

    def push(self, delta, version: int, *args, **kwargs):
        return self._timed(self.inner.push, delta, version, *args, **kwargs)

    def push_pull(self, delta, version: int, out):
        return self._timed(self.inner.push_pull, delta, version, out)


def timed_comm(comm, cfg, log, device=None) -> TimedComm:
    """The rank's accounted Comm: real-time stragglers from ``topology.straggler`` on real backends;
    ``device``: the rank's (:attr:`hdist.types.RankCtx.device`), synchronized at every clock read on a GPU;
    compute blocks in ``algo.precision`` (a config written before the key existed: fp32)."""
    from hdist import precision as P

    prec = P.make(cfg.algo.get("precision") if "algo" in cfg else None, device)
    if comm.virtual_time:
        return TimedComm(comm, log, device=device, precision=prec)
    seed = int(cfg.seed)
    return TimedComm(comm, log, lambda worker: Straggler(cfg.topology, worker, seed), device=device,
                     precision=prec)


def wall_clock(device) -> Callable[[], float]:
    """The clock of a rank's :class:`~hdist.metrics.MetricsLogger` (its ``wall_s``): ``time.perf_counter``,
    synchronizing ``device`` first on a GPU, so a row's wall_s counts the work queued before it."""
    return device_clock(time.perf_counter, device)
