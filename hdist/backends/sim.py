"""sim: a deterministic simulated cluster, every rank in this process, in virtual time.

The gradients are real (each rank runs the algorithm's own code on real data, so convergence
is real); the *time* comes from a cost model (:class:`CostModel`, from ``topology.sim``):

- compute: ``per_step_s + per_sample_s * samples`` per step, times the worker's
  heterogeneity factor and a seeded log-normal jitter, and times busy ranks / ``cores`` when the
  ranks outnumber the cores they share (a polling server rank counts with ``server_busy``; the
  copies of messages, updates and shared-memory accesses slow alike);
  the straggler model of thesis 3.5 (``topology.straggler``) holds chosen workers ``m`` times
  longer with probability ``p``;
- a message costs ``latency_s + bytes / bandwidth_Bps``, in FIFO order per link; when busy ranks
  outnumber the ``cores`` they share, every message (and every latency term of a collective)
  waits ``desched_s`` more per busy rank beyond the cores: the rank that must act on it is
  often off its core then (``hdist calibrate --local-links`` measures it on MPI with one busy
  process too many);
- a parameter server applies (and answers) one request at a time, each costing
  ``bytes / server_Bps``: it serialises the updates;
- an all-reduce costs the ring formula ``2 (P-1) latency + 2 (P-1)/P bytes / bandwidth``;
- shared-memory reads and writes cost ``bytes / memory_Bps``; consistent ones hold a lock
  (one at a time, like the thread and process backends' lock), lock-free ones do not. Two
  costs of ranks on one machine's cores come on top (0 unless a topology sets them; ``hdist
  calibrate`` measures both): touching x when another rank wrote it last costs
  ``bytes / handoff_Bps`` more (its cache lines move from the writer's core), and a rank that
  found the lock held resumes ``wake_s`` after it is freed (it slept; the OS wakes it) unless
  it was freed within ``spin_s`` (the process backend's ``backend.spin_s``: the rank polled it,
  awake; only while the ranks have a core each, as on that backend).

A parameter-server algorithm runs, by ``backend.ps``, against a server rank (``server``: the
MPI architecture) or against shared memory (``shared``: the thread and process architecture).

Ranks are greenlets (cooperative, so exactly one runs at a time). Every call into the
communication interface first yields until the world's clock reaches the rank's own clock,
then acts on the shared state at that virtual instant; events are processed in (time,
insertion order), so the same seed gives bit-identical metrics. Staleness comes out of the
timing. Metrics carry ``sim_s`` (virtual seconds) beside ``wall_s`` (real seconds).
Shared-memory reads are atomic in the model: the sim captures delays (staleness), not torn
vectors.

Devices. Every simulated rank computes on the one device of local index 0 (``topology.devices=cuda``:
``cuda:0``, so P = 128 workers of ResNet-20 share one GPU). The server's x, messages and collective
results are copies on that device too: nothing is staged through the host, since every rank that
reads them is on the same device. The cost model is the same on every device.
"""

from __future__ import annotations

import heapq
import itertools
import math
from pathlib import Path
from typing import Callable

import torch

from hdist.backends._ranks import make_ctx
from hdist.stragglers import stream
from hdist.threads import threads_for
from hdist.types import Backend, RankCtx
from hdist.types import World as Layout  # this module's World is its event loop

NAME = "sim"
FAMILIES = ("serial", "ps", "shared", "collective", "pipeline")


class SimDeadlock(RuntimeError):
    """Ranks wait for something that can never happen (e.g. a recv with no matching send)."""


def oversubscription(workers: int, busy_server: bool, cores: int | None) -> float:
    """How much slower each rank computes when the ranks that keep a core busy (the workers, and a
    server rank that polls while it waits) outnumber the machine's cores: busy ranks / cores, at
    least 1; 1 when ``cores`` is None (a core, or a node, per rank)."""
    if not cores:
        return 1.0
    return max(1.0, (int(workers) + (1 if busy_server else 0)) / int(cores))


def excess_ranks(workers: int, busy_server: bool, cores: int | None) -> int:
    """Busy ranks beyond the cores they share (0 when each has one, or ``cores`` is None)."""
    if not cores:
        return 0
    return max(0, int(workers) + (1 if busy_server else 0) - int(cores))


