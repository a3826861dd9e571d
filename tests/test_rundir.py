"""A run directory has one writer (issue 26): a lock per run, ranks that die with their owner, a full
disk recorded as a failure, the first failure named, timeout_s as the bound, no leaks."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hdist.launch import execute, prepare, read_status
from hdist.metrics import read_run_metrics
from hdist.rundir import RANKS_LOCK, RunLock, holder
from tests.conftest import ROOT

SMOKE = ["scale=smoke", "progress=quiet", "log.train_every=1"]


def _popen(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "hdist.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def _no_duplicates(run_dir: Path) -> None:
    df = read_run_metrics(run_dir).to_pandas()
    train = df[df["kind"] == "train"]
    assert len(train) > 0
    assert not train.duplicated(["rank", "step", "metric"]).any()


def _wait_for(pattern: str, timeout_s: float = 90) -> Path:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        found = glob.glob(pattern)
        if found:
            return Path(found[0])
        time.sleep(0.05)
    raise AssertionError(f"nothing matched {pattern} within {timeout_s} s")


#: a run long enough to be caught training: 8 epochs at small scale, rows flushed at once
LONG = ["scale=small", "scale.epochs=8", "log.train_every=1", "log.flush_s=0.05", "progress=quiet"]


def _start_training(results_dir: Path, ovs):
    """Start ``hdist run`` of a :data:`LONG` run with ``ovs`` into ``results_dir``; return (the process,
    rank 1's pid, the run dir) once rank 1 has flushed its first rows."""
    proc = _popen(["run", *LONG, *ovs, f"results_dir={results_dir}"])
    pid_file = _wait_for(str(results_dir / "adhoc/*/rank-r1.pid"))
    run_dir = pid_file.parent
    _wait_for(str(run_dir / "metrics-r1.p*.parquet"))
    return proc, int(pid_file.read_text()), run_dir


def _ranks_gone(run_dir: Path) -> bool:
    """True when no rank holds the run's ranks' lock (every rank holds it shared for its life)."""
    fd = os.open(run_dir / RANKS_LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


# --- one writer ----------------------------------------------------------------------------------


def test_a_run_owned_elsewhere_is_skipped_and_left_alone(tmp_path, capsys):
    cfg = prepare([*SMOKE, f"results_dir={tmp_path}"])
    from hdist.launch import run_paths

    _, run_dir = run_paths(cfg)
    with RunLock(run_dir):
        (run_dir / "status.json").write_text('{"status": "running", "reason": ""}')
        before = sorted(p.name for p in run_dir.iterdir())
        assert holder(run_dir)["pid"] == os.getpid()
        res = execute(cfg)
        err = capsys.readouterr().err
        assert res.skipped and res.status == "running"
        assert f"running elsewhere, pid {os.getpid()} on host" in err
        assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing touched
    assert holder(run_dir) is None  # the OS dropped the lock with its fd
    res = execute(cfg)
    assert res.status == "done" and not res.skipped
    _no_duplicates(run_dir)


def test_ls_shows_an_owned_run_as_running(tmp_path, cli):
    res = execute(prepare([*SMOKE, f"results_dir={tmp_path}"]))
    with RunLock(res.run_dir):
        code, out, _ = cli("ls", "adhoc", f"results_dir={tmp_path}")
    assert code == 0
    assert f"{res.run_id}: running: running elsewhere, pid {os.getpid()}" in out
    (res.run_dir / "status.json").write_text('{"status": "running", "reason": ""}')  # as a killed owner leaves it
    _, out, _ = cli("ls", "adhoc", f"results_dir={tmp_path}")
    assert f"{res.run_id}: running: no process owns it" in out


def test_two_identical_runs_at_once_give_one_done_run(tmp_path):
    args = ["run", "scale=smoke", "scale.epochs=3", "log.train_every=1", "log.flush_s=0.05", "progress=quiet",
            f"results_dir={tmp_path}"]
    procs = [_popen(args) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = list(tmp_path.glob("adhoc/*/status.json"))
    assert len(runs) == 1
    run_dir = runs[0].parent
    assert _status(run_dir)["status"] == "done"
    errs = [e for _, e in outs]
    # One ran it; the other found it running (or, if it came late, done) and did not touch it.
    assert sum("[hdist] done" in e for e in errs) == 1, errs
    assert sum("running elsewhere" in e or "already done" in e for e in errs) == 1, errs
    _no_duplicates(run_dir)
    assert not list(run_dir.glob(".*.tmp*")) and not list(run_dir.glob("metrics-r*.p*.parquet"))


# --- ranks die with their owner ---------------------------------------------------------------------


def _parent_kill_then_rerun(tmp_path, backend: str, extra=()):
    ovs = [*LONG, "algo=kavg", f"backend={backend}", "topology.workers=2", f"results_dir={tmp_path}", *extra]
    proc = _popen(["run", *ovs])
    part = _wait_for(str(tmp_path / "adhoc/*/metrics-r1.p*.parquet"))
    run_dir = part.parent
    proc.send_signal(signal.SIGKILL)  # the hdist process only, not its group
    proc.communicate(timeout=30)
    deadline = time.time() + 5
    while not _ranks_gone(run_dir) and time.time() < deadline:
        time.sleep(0.1)
    assert _ranks_gone(run_dir), "a rank outlived its owner by 5 s"
    assert _status(run_dir)["status"] == "running"
    res = execute(prepare(ovs))
    assert res.run_dir == run_dir and res.status == "done" and not res.skipped
    _no_duplicates(run_dir)


@pytest.mark.slow
def test_process_ranks_die_with_the_owner(tmp_path):
    _parent_kill_then_rerun(tmp_path, "process")


@pytest.mark.slow
def test_torchdist_ranks_die_with_the_owner(tmp_path):
    _parent_kill_then_rerun(tmp_path, "torchdist")


# --- a full disk ------------------------------------------------------------------------------------


def _unshare_ok() -> bool:
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                        "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _unshare_ok(), reason="needs unshare -rm and a tmpfs mount (user namespaces)")
@pytest.mark.parametrize("layout", [
    ["backend=serial"],
    pytest.param(["backend=process", "algo=kavg", "topology.workers=2"], marks=pytest.mark.slow),
    pytest.param(["backend=mpi", "algo=kavg", "topology.workers=2"], marks=pytest.mark.mpi),
], ids=["serial", "process", "mpi"])
def test_a_full_disk_fails_the_run_with_the_reason(tmp_path, layout):
    full = tmp_path / "full"
    full.mkdir()
    saved = tmp_path / "saved"
    args = ["run", "scale=smoke", "scale.epochs=2", "log.train_every=1", "log.flush_s=0.05", "progress=quiet",
            *layout, f"results_dir={full}"]
    cmd = " ".join([sys.executable, "-m", "hdist.cli", *args])
    # A 96 KB tmpfs: the config, meta and the 64 KB reserve fit, the metrics do not.
    script = (f"mount -t tmpfs -o size=96k tmpfs {full} && cd {ROOT} && {cmd} >{tmp_path}/out 2>{tmp_path}/err; "
              f"echo $? >{tmp_path}/rc; cp -a {full} {saved}")
    subprocess.run(["unshare", "-rm", "sh", "-c", script], timeout=180, check=True)
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "1", err
    run_dir = next(saved.glob("adhoc/*"))
    st = _status(run_dir)
    assert st["status"] == "failed" and "no space left on device writing " in st["reason"], st
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert [ln for ln in lines if "no space left" in ln] == [ln for ln in lines if "FAILED" in ln], err
    assert len([ln for ln in lines if "FAILED" in ln]) == 1, err
    names = [p.name for p in run_dir.iterdir()]
    assert not [n for n in names if ".tmp" in n], names  # no temp file left behind
    assert ".reserve" not in names
    for f in run_dir.glob("*.parquet"):
        pq.read_table(f)  # every visible file readable
    for f in run_dir.glob("*.json"):
        json.loads(f.read_text())


# --- the first failure is named ----------------------------------------------------------------------


@pytest.mark.slow
def test_killing_worker_1_names_worker_1(tmp_path):
    proc, pid, run_dir = _start_training(tmp_path, ["algo=kavg", "backend=process", "topology.workers=2"])
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    st = _status(run_dir)
    assert st["status"] == "failed" and "worker 1 killed by SIGKILL" in st["reason"], st
    df = read_run_metrics(run_dir).to_pandas()
    assert set(df["rank"]) == {0, 1}  # rows written before the failure are kept
    assert not list(run_dir.glob("rank-r*.pid"))


# --- timeout_s is the bound ---------------------------------------------------------------------------


def _stop_rank_1(tmp_path, layout, timeout_s=10.0):
    """SIGSTOP rank 1 of a running job; return (seconds until the run was recorded as ended, status,
    run_dir, stderr). The bound is on the run's end (status.json), not on the exit of the hdist process
    after it, whose interpreter shutdown a loaded machine can stretch by seconds."""
    proc, pid, run_dir = _start_training(tmp_path, [f"backend.timeout_s={timeout_s}", *layout])
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    took_s = None
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout_s + 60:
            if took_s is None and read_status(run_dir)["status"] in ("failed", "done", "diverged"):
                took_s = time.monotonic() - t0
            time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
        if took_s is None:
            took_s = time.monotonic() - t0
    finally:
        try:  # never leave a stopped process behind, whatever happened
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return took_s, _status(run_dir), run_dir, err


@pytest.mark.slow
@pytest.mark.parametrize("layout,label", [
    (["backend=process", "algo=kavg", "topology.workers=2"], "worker 1"),
    (["backend=torchdist", "algo=kavg", "topology.workers=2"], "rank 1"),
    pytest.param(["backend=mpi", "algo=kavg", "topology.workers=2"], "rank 1", marks=pytest.mark.mpi),
], ids=["process", "torchdist", "mpi"])
def test_a_stopped_rank_ends_the_run_within_timeout_s(tmp_path, layout, label):
    timeout_s = 10.0
    took_s, st, run_dir, err = _stop_rank_1(tmp_path, layout, timeout_s)
    print(f"{layout[0]}: a stopped rank ended the run after {took_s:.1f} s (backend.timeout_s={timeout_s})")
    assert took_s < timeout_s + 5, err
    assert st["status"] == "failed" and f"{label} stopped (SIGSTOP)" in st["reason"], st
    assert set(read_run_metrics(run_dir).to_pandas()["rank"]) >= {0, 1}


# --- MPI: every rank's rows, no leaks ----------------------------------------------------------------


def _mpich_shm() -> set[str]:
    return set(glob.glob("/dev/shm/mpich_shm_*"))


@pytest.mark.mpi
def test_a_diverged_mpi_run_keeps_every_ranks_rows(tmp_path):
    res = execute(prepare(["algo=asysg_con", "backend=mpi", "topology.workers=2", "algo.lr=1e6", *SMOKE,
                           f"results_dir={tmp_path}"]))
    assert res.status == "diverged"
    df = read_run_metrics(res.run_dir).to_pandas()
    assert set(df["rank"]) == {0, 1, 2}  # the server's rows and both workers'
    assert not list(res.run_dir.glob("metrics-r*.p*.parquet"))  # every rank closed its final file


@pytest.mark.mpi
def test_a_killed_mpi_run_leaves_no_shared_memory(tmp_path):
    proc, pid, run_dir = _start_training(tmp_path, ["backend=mpi", "algo=kavg", "topology.workers=2"])
    ours = {line.split(maxsplit=5)[5] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if line.count(" ") >= 5 and "/dev/shm/mpich_shm_" in line}
    assert ours, "the rank maps no MPICH segment (another MPI library?)"
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    st = _status(run_dir)
    assert st["status"] == "failed" and "rank 1" in st["reason"] and "SIGKILL" in st["reason"], st
    assert not (ours & _mpich_shm())
    assert set(read_run_metrics(run_dir).to_pandas()["rank"]) == {0, 1}


# --- the pieces, without processes (fast; a CI without user namespaces still checks them) ---------------


def test_a_write_error_names_the_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import errno

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hdist import metrics
    from hdist.rundir import WriteFailed

    def full(table, where, **kw):
        Path(where).write_bytes(b"torn")  # what a full disk leaves: part of the file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)  # metrics imports pyarrow.parquet where it writes
    target = tmp_path / "metrics-r0.p00001.parquet"
    with pytest.raises(WriteFailed) as e:
        metrics._write_table_atomic(pa.table({"a": [1]}), target)
    assert str(e.value) == f"no space left on device writing {target}"
    assert list(tmp_path.iterdir()) == []


def test_the_first_failure_is_named_not_the_peer_that_saw_it():
    from hdist.backends._supervise import raise_first

    died = [(0, "exit code 3"), (1, "killed by SIGKILL")]  # worker 0 exits first, only because 1 died
    for reports in ([(0, "peer", "PeerFailed: barrier: a peer failed")], []):  # its report may be lost
        with pytest.raises(RuntimeError, match="^worker 1 killed by SIGKILL$"):
            raise_first(reports, died, "worker")
    with pytest.raises(RuntimeError, match="^worker 1 stopped"):
        raise_first([(0, "peer", "PeerFailed")], [(0, "exit code 3")], "worker",
                    "worker 1 stopped (SIGSTOP) and did not go on")
