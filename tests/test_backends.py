"""Every backend passes the same conformance suite (``algo=conformance``) through the real launch
path, and a rank that raises or dies ends the run ``failed`` quickly with nothing left running.

The MPI cases (marker ``mpi``, ``make test-mpi``) also run AsySG-con through ``hdist run``,
an external world (``mpiexec -n 3 hdist run ...``) and the bench-ps-mpi benchmark at smoke scale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hdist.backends.conformance import CHECKS, INJECTED
from hdist.launch import execute, prepare
from hdist.metrics import read_run_metrics
from tests.conftest import ROOT, run_subprocess

mpi = pytest.mark.mpi


def _run(tmp_path: Path, backend: str, workers: int, *extra: str):
    return execute(prepare(["algo=conformance", f"backend={backend}", f"topology.workers={workers}", "progress=quiet",
                            f"results_dir={tmp_path}", *extra]))


def _world(backend: str, workers: int) -> int:
    # Parameter-server algorithms get a server rank on MPI and sim.
    return workers + (1 if backend in ("mpi", "sim") else 0)


# --- processes left behind -------------------------------------------------------------------------


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live (non-zombie) process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            out[int(d)] = (int(fields[1]), cmd)
    return out


def _leftovers(before: set[int], run_dir: Path) -> list[str]:
    """Processes started during the run that still live: our new descendants (multiprocessing's
    long-lived forkserver and resource tracker excepted, not their children) and anything whose
    command line names the run directory (MPI ranks live in sessions of their own)."""
    procs = _procs()
    me = os.getpid()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    helpers = {p for p in kids.get(me, []) if "multiprocessing" in procs[p][1]}
    desc, todo = set(), list(kids.get(me, []))
    while todo:
        p = todo.pop()
        desc.add(p)
        todo += kids.get(p, [])
    left = {p for p in desc - helpers if p not in before}
    left |= {p for p, (_, cmd) in procs.items() if str(run_dir) in cmd and p != me}
    return [f"{p}: {procs[p][1][:120]}" for p in sorted(left) if p in procs]


def _assert_nothing_left(before: set[int], run_dir: Path) -> None:
    deadline = time.monotonic() + 10
    while (left := _leftovers(before, run_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"


# --- conformance -----------------------------------------------------------------------------------

CASES = [("serial", 1), ("thread", 2), ("thread", 3), ("process", 2), ("sim", 1), ("sim", 3),
         pytest.param("mpi", 2, marks=mpi), pytest.param("mpi", 3, marks=mpi)]
#: The suite's tensors on each device a rank can have: the CPU (CI), and a GPU where there is one.
gpu = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICES = ["cpu", pytest.param("cuda", marks=gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend,workers", CASES)
def test_conformance(tmp_path, backend, workers, device):
    res = _run(tmp_path, backend, workers, f"topology.devices={device}")
    check_conformance(res, backend, workers)
    assert json.loads((Path(res.run_dir) / "meta.json").read_text())["device"] == device


def check_conformance(res, backend: str, workers: int) -> None:
    """Every rank logged every check of the suite: ok, or skipped where the check does not apply."""
    assert res.status == "done", res.reason
    df = read_run_metrics(res.run_dir).to_pandas()
    rows = df[df["metric"].isin(["conformance_ok", "conformance_skip"])]
    world = _world(backend, workers)
    assert sorted(rows["rank"].unique()) == list(range(world))
    for rank, g in rows.groupby("rank"):
        # One row per check and rank: ok, or skipped where it does not apply.
        assert sorted(g["step"]) == list(range(len(CHECKS))), f"rank {rank}: {sorted(g['step'])}"
        assert (g["kind"] == "event").all() and (g["value"] == 1).all()
    skipped = set()
    if world == 1:
        skipped |= {"sendrecv_ring", "recv_any_source"}
    if backend in ("mpi", "sim"):
        skipped |= {"ps_inconsistent_pull"}  # a server rank: no shared memory
    ok = {CHECKS[s] for s in rows.loc[rows["metric"] == "conformance_ok", "step"]}
    assert ok == set(CHECKS) - skipped
    if backend == "mpi":
        # The server's rows are rank 0's, the workers' their own ranks'.
        r0 = df[df["rank"] == 0]
        assert (r0["role"] == "server").all()
        assert (df.loc[df["rank"] > 0, "role"] == "worker").all()
        assert (Path(res.run_dir) / "metrics-r0.parquet").exists()
        meta = json.loads((Path(res.run_dir) / "meta.json").read_text())
        assert meta["mpi_library"]
        assert not list(Path(res.run_dir).glob("rank-r*.pid"))


# --- failures --------------------------------------------------------------------------------------

FAILURES = [("serial", 1, "fail_rank", 0), ("thread", 3, "fail_rank", 1), ("process", 2, "fail_rank", 1),
            ("sim", 3, "fail_rank", 2),
            ("process", 2, "die_rank", 0), ("process", 2, "die_rank", 1),
            pytest.param("mpi", 2, "fail_rank", 2, marks=mpi), pytest.param("mpi", 2, "die_rank", 1, marks=mpi)]


@pytest.mark.parametrize("backend,workers,key,rank", FAILURES)
def test_a_failing_rank_ends_the_run(tmp_path, backend, workers, key, rank):
    before = set(_procs())
    t0 = time.monotonic()
    res = _run(tmp_path, backend, workers, f"algo.{key}={rank}")
    took = time.monotonic() - t0
    assert res.status == "failed"
    want = INJECTED if key == "fail_rank" else "exit code 9"
    assert want in res.reason, res.reason
    if backend in ("process", "mpi"):
        assert f" {rank}" in res.reason.split(":")[1], res.reason  # "worker N" / "rank N" names the rank
    # The survivors wake at once (the abort flag, a broken barrier), not at backend.timeout_s: the
    # process backend used to take ~10 s here (its watcher's cap), now ~1-2 s.
    limit = 8 if backend == "process" else 30
    assert took < limit, f"the run took {took:.1f} s to fail"
    assert json.loads((Path(res.run_dir) / "status.json").read_text())["status"] == "failed"
    _assert_nothing_left(before, res.run_dir)


def test_die_rank_only_where_ranks_are_processes(tmp_path):
    from hdist.types import ConfigError

    with pytest.raises(ConfigError, match="die_rank"):
        prepare(["algo=conformance", "backend=thread", "topology.workers=2", "algo.die_rank=0"])


def _backend_imports() -> dict[str, set[str]]:
    """hdist.backends.<module> -> the hdist.backends modules it imports, at the top or in a function."""
    import ast

    names = {f.stem for f in (ROOT / "hdist" / "backends").glob("*.py") if f.stem != "__init__"}
    out = {}
    for name in names:
        deps = set()
        for node in ast.walk(ast.parse((ROOT / "hdist" / "backends" / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            deps |= {m.rsplit(".", 1)[1] for m in mods if m.startswith("hdist.backends.") and m.count(".") == 2}
        out[name] = deps & names
    return out


def test_no_import_circle_between_backend_modules():
    """The per-rank entry of mpi imports the backend, never the other way round (the old
    ``backends/mpi.py <-> rank_main.py`` circle); the supervisor imports no backend."""
    graph = _backend_imports()
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            assert m != start, f"import circle through hdist.backends.{start}"
            if m not in seen:
                seen.add(m)
                todo += graph[m]
    assert "mpi" in graph["mpi_rank"]
    assert graph["_supervise"] <= {"_ranks"}


def test_importing_the_mpi_backend_does_not_start_mpi():
    code = ("import sys, hdist.backends.mpi as m; assert 'mpi4py.MPI' not in sys.modules; "
            "v = m.mpi_version(); assert not m.in_external_world(); assert 'mpi4py.MPI' not in sys.modules; "
            "print(v)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


# --- MPI end to end --------------------------------------------------------------------------------


@mpi
def test_mpi_asysg_con_through_the_cli(tmp_path):
    r = run_subprocess("run", "algo=asysg_con", "backend=mpi", "topology.workers=2", "scale=smoke", "progress=quiet",
                       f"results_dir={tmp_path}", timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = list((tmp_path / "adhoc").iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "done"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["backend"] == "mpi" and meta["mpi_library"]
    df = read_run_metrics(run_dir).to_pandas()
    server = df[df["rank"] == 0]
    st = server[server["metric"] == "staleness"]
    assert len(st) > 0 and (st["role"] == "server").all() and (st["value"] >= 0).all()
    assert {"test_error", "train_s"} <= set(server["metric"])
    for rank in (1, 2):
        w = df[df["rank"] == rank]
        assert (w["role"] == "worker").all() and {"compute_s", "comm_s", "wait_s"} <= set(w["metric"])
    # One update per worker step, all applied by the server.
    totals = df.loc[df["metric"] == "updates_total", "value"].sum()
    assert len(st) == totals


@mpi
def test_mpi_external_world(tmp_path):
    """``mpiexec -n 3 hdist run backend=mpi ...``: no second launch; rank 0 alone writes the run files."""
    from hdist.backends.mpi import resolve_launcher

    cmd = [resolve_launcher("mpiexec"), "-n", "3", sys.executable, "-m", "hdist.cli", "run", "algo=conformance",
           "backend=mpi", "topology.workers=2", "progress=quiet", f"results_dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = list((tmp_path / "adhoc").iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "done"
    df = read_run_metrics(run_dir).to_pandas()
    assert sorted(df["rank"].unique()) == [0, 1, 2]
    assert len(df[df["metric"] == "conformance_ok"]) == 3 * (len(CHECKS) - 1)
    assert r.stderr.count("[hdist] done") == 1  # rank 0 records the run; the others follow


@mpi
def test_bench_ps_mpi_smoke(tmp_path):
    from hdist.papers.bench import ps_mpi as exp

    res = execute(prepare(["experiment=bench-ps-mpi", "scale=smoke", "topology.workers=1", "progress=quiet",
                           f"results_dir={tmp_path}"]))
    assert res.status == "done", res.reason
    df = read_run_metrics(res.run_dir).to_pandas()
    rows = df[df["metric"] == "updates_per_s"]
    assert set(rows["role"]) == {"hdist", "raw"} and (rows["rank"] == 0).all() and (rows["value"] > 0).all()
    assert len(rows) == 2 * 3  # both sides, smoke reps
    claims = exp.check(df.assign(workers=1))
    assert len(claims) == 1 and claims[0].passed is not None


@pytest.mark.parametrize("workers", [1, 2])
def test_thread_rank_0_runs_on_the_calling_thread_with_its_share_of_cores(tmp_path, monkeypatch, workers):
    """OpenMP gives each calling thread its own team: rank 0 keeps the calling thread's, and the
    null threads_per_rank follows the thread rule (hdist.threads: a big model's step gets the cores
    shared out among the rank threads, cores / workers)."""
    import threading

    import torch

    from hdist.backends import thread
    from hdist.types import World

    seen = {}

    def rank_fn(ctx):
        seen[ctx.rank] = (threading.current_thread() is threading.main_thread(), torch.get_num_threads())

    import hdist.threads

    # a step above the rule's threshold (a big model's), so the pool is shared out
    monkeypatch.setattr(hdist.threads, "step_flop", lambda cfg: 1e12)
    cfg = prepare(["algo=conformance", "backend=thread", f"topology.workers={workers}"])
    thread.launch(tmp_path, cfg, rank_fn, World(workers=workers, stages=1, servers=0, ranks=workers), n_params=4)
    share = max(1, (os.cpu_count() or 1) // workers)
    assert seen == {r: (r == 0, share) for r in range(workers)}


@pytest.mark.slow  # timing-dependent: it waits 1.5 s for the loop, which a loaded machine may not reach
def test_thread_sigterm_in_rank_0_is_an_interruption(tmp_path):
    """Rank 0 of the thread backend runs on the main thread (its OpenMP team): a SIGTERM lands in
    its step, stops the other rank, and the run is recorded interrupted with every metrics file."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "hdist.cli", "run", "algo=asysg_con", "backend=thread",
                             "topology.workers=2", "scale=smoke", "scale.epochs=1000", "progress=quiet",
                             f"results_dir={tmp_path}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("adhoc/*/status.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (run_dir,) = list((tmp_path / "adhoc").iterdir())
    time.sleep(1.5)  # into the training loop
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and time.monotonic() - t0 < 15, err[-2000:]
    st = json.loads((run_dir / "status.json").read_text())
    assert st["status"] == "failed" and "interrupted" in st["reason"], st
    for rank in range(2):
        assert len(read_run_metrics(run_dir).to_pandas().query(f"rank == {rank}"))


@mpi
def test_mpi_sigterm_stops_every_rank_and_keeps_their_metrics(tmp_path):
    import signal

    before = set(_procs())
    proc = subprocess.Popen([sys.executable, "-m", "hdist.cli", "run", "algo=asysg_con", "backend=mpi",
                             "topology.workers=2", "scale=smoke", "scale.epochs=1000", "progress=quiet",
                             "log.train_every=1", "log.flush_s=0.05", f"results_dir={tmp_path}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # both workers training (their first rows flushed): every rank has its metrics file open
    while len({p.name.split(".")[0] for p in tmp_path.glob("adhoc/*/metrics-r*.p*.parquet")}) < 2 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    (run_dir,) = list((tmp_path / "adhoc").iterdir())
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    proc.communicate(timeout=60)
    assert proc.returncode != 0 and time.monotonic() - t0 < 15
    st = json.loads((run_dir / "status.json").read_text())
    assert st["status"] == "failed" and "interrupted" in st["reason"]
    for rank in range(3):  # every rank closed its metrics file on the way out
        assert (run_dir / f"metrics-r{rank}.parquet").exists()
    _assert_nothing_left(before, run_dir)