class CostModel:
    """Virtual seconds for compute, messages, server work and collectives (see module doc)."""

    def __init__(self, topology, seed: int, n_workers: int, server: bool = False):
        sim = topology.get("sim") or {}
        comp = sim.get("compute") or {}
        link = sim.get("link") or {}
        # Ranks sharing too few cores (topology.sim.compute.cores) each work this much slower.
        busy_server = server and bool(comp.get("server_busy"))
        self.oversub = oversubscription(n_workers, busy_server, comp.get("cores"))
        self.per_step_s = float(comp.get("per_step_s") or 0.0) * self.oversub
        self.per_sample_s = float(comp.get("per_sample_s") or 0.0) * self.oversub
        self.jitter = float(comp.get("jitter") or 0.0)
        het = list(comp.get("heterogeneity") or [])
        self.speed = [float(het[w]) if w < len(het) else 1.0 for w in range(n_workers)]
        # With more busy ranks than cores, one of them is off its core at any instant: a message
        # waits for the rank that must take it (or answer it) to be scheduled again.
        self.desched_s = float(link.get("desched_s") or 0.0) * excess_ranks(n_workers, busy_server, comp.get("cores"))
        self.latency_s = float(link.get("latency_s") or 0.0) + self.desched_s
        # On shared cores the copies behind a message, an applied update and a shared-memory access
        # are CPU work too, slowed by the same factor (topologies with cores: ranks on one machine).
        self.bandwidth = float(link.get("bandwidth_Bps") or math.inf) / self.oversub
        self.server_Bps = float(sim.get("server_Bps") or math.inf) / self.oversub
        self.memory_Bps = float(sim.get("memory_Bps") or math.inf) / self.oversub
        self.handoff_Bps = float(sim.get("handoff_Bps") or math.inf) / self.oversub
        self.wake_s = float(sim.get("wake_s") or 0.0)
        # The real backend polls a held lock only while every rank has a core (process.spin_s).
        self.spin_s = float(sim.get("spin_s") or 0.0) if self.oversub <= 1 else 0.0
        st = topology.get("straggler") or {}
        self.stragglers = set(int(w) for w in (st.get("workers") or []))
        self.p = float(st.get("p") or 0.0)
        lo, hi = st.get("m") or [0.0, 0.0]
        self.m_lo, self.m_hi = float(lo), float(hi)
        # One stream per worker, drawn in that worker's own order: independent of scheduling.
        self.rng = [stream(seed, w) for w in range(n_workers)]

    def compute_s(self, worker: int | None, samples: int) -> tuple[float, float]:
        """(compute seconds, of which straggling) for one step of ``worker`` on ``samples``."""
        base = self.per_step_s + self.per_sample_s * samples
        if worker is None:
            return base, 0.0
        t = base * self.speed[worker]
        rng = self.rng[worker]
        if self.jitter:
            t *= math.exp(rng.gauss(0.0, self.jitter) - self.jitter ** 2 / 2)
        extra = 0.0
        if worker in self.stragglers and self.p > 0 and rng.random() < self.p:
            extra = rng.uniform(self.m_lo, self.m_hi) * t
        return t + extra, extra

    def message_s(self, nbytes: int) -> float:
        return self.latency_s + nbytes / self.bandwidth

    def wire_s(self, nbytes: int) -> float:
        return nbytes / self.bandwidth

    def server_s(self, nbytes: int) -> float:
        return nbytes / self.server_Bps

    def memory_s(self, nbytes: int) -> float:
        return nbytes / self.memory_Bps

    def handoff_s(self, nbytes: int) -> float:
        return nbytes / self.handoff_Bps

    def allreduce_s(self, nbytes: int, p: int) -> float:
        if p <= 1:
            return 0.0
        return 2 * (p - 1) * self.latency_s + 2 * (p - 1) / p * nbytes / self.bandwidth

    def broadcast_s(self, nbytes: int, p: int) -> float:
        return math.ceil(math.log2(p)) * self.message_s(nbytes) if p > 1 else 0.0

    def barrier_s(self, p: int) -> float:
        return 2 * math.ceil(math.log2(p)) * self.latency_s if p > 1 else 0.0


