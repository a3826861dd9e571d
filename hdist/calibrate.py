"""``hdist calibrate``: measure this machine, write a topology file the sim backend can use.

Measured, with the torch threads one rank of the configured backend and worker count would get
(``backend=process topology.workers=2`` on 2 cores: 1 thread each; serial and sim: this
process's default):

- compute: the real seconds of one update of the configured algorithm, run by hdist itself on
  the configured backend and worker count (serial and sim: one serial worker), less its time in
  communication, at the batch size and at twice it, fitted as ``per_step_s + per_sample_s *
  batch``. Algorithms without ``algo.max_steps`` are timed as a plain SGD step of the model;
- ``memory_Bps``: the bandwidth of copying the model's vector from memory that is not in this
  core's cache; on the thread and process backends instead the measured cost of an update's
  read and write of the shared x, lock included, timed with one worker (with more, lock waits
  and cache handoffs would be in it, and the sim models those itself);
- on the thread and process backends and with ``local_links`` (ranks on this machine's cores):
  ``jitter``, the spread of single steps' times (:func:`step_jitter`), and a two-process probe
  (:func:`shared_memory_probe`) for what one worker cannot show: ``handoff_Bps`` (touching x
  after another core wrote it) and ``wake_s`` (a rank that slept on a held lock resuming), and,
  copied from the backend's config, ``spin_s`` (how long its ranks poll a lock before sleeping);
- with ``local_links`` (``hdist calibrate --local-links``: the ranks are processes on this
  machine, talking through shared memory, as MPI does on one box): the link bandwidth and the
  server's rate from that copy bandwidth (a message is two copies: into and out of the shared
  buffer; an applied update is one pass);
- with ``local_links`` on a backend whose server rank polls (mpi, torchdist), timed with its ranks
  on a core each: ``desched_s`` (:func:`desched_probe`), the same runs' pull + push timed again
  with busy processes beside them until there is one busy process more than cores. One of them is
  then off its core at any instant, and a message waits for its rank to be scheduled; the sim adds
  this per message and per busy rank beyond the cores.

The new file is a delta of the current topology (``defaults: [<it>, _self_]``): the measured
values only, each with a comment saying what measured it, under a header saying what was measured,
where and when.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import queue as queue_mod
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from hdist import devices
from hdist.backends.sim import excess_ranks, oversubscription
from hdist.config import CONF_DIR, load_option
from hdist.metrics import atomic_write_text
from hdist.problems import build_problem
from hdist.types import ConfigError


def _step_fns(cfg, batches: list[int], device: torch.device | None = None) -> list:
    """One plain SGD step of ``cfg``'s model per batch size on ``device`` (None: the CPU), as a function (each
    warmed up once)."""
    problem = build_problem(cfg, device)
    model = problem.build_model(0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    train = problem.data.train

    def make_step(batch: int):
        x, y = train[torch.arange(min(batch, len(train)))]

        def step():
            opt.zero_grad()
            problem.data_loss(model(x), y).backward()
            opt.step()
        return step

    fns = [make_step(b) for b in batches]
    for fn in fns:
        fn()
    return fns


def step_times(cfg, batches: list[int], steps: int, reps: int, device: torch.device | None = None) -> list[float]:
    """Median seconds per training step at each of ``batches`` (one warm-up step each first), on ``device``.

    The batch sizes are timed in alternation, repetition by repetition, so that a change in the
    machine's load during the measurement hits all of them alike rather than biasing the fit.
    On a GPU the device is synchronized before each clock read: its kernels run asynchronously, and
    without it the clock would time their launch only.
    """
    fns = _step_fns(cfg, batches, device)
    times: list[list[float]] = [[] for _ in batches]
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            devices.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            devices.synchronize(device)
            ts.append((time.perf_counter() - t0) / steps)
    return [statistics.median(ts) for ts in times]


def step_jitter(cfg, batch: int, steps: int = 2000, device: torch.device | None = None) -> float:
    """The sim's ``jitter``: the spread of single steps' seconds on this machine, as the sigma of
    their logarithm. Estimated from the 5-95 % range (a normal's is 3.29 sigma), so that rare long
    stalls (garbage collection, preemption) do not set it. Ranks that time their steps alike
    still drift apart by this spread, which is what makes them collide on a lock. On a GPU each step is
    closed by a synchronization (its own time, not its launch's)."""
    (fn,) = _step_fns(cfg, [batch], device)
    for _ in range(steps // 10):
        fn()
    logs = []
    for _ in range(steps):
        devices.synchronize(device)
        t0 = time.perf_counter()
        fn()
        devices.synchronize(device)
        logs.append(math.log(time.perf_counter() - t0))
    q = statistics.quantiles(logs, n=20)  # q[0]: 5 %, q[-1]: 95 %
    return max(0.0, (q[-1] - q[0]) / 3.29)


def memory_bandwidth(nbytes: int, pool_bytes: int = 64 << 20, reps: int = 5,
                     device: torch.device | None = None) -> float:
    """Bytes per second of copying an ``nbytes`` vector whose source is not in cache, on ``device`` (None:
    the CPU; a GPU's copies are timed from a synchronization to a synchronization).

    The sources rotate through a pool of ``pool_bytes`` (larger than the caches), so every copy
    reads from memory, as a rank reading the x another rank (another core) has just written."""
    n = max(1, nbytes // 4)
    pool = [torch.ones(n, device=device) for _ in range(max(2, pool_bytes // (4 * n)))]
    dst = torch.empty(n, device=device)
    dst.copy_(pool[0])
    times = []
    for _ in range(reps):
        devices.synchronize(device)
        t0 = time.perf_counter()
        for src in pool:
            dst.copy_(src)
        devices.synchronize(device)
        times.append((time.perf_counter() - t0) / len(pool))
    # A copy reads and writes every byte.
    return 2 * n * 4 / statistics.median(times)


def _probe_rank(rank: int, x: torch.Tensor, delta: torch.Tensor, turn, lock, released, rounds: int, q) -> None:
    """One of the two processes of :func:`shared_memory_probe` (module level: spawned)."""
    torch.set_num_threads(1)
    out = torch.empty_like(x)
    reads, rmws, wakes = [], [], []
    for i in range(rounds):
        # Busy-wait for this rank's turn: sleeping here would time the OS, not the caches.
        while turn.value != rank:
            pass
        # The other rank wrote x last: time this rank's first touch, a read or a read-modify-write
        # in alternate rounds; the second op only hands x back written.
        t0 = time.perf_counter()
        if i % 2 == 0:
            out.copy_(x)
            reads.append(time.perf_counter() - t0)
        else:
            x.add_(delta)
            rmws.append(time.perf_counter() - t0)
        x.add_(delta)
        turn.value = 1 - rank
    # Wake-up: rank 0 holds the lock long enough for rank 1 to block (sleep) on it, then frees it;
    # rank 1 times from the release to its acquire returning. CLOCK_MONOTONIC is system-wide.
    for i in range(rounds // 10):
        if rank == 0:
            while turn.value != 2:
                pass
            lock.acquire()
            turn.value = 3
            until = time.perf_counter() + 300e-6
            while time.perf_counter() < until:
                pass
            released.value = time.perf_counter()
            lock.release()
            while turn.value != 4:
                pass
            turn.value = 2
        else:
            if i == 0:
                turn.value = 2
            while turn.value != 3:
                pass
            lock.acquire()
            t = time.perf_counter()
            lock.release()
            wakes.append(t - released.value)
            turn.value = 4
    q.put((rank, reads, rmws, wakes))


def shared_memory_probe(nbytes: int, rounds: int = 2000) -> dict:
    """The two costs of ranks on different cores of this machine that a one-rank run cannot show
    (the sim's ``handoff_Bps`` and ``wake_s``), measured by two processes sharing an
    ``nbytes`` vector x:

    - handoff: a read, or a read-modify-write, of x just after the other process wrote it, less
      the same access after this process wrote it (its cache lines come from the other core);
      ``handoff_Bps`` = nbytes / that extra time (mean of read and read-modify-write);
    - ``wake_s``: from one process freeing a lock to the other, which blocked on it, holding it.

    Medians over ``rounds`` accesses and ``rounds / 10`` wake-ups."""
    import torch.multiprocessing as mp

    n = max(1, nbytes // 4)
    x = torch.zeros(n).share_memory_()
    delta = torch.full((n,), 1e-7).share_memory_()
    out = torch.empty_like(x)
    own: list[list[float]] = [[], []]
    for _ in range(rounds):
        x.add_(delta)
        t0 = time.perf_counter()
        out.copy_(x)
        own[0].append(time.perf_counter() - t0)
        x.add_(delta)
        t0 = time.perf_counter()
        x.add_(delta)
        own[1].append(time.perf_counter() - t0)
    ctx = mp.get_context("spawn")
    turn = ctx.Value("i", 0, lock=False)
    released = ctx.Value("d", 0.0, lock=False)
    lock, q = ctx.Lock(), ctx.Queue()
    procs = [ctx.Process(target=_probe_rank, args=(r, x, delta, turn, lock, released, rounds, q), daemon=True)
             for r in range(2)]
    try:
        for p in procs:
            p.start()
        # The ranks busy-wait on each other: one that dies leaves the other spinning, so the wait
        # for their results is bounded and the ranks are stopped on any way out.
        got = [q.get(timeout=120) for _ in procs]
    except queue_mod.Empty:
        raise RuntimeError("shared-memory probe: a probe process gave no result within 120 s") from None
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    reads = [t for _, r, _, _ in got for t in r]
    rmws = [t for _, _, w, _ in got for t in w]
    wakes = [t for _, _, _, k in got for t in k]
    extra = 0.5 * ((statistics.median(reads) - statistics.median(own[0]))
                   + (statistics.median(rmws) - statistics.median(own[1])))
    # An extra at or below 0 (caches shared by the two cores): no handoff to model.
    return {"handoff_Bps": nbytes / extra if extra > 0 else None, "wake_s": max(0.0, statistics.median(wakes)),
            "handoff_s": max(0.0, extra)}


def short_run(overrides: list[str], results_dir: str, what: str = "timing",
              accept: tuple[str, ...] = ("done", "diverged")) -> dict:
    """One short run of ``overrides`` (the caller caps its steps) into ``results_dir``, run even if an
    identical one finished there: its config, the wall and CPU seconds of this process running it, and
    its rows (``df``). A run that ends in another status than ``accept`` raises RuntimeError. Shared by
    :func:`run_timers` and ``hdist reproduce --estimate`` (:mod:`hdist.estimate`)."""
    from hdist.launch import execute, prepare
    from hdist.metrics import load_results

    cfg = prepare([*overrides, f"results_dir={results_dir}"])
    wall0, cpu0 = time.perf_counter(), time.process_time()
    res = execute(cfg, force=True)
    exec_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
    if res.status not in accept:
        raise RuntimeError(f"{what} run {res.status}: {res.reason}")
    return {"cfg": cfg, "exec_s": exec_s, "cpu_s": cpu_s, "df": load_results(results_dir, status=None)}


def run_timers(overrides: list[str], batches: list[int], updates: int, reps: int) -> list[dict] | None:
    """Per batch size: the median, over ``reps`` short runs of the configured algorithm on the
    configured backend and worker count (sim: on one serial worker), of ``update_s`` (training
    seconds per update of one worker) and ``comm_s`` (of which in pull/push/all-reduce). Batch
    sizes alternate run by run, so load drifts hit all alike. None when the algorithm has no
    ``algo.max_steps`` to stop it early or logs no ``train_s`` / ``comm_s`` timers."""
    import tempfile

    from hdist.launch import prepare

    base = prepare(overrides)
    if "max_steps" not in base.algo:
        return None
    where = ["backend=serial", "topology.workers=1"] if base.backend.name in ("serial", "sim") else []
    workers = 1 if where else int(base.topology.workers)
    out: list[dict[str, list[float]]] = [{"update_s": [], "comm_s": []} for _ in batches]
    with tempfile.TemporaryDirectory(prefix="hdist-calibrate-") as tmp:
        for rep in range(reps):
            for i, b in enumerate(batches):
                df = short_run([*overrides, *where, f"algo.batch_size={b}", f"algo.max_steps={updates * workers}",
                                "log.evals_per_epoch=0", "progress=quiet", "scale.epochs=1000"],
                               f"{tmp}/{rep}-{b}", "calibration", accept=("done",))["df"]
                if not (df["metric"] == "train_s").any():
                    return None  # an algorithm without the parameter-server timers (serial SGD)
                train_s = float(df.loc[df["metric"] == "train_s", "value"].iloc[0])
                per_worker = df[df["metric"] == "updates_total"].set_index("rank")["value"]
                comm = df[df["metric"] == "comm_s"].set_index("rank")["value"].reindex(per_worker.index)
                out[i]["update_s"].append(train_s / float(per_worker.mean()))
                out[i]["comm_s"].append(float((comm / per_worker).mean()))
    return [{k: statistics.median(v) for k, v in d.items()} for d in out]


# One busy process beside the timed ranks: a torch thread computing, as a worker does between messages.
# It says "ready" once torch is imported, so that no timed run overlaps its start.
_BUSY = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\nprint('ready', flush=True)\n"
         "while True:\n    a = torch.tanh(a @ a * 0.01)\n")


def desched_probe(overrides: list[str], batch: int, updates: int, busy: int, reps: int = 3) -> dict:
    """The configured run's timers (:func:`run_timers`, at ``batch``) with ``busy`` more processes
    computing beside its ranks: with one busy process more than the cores, one of them is off its core
    at any instant, and a message waits for the rank that must take it or answer it to be scheduled
    again (MPICH's ranks poll: the OS cannot tell a waiting rank from a computing one)."""
    procs = [subprocess.Popen([sys.executable, "-c", _BUSY], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for _ in range(busy)]
    try:
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"desched probe: a busy process exited before computing (code {proc.wait()})")
        loaded = run_timers(overrides, [batch], updates, reps)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    return loaded[0]


def _has_server(cfg) -> bool:
    """Whether ``cfg``'s algorithm runs with a parameter-server rank."""
    from hdist.algos import get_algo

    return get_algo(cfg.algo.name).needs_server


def rank_threads(cfg) -> int:
    """Torch threads of one rank of ``cfg``'s backend: what the rank's compute is timed with."""
    from hdist.backends._ranks import threads_per_rank
    from hdist.threads import threads_for

    if "threads_per_rank" not in cfg.backend:
        return threads_for(cfg, 1, "threads")
    server = cfg.backend.name == "mpi" and _has_server(cfg)
    return threads_per_rank(cfg, int(cfg.topology.workers) + (1 if server else 0))


def calibrate(cfg, overrides: list[str] | None = None, steps: int = 20, reps: int = 5,
              local_links: bool = False) -> dict:
    """Measure (see the module doc); ``overrides`` are the command line ``cfg`` came from. The step is timed on
    the run's device (``topology.devices``: a GPU's step, so that ``backend=sim`` predicts a GPU cluster)."""
    b = int(cfg.algo.batch_size)
    device = devices.cfg_device(cfg, 0)
    old = torch.get_num_threads()
    torch.set_num_threads(rank_threads(cfg))
    threads = torch.get_num_threads()
    ovs = list(overrides or [])
    if "threads_per_rank" in cfg.backend:
        ovs.append(f"backend.threads_per_rank={threads}")  # the real ranks, timed with the threads they get
    shared = cfg.backend.name in ("thread", "process")
    workers_timed = int(cfg.topology.workers) if cfg.backend.name not in ("serial", "sim") else 1
    try:
        timed = run_timers(ovs, [b, 2 * b], updates=50 * steps, reps=3)  # ~1,000 updates: warm-up < 2 %
        # Shared memory with several workers: their measured access time holds lock waits and cache
        # handoffs, which the sim models (from the probe below). The base cost of an access is
        # timed where neither happens: one worker.
        timed_alone = (run_timers([*ovs, "topology.workers=1"], [b], updates=50 * steps, reps=3)
                       if shared and timed is not None and workers_timed > 1 else timed)
        n_params = sum(p.numel() for p in build_problem(cfg).build_model(0).parameters())
        nbytes = 4 * n_params
        # GPU: a pool 4x the CPU's, past an H100's 50 MB L2 as the CPU's is past its caches
        memory = memory_bandwidth(nbytes, pool_bytes=(256 << 20) if device.type == "cuda" else 64 << 20,
                                  device=device)
        if timed is None:
            what = "plain SGD steps"
            t1, t2 = step_times(cfg, [b, 2 * b], steps, reps, device)
            comm = 0.0
        else:
            on = "one serial worker" if cfg.backend.name in ("serial", "sim") else \
                f"{cfg.topology.workers} {cfg.backend.name} worker(s)"
            what = f"{cfg.algo.name} updates on {on}"
            # Everything but communication is the step's compute (data, gradient, bookkeeping).
            t1, t2 = (d["update_s"] - d["comm_s"] for d in timed)
            comm = timed[0]["comm_s"]
        # Ranks on this machine's cores (shared memory, or local links): what moving x between
        # cores and waking a blocked rank cost; needs two cores.
        on_cores = shared or local_links
        probe = shared_memory_probe(nbytes) if on_cores and (os.cpu_count() or 1) >= 2 else None
        jitter = step_jitter(cfg, b, device=device) if on_cores else None
        # Ranks on this machine with a polling server: what a message waits when one busy rank more
        # than the cores runs (more workers here), timed with a busy process beside the same ranks.
        cores = os.cpu_count() or 1
        busy_server = timed is not None and cfg.backend.name in ("mpi", "torchdist") and _has_server(cfg)
        busy_timed = workers_timed + (1 if busy_server else 0)
        loaded = (desched_probe(ovs, b, updates=50 * steps, busy=cores + 1 - busy_timed)
                  if local_links and busy_server and busy_timed <= cores and cores >= 2 else None)
    finally:
        torch.set_num_threads(old)
    per_sample = max(0.0, (t2 - t1) / b)
    per_step = max(0.0, t1 - per_sample * b)
    # The timed ranks shared this machine's cores: a step on a core of its own is that much faster
    # (the sim applies the same factor back for the same ranks, and carries it to other counts).
    workers = workers_timed if timed is not None else 1
    share = oversubscription(workers, busy_server, cores)
    out = {"per_step_s": per_step / share, "per_sample_s": per_sample / share, "memory_Bps": memory,
           "step_s_at_batch": t1, "batch": b, "threads": threads, "what": what, "comm_s": comm,
           "cores": cores, "server_busy": busy_server, "oversubscription": share,
           # the modelled ranks are processes on this machine's cores (not the source topology's nodes)
           "ranks_here": bool(shared or local_links),
           # the device the step was timed on (the file's header names it)
           "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    if comm > 0 and shared:
        # An update reads and writes the shared x once each: their measured cost, lock included,
        # with one worker (on a core of its own: no oversubscription to take out).
        out["memory_Bps"] = 2 * nbytes / timed_alone[0]["comm_s"]
        out["comm_s"] = timed_alone[0]["comm_s"]
        out["memory_what"] = "an update's read + write of shared x, lock included (1 worker)"
    if jitter is not None:
        out["jitter"] = jitter
    if probe is not None:
        out["handoff_Bps"], out["wake_s"], out["handoff_s"] = probe["handoff_Bps"], probe["wake_s"], probe["handoff_s"]
        # Not measured: how long the calibrated backend polls a held lock before sleeping (process:
        # backend.spin_s; thread and mpi: 0). The sim skips the wake-up for shorter waits.
        out["spin_s"] = float(cfg.backend.get("spin_s") or 0.0)
    if comm > 0 and cfg.backend.name in ("mpi", "torchdist"):
        # An update is a pull (x comes back) and a push (delta goes out): two messages of x. The sim
        # charges the worker's pull for the server's serving copy of x too (server_s), so that copy
        # is taken out of the measured time first, not counted twice.
        # (floored at half the measurement: a noisy copy-bandwidth reading must not leave ~0 s of wire)
        wire = max(comm - nbytes / memory, 0.5 * comm)
        out["bandwidth_Bps"] = 2 * nbytes / wire * share
        out["server_Bps"] = memory
        if loaded is not None:
            # In the sim a worker waits on two messages per update (a pull's request and its reply; a
            # push only puts its bytes on the wire): the extra of the loaded pull + push, split over both.
            out["desched_s"] = max(0.0, loaded["comm_s"] - comm) / 2
            out["comm_loaded_s"] = loaded["comm_s"]
        elif local_links and excess_ranks(workers, busy_server, cores):
            out["desched_s"] = 0.0  # the timed ranks outnumbered the cores: the link's measured time holds it
    elif local_links:
        out["bandwidth_Bps"] = out["memory_Bps"] / 2  # a message: copied into the shared buffer, then out of it
        out["server_Bps"] = out["memory_Bps"]  # an applied update: one pass over x
    return out


# Where each key calibrate writes sits in a topology (every key is on its own line there).
WRITTEN_KEYS = {
    "name": "name",
    **{k: f"sim.compute.{k}" for k in ("per_step_s", "per_sample_s", "jitter", "cores", "server_busy")},
    **{k: f"sim.link.{k}" for k in ("bandwidth_Bps", "desched_s")},
    **{k: f"sim.{k}" for k in ("server_Bps", "memory_Bps", "handoff_Bps", "wake_s", "spin_s")},
}


def topology_path(out: str) -> Path:
    """The file ``hdist calibrate OUT`` writes: a path as given, a bare name in conf/topology/."""
    return Path(out) if (out.endswith(".yaml") or "/" in out) else CONF_DIR / "topology" / f"{out}.yaml"


def check_source_topology(cfg, out: str | None = None) -> Path:
    """The topology file calibrate starts from (``conf/topology/<topology.name>.yaml``), checked before
    anything is measured: a ConfigError naming the missing file or keys (a file written before a key was
    added: conf/topology/laptop.yaml has them all), or an output the new file would inherit from."""
    try:
        files, topo = load_option("topology", str(cfg.topology.name), CONF_DIR)
    except ConfigError as e:
        raise ConfigError(f"calibrate: {e}") from None
    src = files[0]
    missing = [k for k, where in WRITTEN_KEYS.items() if not _has_key(topo, where)]
    if missing:
        raise ConfigError(f"calibrate: topology {src} has no line for {', '.join(missing)} (itself or through its "
                          f"defaults); allowed: a topology with every key calibrate writes (copy them, with their "
                          f"comments, from {src.parent / 'laptop.yaml'})")
    if out is not None and topology_path(out).resolve() in {f.resolve() for f in files}:
        raise ConfigError(f"calibrate: output {out}: the new file inherits topology {cfg.topology.name} "
                          f"({' <- '.join(f.stem for f in files)}) and cannot replace it; allowed: another name")
    return src


def _has_key(cfg: DictConfig, where: str) -> bool:
    """``where`` (dotted) is a key of ``cfg``, null values included."""
    node = cfg
    for part in where.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node[part]
    return True


def _line(indent: int, key: str, value: str, comment: str) -> str:
    """One YAML line with its comment at column 28, as the topology files align them."""
    line = " " * indent + f"{key}: {value}"
    return line + " " * max(1, 28 - len(line)) + "# " + comment


def write_topology(cfg, measured: dict, out: str) -> Path:
    """Write the measured values as a delta of the topology calibrated from: ``defaults: [<it>, _self_]``
    and only the keys measured, each with a comment saying what measured it (the rest is inherited)."""
    src = check_source_topology(cfg, out)
    path = topology_path(out)
    here = "measured by hdist calibrate (see the first line)"
    lines: dict[str, tuple[str, str]] = {"name": (path.stem, "topology name")}
    lines["per_step_s"] = (f"{measured['per_step_s']:.4g}",
                           f"seconds per step on {measured.get('device', 'cpu')}: {here}")
    lines["per_sample_s"] = (f"{measured['per_sample_s']:.4g}", f"seconds per sample on top: {here}")
    if "jitter" in measured:
        lines["jitter"] = (f"{measured['jitter']:.3g}",
                           f"sigma of log seconds of single steps here (5-95 % range / 3.29): {here}")
    if measured.get("ranks_here"):
        # Only a topology of this machine's ranks shares its cores: one calibrated from another machine
        # (lian15_32core: a step timed here, its 32 cores kept) must not cap the sim at this machine's
        # cores, or every time speedup stops at the cores here.
        lines["cores"] = (str(measured["cores"]), "cores the ranks share here (os.cpu_count())")
    lines["server_busy"] = ("true", "a server rank polls while it waits (MPICH): it counts as a rank for cores") \
        if measured["server_busy"] else ("false", "no polling server rank was timed")
    if "bandwidth_Bps" in measured:
        lines["bandwidth_Bps"] = (f"{measured['bandwidth_Bps']:.4g}", f"bytes per second of a link: {here}")
    if "desched_s" in measured:
        lines["desched_s"] = (f"{measured['desched_s']:.4g}",
                              f"seconds more per message per busy rank beyond cores: {here}, 1 busy process too many"
                              if "comm_loaded_s" in measured else
                              "0: the timed ranks outnumbered the cores, so the link's measured time already holds "
                              "the wait")
    if "server_Bps" in measured:
        lines["server_Bps"] = (f"{measured['server_Bps']:.4g}", f"bytes per second the server applies: {here}")
    lines["memory_Bps"] = (f"{measured['memory_Bps']:.4g}",
                           f"bytes per second of {measured.get('memory_what', 'cache-cold copies')}: {here}")
    if "wake_s" in measured:
        hb = measured["handoff_Bps"]
        lines["handoff_Bps"] = ("null" if hb is None else f"{hb:.4g}",
                                f"bytes per second of the extra cost of touching x another core wrote: {here}")
        lines["wake_s"] = (f"{measured['wake_s']:.4g}",
                           f"seconds from a lock's release to a rank that slept on it holding it: {here}")
    if "spin_s" in measured:
        lines["spin_s"] = (f"{measured['spin_s']:.4g}",
                           f"seconds a rank polls a held lock before it sleeps: backend.spin_s of "
                           f"backend={cfg.backend.name}")
    body = [_line(0, "defaults", f"[{src.stem}, _self_]",
                  f"the topology calibrated from (conf/topology/{src.name}), then the values measured here"),
            _line(0, "name", *lines.pop("name"))]
    # The measured keys nested as in the topology, in WRITTEN_KEYS' order.
    opened: list[str] = []
    for key, where in WRITTEN_KEYS.items():
        if key not in lines:
            continue
        parents = where.split(".")[:-1]
        for depth, part in enumerate(parents):
            if opened[:depth + 1] != parents[:depth + 1]:
                body.append(" " * (2 * depth) + f"{part}:")
                opened = parents[:depth + 1]
        opened = parents
        body.append(_line(2 * len(parents), key, *lines[key]))
    header = (f"# Calibrated by `hdist calibrate` on {socket.gethostname()} at "
              f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}: model {cfg.model.name}, batch "
              f"{measured['batch']} ({measured['step_s_at_batch'] * 1e3:.3f} ms per step of {measured['what']}, "
              f"{measured['threads']} thread(s){', local links' if 'server_Bps' in measured else ''}), "
              f"from topology {cfg.topology.name}.\n# Timed on device {measured.get('device', 'cpu')} "
              f"({measured.get('device_name', 'cpu')}).\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, header + "\n".join(body) + "\n")
    return path