@pytest.mark.slow  # a benchmark's plumbing at smoke scale: minutes on a loaded 2-core box (make test-slow)
def test_bench_thread_reproduces_at_smoke(cli, tmp_path):
    code, out, err = cli("reproduce", "bench-thread", "scale=smoke", "scale.n_train=300", "progress=quiet",
                         f"results_dir={tmp_path}")
    assert code == 0, err
    assert (tmp_path / "figures" / "bench-thread.png").exists()
    # one claim with its goal, the 2-worker reference beside it; both sides measured 5 times
    assert "one thread worker costs <= 1.25x the serial backend" in out and "5 and 5 reps" in out
    assert "2 thread workers vs serial" in out


def test_process_ranks_poll_a_held_lock_only_with_a_core_each():
    """LocalComm polls the lock (non-blocking tries) for spin_s before a blocking acquire; the process
    launcher turns polling off when the ranks outnumber the cores."""
    from omegaconf import OmegaConf

    from hdist.backends.local import LocalComm, LocalState
    from hdist.backends.process import spin_s

    class Lock:
        def __init__(self, busy_tries: int):
            self.busy, self.calls = busy_tries, []

        def acquire(self, block=True, timeout=None):
            self.calls.append(block)
            if not block:
                self.busy -= 1
                return self.busy < 0
            return True

        def release(self):
            pass

    def acquire(spin: float, busy_tries: int) -> list:
        lock = Lock(busy_tries)
        state = LocalState(x=None, counts=None, scratch=None, lock=lock, barrier=None, abort=None, inboxes=[],
                           timeout_s=1.0, spin_s=spin)
        LocalComm(state, 0, 1)._acquire()
        return lock.calls

    assert acquire(10.0, 3) == [False] * 4  # freed on the 4th poll: never slept
    assert acquire(0.0, 3) == [True]  # no polling: sleeps at once
    calls = acquire(1e-3, 10 ** 9)  # held past spin_s: polls, then sleeps
    assert calls[-1] is True and len(calls) > 1 and not any(calls[:-1])
    cores = os.cpu_count() or 1
    cfg = OmegaConf.create({"backend": {"spin_s": 2e-4}})
    assert spin_s(cfg, cores) == 2e-4
    assert spin_s(cfg, cores + 1) == 0.0