class World:
    """The event loop: a heap of (time, seq, action) and the ranks' greenlets."""

    def __init__(self, cost: CostModel, world_size: int, server: bool):
        import greenlet

        self.greenlet = greenlet
        self.cost = cost
        self.now = 0.0
        self._q: list = []
        self._seq = itertools.count()
        self.main = greenlet.getcurrent()
        self.world_size = world_size
        self.server = server
        self.comms: list[SimComm] = []
        # Parameter-server / shared state.
        self.x: torch.Tensor | None = None
        self.x_nbytes = 0
        self.version = 0
        self.server_free = 0.0
        self.on_apply: Callable | None = None
        self.done_workers = 0
        self.server_waiting = False
        # Shared memory: when the lock guarding x is next free (consistent reads and writes), and
        # the ranks whose caches hold x as it is now (a write leaves only the writer's).
        self.lock_free = 0.0
        self.x_cached: set[int] = set()
        # Collectives: the n-th call of every rank meets the n-th call of the others.
        self.coll: dict[int, dict] = {}
        # Point to point.
        self.mail: list[list] = [[] for _ in range(world_size)]
        self.link_last: dict[tuple[int, int], float] = {}

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._q, (max(t, self.now), next(self._seq), action))

    def run(self) -> None:
        for c in self.comms:
            self.at(0.0, c.start)
        while self._q:
            t, _, action = heapq.heappop(self._q)
            self.now = t
            action()
        stuck = [c for c in self.comms if not c.finished]
        if stuck:
            raise SimDeadlock("sim: ranks " + ", ".join(f"{c.rank} (in {c.blocked_in})" for c in stuck)
                              + " wait for events that never come")