def test_a_rank_waiting_on_a_lock_its_failed_peer_holds_stops_with_the_run():
    """A peer can fail holding x's lock (a SIGTERM in rank 0 between its acquire and the try that
    releases it, a killed process): the ranks waiting on it stop once the run is aborted, within
    ABORT_POLL_S, not after timeout_s."""
    import threading

    import torch

    from hdist.backends.local import ABORT_POLL_S, LocalComm, LocalState, PeerFailed

    lock = threading.Lock()
    lock.acquire()  # held by the failed peer: never released
    state = LocalState(x=torch.zeros(3), counts=torch.zeros(1, dtype=torch.long), scratch=None, lock=lock,
                       barrier=threading.Barrier(1), abort=threading.Event(), inboxes=[], timeout_s=30.0)
    threading.Timer(0.2, state.abort.set).start()
    t0 = time.monotonic()
    with pytest.raises(PeerFailed, match="another rank failed"):
        LocalComm(state, 0, 1).pull(torch.zeros(3))
    assert time.monotonic() - t0 < 0.2 + 2 * ABORT_POLL_S


def test_bench_process_speedup_claims_the_lock_polling_against_sleeping():
    """bench-process-speedup's second claim: 2 AsySG-con workers polling the lock (default spin_s) vs
    sleeping on it (spin_s 0), the ratio of their median training times; the lock-free claim as before."""
    import pandas as pd

    from hdist.figures import load_experiment

    mod = load_experiment("bench-process-speedup")
    rows = []
    for i, (algo, workers, spin, train_s) in enumerate(
            [("asysg_incon", 1, 2e-4, 1.0), ("asysg_incon", 2, 2e-4, 0.52), ("asysg_con", 1, 2e-4, 1.0),
             ("asysg_con", 2, 2e-4, 0.5), ("asysg_con", 2, 0.0, 0.65)]):
        base = {"run_id": f"r{i}", "algo": algo, "workers": workers, "seed": 0, "backend.spin_s": spin}
        rows += [{**base, "metric": "train_s", "value": train_s}, {**base, "metric": "updates_total", "value": 1000.0}]
    claims = mod.check(pd.DataFrame(rows))
    assert [c.passed for c in claims] == [True, True]
    assert claims[0].measured.startswith("1.92") and claims[1].measured.startswith("1.30 (0.65 s vs 0.50 s")
    assert "2 workers vs 1: 2.00x" in claims[1].measured
    slower = pd.DataFrame([{**r, "value": 0.52} if r["run_id"] == "r4" and r["metric"] == "train_s" else r
                           for r in rows])
    assert mod.check(slower)[1].passed is False  # 0.52 / 0.50 = 1.04 < 1.1
    mod.plot(pd.DataFrame(rows))