class SimComm:
    """:class:`~hdist.types.Comm` on the simulated cluster (one per rank)."""

    virtual_time = True

    def __init__(self, world: World, rank: int, rank_fn, ctx_factory):
        self.w, self.rank, self.world_size = world, rank, world.world_size
        self.has_server = world.server
        self.shared_memory = not world.server
        self.n_workers = self.world_size - (1 if self.has_server else 0)
        if self.has_server:
            self.worker_index = None if rank == 0 else rank - 1
        else:
            self.worker_index = rank
        self.clock = 0.0
        self.finished = False
        self.blocked_in = "start"
        self._coll_calls = 0
        self._rank_fn, self._ctx_factory = rank_fn, ctx_factory
        self.log = None
        self.g = None
        self._want: tuple | None = None

    # --- the rank's life ----------------------------------------------------------------------
    def start(self) -> None:
        def body():
            ctx = self._ctx_factory(self)
            self.log = ctx.log
            self._rank_fn(ctx)
            self.finished = True

        self.g = self.w.greenlet.greenlet(body, parent=self.w.main)
        self.g.switch()

    def _suspend(self, where: str):
        """Give control back to the event loop until an action resumes this rank."""
        self.blocked_in = where
        value = self.w.main.switch()
        self.blocked_in = ""
        self._set_clock(self.w.now)
        return value

    def _resume_at(self, t: float, value=None) -> None:
        self.w.at(t, lambda: self.g.switch(value))

    def _sync(self, where: str) -> None:
        """Wait until the world reaches this rank's clock: earlier events happen first.

        When no queued event is due before this rank's clock, nothing can come first: the world's
        clock moves to it and the rank goes on without a switch (the common case, and a cheap one).
        """
        q = self.w._q
        if not q or self.clock < q[0][0]:
            self.w.now = max(self.w.now, self.clock)
            return
        self._resume_at(self.clock)
        self._suspend(where)

    def _set_clock(self, t: float) -> None:
        self.clock = t
        if self.log is not None:
            self.log.sim_s = t

    # --- time ---------------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock

    def compute_done(self, samples: int, work: float = 1.0) -> None:
        # work: the fraction of a step's modelled time (a pipeline stage's forward or backward).
        dt, extra = self.w.cost.compute_s(self.worker_index, samples)
        dt, extra = dt * work, extra * work
        self._set_clock(self.clock + dt)
        if extra > 0 and self.log is not None:
            self.log.log("event", "straggle_s", extra)

    def sleep(self, seconds: float) -> None:
        self._set_clock(self.clock + seconds)

    # --- collectives --------------------------------------------------------------------------
    def _collective(self, kind: str, tensor: torch.Tensor | None, root: int, cost: Callable[[int], float]):
        self._sync(kind)
        w = self.w
        key = self._coll_calls
        self._coll_calls += 1
        entry = w.coll.setdefault(key, {"kind": kind, "arrived": {}, "t": 0.0})
        if entry["kind"] != kind:
            raise RuntimeError(f"sim: rank {self.rank} called {kind} where others called {entry['kind']}")
        entry["arrived"][self.rank] = (self, tensor)
        entry["t"] = max(entry["t"], self.clock)
        if len(entry["arrived"]) == self.world_size:
            del w.coll[key]
            nbytes = tensor.numel() * tensor.element_size() if tensor is not None else 0
            t_done = entry["t"] + cost(nbytes)
            result = None
            if kind == "allreduce":
                # Sum in rank order: the same bits on every rank and every run.
                result = torch.stack([entry["arrived"][r][1].reshape(-1) for r in range(self.world_size)]).sum(0)
            elif kind == "broadcast":
                result = entry["arrived"][root][1].reshape(-1).clone()
            for r in range(self.world_size):
                comm = entry["arrived"][r][0]
                comm._resume_at(t_done, result)
        return self._suspend(kind)

    def barrier(self) -> None:
        self._collective("barrier", None, 0, lambda b: self.w.cost.barrier_s(self.world_size))

    def allreduce(self, tensor: torch.Tensor, op: str = "sum") -> None:
        if op not in ("sum", "mean"):
            raise ValueError(f"allreduce op {op!r}: expected sum or mean")
        result = self._collective("allreduce", tensor.detach().clone(), 0,
                                  lambda b: self.w.cost.allreduce_s(b, self.world_size))
        tensor.view(-1).copy_(result)
        if op == "mean":
            tensor.div_(self.world_size)

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> None:
        result = self._collective("broadcast", tensor.detach().clone(), root,
                                  lambda b: self.w.cost.broadcast_s(b, self.world_size))
        tensor.view(-1).copy_(result)

    # --- point to point -----------------------------------------------------------------------
    def _arrival(self, dst: int, nbytes: int) -> float:
        # FIFO per link: a message never overtakes an earlier one on the same link.
        t = max(self.clock + self.w.cost.message_s(nbytes), self.w.link_last.get((self.rank, dst), 0.0))
        self.w.link_last[(self.rank, dst)] = t
        return t

    def send(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> None:
        self._sync("send")
        nbytes = tensor.numel() * tensor.element_size()
        arrival = self._arrival(dst, nbytes)
        self.w.mail[dst].append((arrival, next(self.w._seq), self.rank, tag, tensor.detach().clone()))
        other = self.w.comms[dst]
        if getattr(other, "_want", None) is not None:
            other._want_wake(arrival)
        self._set_clock(self.clock + self.w.cost.wire_s(nbytes))

    def _want_wake(self, t: float) -> None:
        # A matching message may have arrived: look again at time t.
        self.w.at(t, self._try_recv)

    def _try_recv(self) -> None:
        if self._want is None:
            return
        src, tag = self._want
        box = self.w.mail[self.rank]
        ready = [m for m in box if (src is None or m[2] == src) and m[3] == tag]
        if not ready:
            return
        first = min(ready, key=lambda m: (m[0], m[1]))
        if first[0] > self.w.now:
            self.w.at(first[0], self._try_recv)
            return
        box.remove(first)
        self._want = None
        self.g.switch(first)

    def recv(self, tensor: torch.Tensor, src: int | None = None, tag: int = 0) -> int:
        self._sync("recv")
        self._want = (src, tag)
        self.w.at(self.clock, self._try_recv)
        msg = self._suspend(f"recv(src={src}, tag={tag})")
        tensor.view(-1).copy_(msg[4].view(-1))
        return msg[2]

    # --- parameter server / shared state ------------------------------------------------------
    def ps_init(self, x0: torch.Tensor) -> None:
        if self.rank == 0:
            self.w.x = x0.detach().clone().view(-1)
            self.w.x_nbytes = self.w.x.numel() * self.w.x.element_size()  # read on every pull and push
            self.w.version = 0
            self.w.x_cached = {0}
        self.barrier()

    def ps_version(self) -> int:
        # The version at this rank's clock, which compute_done may have moved past the world's.
        self._sync("ps_version")
        return self.w.version

    def _nbytes(self) -> int:
        return self.w.x_nbytes

    def _serve(self, arrival: float, action: Callable[[], None], nbytes: int | None = None) -> None:
        """The server handles one request at a time, in arrival order; each costs its bytes' time."""
        w = self.w
        cost = w.cost.server_s(self._nbytes() if nbytes is None else nbytes)

        def arrive():
            start = max(w.now, w.server_free)
            w.server_free = start + cost
            if start <= w.now:
                action()  # the server is idle: serve now, no extra event
            else:
                w.at(start, action)

        w.at(arrival, arrive)

    def _shared_access(self, consistent: bool, write: bool) -> None:
        """The time of one shared-memory read or write of x by this rank: a consistent access
        waits for the lock and holds it for the copy; a lock-free one only pays the copy. The copy
        costs the handoff on top when another rank's write is the last this rank has not seen, and
        a rank that waited for the lock longer than ``spin_s`` resumes ``wake_s`` after it is freed."""
        w = self.w
        nbytes = self._nbytes()
        cost = w.cost.memory_s(nbytes)
        if self.rank not in w.x_cached:
            cost += w.cost.handoff_s(nbytes)
        # A write leaves x in the writer's cache alone; a read adds a copy to this rank's.
        if write:
            w.x_cached = {self.rank}
        else:
            w.x_cached.add(self.rank)
        start = self.clock
        if consistent:
            if w.lock_free > start:
                # Found the lock held: polled it until it was freed, or, past spin_s, slept until woken.
                waited = w.lock_free - start
                start = w.lock_free + (w.cost.wake_s if waited > w.cost.spin_s else 0.0)
            w.lock_free = start + cost
        self._set_clock(start + cost)

    def pull(self, out: torch.Tensor, consistent: bool = True) -> int:
        w = self.w
        if self.worker_index is None or not self.has_server:
            self._sync("pull")
            # The server reading its own x, or shared memory: a copy at this instant (the values
            # of this instant even when the lock makes the copy finish later: the sim models
            # the delay, not torn or later reads).
            out.copy_(w.x)
            if self.worker_index is not None:
                self._shared_access(consistent, write=False)
            return w.version
        # A request to the server rank needs no _sync first: it acts on shared state only at its
        # arrival, as a queued event (virtual-time order), or in place when nothing is queued
        # before it (_server_now). One suspension per pull instead of two.
        request = self._arrival(0, 8)
        start = self._server_now(request, self._nbytes())
        if start is not None:
            # Nothing can happen before the request is served: serve it in place, no events.
            out.copy_(w.x)
            self._set_clock(start + w.cost.message_s(self._nbytes()))
            version = w.version
            self._sync("pull")  # anything due before the reply happens first
            return version

        def serve():
            out.copy_(w.x)
            version = w.version
            self._resume_at(w.now + w.cost.message_s(self._nbytes()), version)

        self._serve(request, serve)
        return self._suspend("pull")

    def _server_now(self, arrival: float, nbytes: int) -> float | None:
        """The virtual time the server starts on a request arriving at ``arrival`` (and the server
        booked), when the request can be served in place: no queued event is due by that start
        (the arrival, or later when the server is still busy with requests it already took).
        Nothing else can then observe or change x before the start: other ranks only act at queued
        events (all later), and this rank's own later requests reach the server after this one
        (FIFO). None when an event comes first: the request must queue as an event."""
        w = self.w
        start = arrival if w.server_free <= arrival else w.server_free
        q = w._q
        if q and q[0][0] <= start:
            return None
        w.server_free = start + w.cost.server_s(nbytes)
        return start

    def _apply(self, delta: torch.Tensor, version: int, at: float | None = None) -> int:
        w = self.w
        staleness = w.version - version
        w.x.add_(delta)
        w.version += 1
        if w.on_apply is not None:
            server = w.comms[0]
            server._set_clock(w.now if at is None else at)
            w.on_apply(w.version, w.x, staleness)
        return staleness

    def push(self, delta: torch.Tensor, version: int, consistent: bool = True, donate: bool = False) -> int | None:
        w = self.w
        if not self.has_server:
            self._sync("push")
            staleness = w.version - version
            w.x.add_(delta)
            w.version += 1
            self._shared_access(consistent, write=True)
            return staleness
        # As in pull: the update acts at its arrival (an event, or in place), so no _sync first;
        # the worker goes on without suspending.
        arrival = self._arrival(0, self._nbytes())
        start = self._server_now(arrival, self._nbytes())
        if start is not None:
            # Applied in place at the virtual time the server takes it (see _server_now): no copy, no events.
            self._apply(delta, version, at=start)
        else:
            # The worker runs on before the server applies this: keep a copy, unless the caller
            # donated delta (it never touches it again).
            payload = delta.detach() if donate else delta.detach().clone()
            self._serve(arrival, lambda: self._apply(payload, version))
        # The worker goes on once its message is on the wire (the server applies it later).
        self._set_clock(self.clock + w.cost.wire_s(self._nbytes()))
        return None

    def push_pull(self, delta: torch.Tensor, version: int, out: torch.Tensor) -> tuple[int, int]:
        self._sync("push_pull")
        w = self.w
        if not self.has_server:
            st = self.push(delta, version)
            return st, self.pull(out)
        arrival = self._arrival(0, self._nbytes())

        def serve():
            # No copy of delta: this rank is suspended until the reply, so it cannot change it.
            st = self._apply(delta, version)
            out.copy_(w.x)
            self._resume_at(w.now + w.cost.message_s(self._nbytes()), (st, w.version))

        self._serve(arrival, serve)
        return self._suspend("push_pull")

    def serve(self, on_apply=None) -> None:
        w = self.w
        w.on_apply = on_apply
        if w.done_workers < self.n_workers:
            w.server_waiting = True
            self._suspend("serve")
        w.on_apply = None

    def ps_done(self) -> None:
        self._sync("ps_done")
        w = self.w
        if not self.has_server:
            return
        done_at = self._arrival(0, 8)

        def done():
            # After every earlier request on the server's queue.
            w.done_workers += 1
            if w.done_workers == self.n_workers and w.server_waiting:
                w.server_waiting = False
                w.comms[0]._resume_at(w.now)

        self._serve(done_at, done, nbytes=8)


def launch(run_dir: Path, cfg, rank_fn: Callable[[RankCtx], None], layout: Layout, run_id: str = "",
           n_params: int = 0) -> None:
    workers = layout.compute_ranks  # the workers, or one rank per stage of a pipeline algorithm
    server = bool(layout.servers)
    world_size = layout.ranks
    # One process plays every rank, one at a time. Its torch threads follow the serial backend's
    # rule (hdist.threads, one process), so that one worker on sim equals the serial run bit for bit.
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads_for(cfg, 1, "threads"))
    cost = CostModel(cfg.topology, int(cfg.seed), workers, server)
    world = World(cost, world_size, server)
    ctxs: list[RankCtx] = []

    def ctx_factory(comm: SimComm) -> RankCtx:
        # Every simulated rank on the one device (local index 0): P = 128 workers share one GPU, as
        # they share this process; the server's x (ps_init: a copy of rank 0's x0) lives there too.
        ctx = make_ctx(cfg, run_dir, run_id, comm.rank, world_size, comm,
                       role="server" if (server and comm.rank == 0) else "worker", local_index=0)
        ctx.log.sim_s = 0.0
        ctxs.append(ctx)
        return ctx

    for r in range(world_size):
        world.comms.append(SimComm(world, r, rank_fn, ctx_factory))
    try:
        world.run()
    finally:
        torch.set_num_threads(old_threads)
        for ctx in ctxs:
            ctx.progress.close()
            ctx.log.close()


class SimBackend(Backend):
    name, families = NAME, FAMILIES

    def server_rank(self, cfg) -> bool:
        # backend.ps: a parameter-server algorithm against a server rank (as on mpi) or against
        # shared memory with a lock (as on thread and process).
        return str(cfg.backend.get("ps") or "server") == "server"

    def launch(self, run_dir, cfg, rank_fn, world, run_id="", n_params=0) -> None:
        launch(run_dir, cfg, rank_fn, world, run_id, n_params)


BACKEND = SimBackend()