# --- the process backend's barrier: no wait on a stopped peer --------------------------------------------


def _barrier_sleeper(barrier, arrived) -> None:
    arrived.set()
    barrier.wait(timeout=60)  # stopped (SIGSTOP) here by the test


def _barrier_last(barrier, passed) -> None:
    """Arrive last at round 1 (its peer stopped while asleep in it), then wait in round 2 until the
    test aborts the barrier. Exit code 0: round 1 returned and round 2 raised BrokenBarrierError."""
    import threading

    barrier.wait(timeout=60)
    passed.set()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        raise SystemExit(0) from None
    raise SystemExit(1)


def test_process_barrier_never_waits_on_a_stopped_peer():
    """multiprocessing.Barrier's last arrival waits, without a timeout, for every sleeper to wake and
    acknowledge: a peer stopped (SIGSTOP) while asleep in it held the last arrival, and abort(), for
    good. ProcessBarrier's last arrival goes on, and abort() wakes a rank waiting in the next round."""
    import multiprocessing as mp
    import signal

    from hdist.backends.local import ProcessBarrier

    # fork: no import of torch per child (the process backend's forkserver, through which the barrier
    # is pickled, runs it in test_conformance)
    ctx = mp.get_context("fork")
    barrier, arrived, passed = ProcessBarrier(2, ctx), ctx.Event(), ctx.Event()
    sleeper = ctx.Process(target=_barrier_sleeper, args=(barrier, arrived), daemon=True)
    last = ctx.Process(target=_barrier_last, args=(barrier, passed), daemon=True)
    sleeper.start()
    try:
        assert arrived.wait(30)
        time.sleep(0.2)  # into its wait on the gate (the test holds whether or not it got that far)
        os.kill(sleeper.pid, signal.SIGSTOP)
        last.start()
        assert passed.wait(30), "the last arrival did not leave round 1"
        barrier.abort()  # from this process, while the stopped rank still sits in the barrier
        last.join(30)
        assert not last.is_alive(), "abort() did not end the wait in round 2"
        assert last.exitcode == 0
    finally:
        for p in (sleeper, last):
            if p.pid is not None and p.is_alive():
                p.kill()
                p.join(5)


def test_process_barrier_rounds_do_not_mix_and_a_timeout_breaks_it():
    """Reuse: what every rank wrote before a wait is seen by all after it, round after round (the
    two-waits-per-round pattern of LocalComm.allreduce); a wait past its timeout breaks the barrier
    for every party, as threading.Barrier's does."""
    import multiprocessing as mp
    import threading

    from hdist.backends.local import ProcessBarrier

    parties, rounds = 3, 300
    barrier, lock = ProcessBarrier(parties, mp.get_context("fork"), poll_s=0.05), threading.Lock()
    written, bad = [0], []

    def rank() -> None:
        for r in range(rounds):
            with lock:
                written[0] += 1
            barrier.wait(timeout=30)
            if written[0] != parties * (r + 1):
                bad.append((r, written[0]))
            barrier.wait(timeout=30)

    threads = [threading.Thread(target=rank, daemon=True) for _ in range(parties)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and not bad and not barrier.broken

    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(timeout=0.1)  # the others never come
    assert barrier.broken
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(timeout=30)  # broken stays broken: no wait
