"""Resolve a config -> a run directory -> the backend's launch; the results store.

Layout of one run: ``<results_dir>/<stem>/<run_id>/`` with ``config.yaml`` (resolved),
``meta.json`` (versions, host, git, backend, ``n_params``, start/end), ``status.json``
(``running | done | failed | diverged`` and the reason) and ``metrics-r<rank>.parquet``.
Every file is written atomically. A run whose status is ``done`` or ``diverged`` is finished
and skipped on rerun; any other (failed, or ``running`` left by a killed process) is redone
from scratch. One process owns a run directory at a time (:mod:`hdist.rundir`): a second one
that finds it owned skips it ("running elsewhere, pid N on host H") and touches nothing; a full
or unwritable disk ends the run ``failed`` with the file it could not write.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hdist import config as C
from hdist.backends._ranks import Interrupted, raise_interrupted
from hdist.metrics import atomic_write_json, atomic_write_text
from hdist.rundir import Held, RankWriteFailed, RunLock, WriteFailed, drop_reserve, with_reserve
from hdist.types import ConfigError, Diverged

FINISHED = ("done", "diverged")
_OLD_RANKS_GRACE_S = 10.0  # beyond timeout_s: how long a new owner waits for a previous owner's ranks to end


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    reason: str = ""
    skipped: bool = False


def read_status(run_dir: Path) -> dict:
    """The run's status.json; ``missing`` when absent or not one hdist wrote (the run is then redone)."""
    from hdist.metrics import UnreadableRun, read_run_json

    try:
        st = read_run_json(Path(run_dir) / "status.json")
    except (FileNotFoundError, UnreadableRun):
        return {"status": "missing", "reason": ""}
    return st if isinstance(st.get("status"), str) else {"status": "missing", "reason": ""}


def write_status(run_dir: Path, status: str, reason: str = "") -> None:
    atomic_write_json(Path(run_dir) / "status.json", {"status": status, "reason": reason})


def prepare(overrides: list[str], *, writes: bool = True) -> DictConfig:
    """Compose, finalize and validate one run's config (raises ConfigError); ``writes``: see :func:`C.validate`."""
    cfg = C.finalize(C.compose(overrides), overrides)
    C.validate(cfg, writes=writes)
    return cfg


def check_problem(cfg: DictConfig) -> dict:
    """Build the run's problem (data, model) once to catch user errors before anything is written; returns
    what meta.json records of it. A missing real dataset with ``dataset.fallback: synthetic`` sets
    ``dataset.stand_in``: a synthetic stand-in is a different run from the real data's, with its own id, so
    that real data added later is run rather than skipped (``hdist run --cfg job`` prints it too). Data read
    from files sets ``dataset.identity``, a hash of their names and md5s (:func:`hdist.data.root.contents_identity`):
    other file contents (a fixed file, another data root) are another run, with its own id. Generated data
    sets none: its identity is its settings, already in the config (the ids of those runs stay as they were)."""
    from hdist.algos import get_algo

    algo = get_algo(cfg.algo.name)
    if algo.check is not None:
        return algo.check(cfg) or {}
    from hdist import objectives
    from hdist.models import n_params
    from hdist.problems import build_problem

    prob = build_problem(cfg)
    if algo.check_problem is not None:
        algo.check_problem(cfg, prob)
    objectives.check_pca_mu(cfg, prob)  # a bound computed from the data
    plain = (str, int, float, bool, list, tuple, type(None))
    if prob.data.info.get("stand_in_for"):
        line = prob.data.info.get("stand_in_line")
        if line and line not in _SAID:  # once per process, not once per run of a sweep
            _SAID.add(line)
            print(f"[hdist] {line}", file=sys.stderr, flush=True)
        cfg.dataset.stand_in = "synthetic"
    files = prob.data.info.get("data_files") or {}
    if files and "generator" not in files:
        from hdist.data.root import contents_identity

        cfg.dataset.identity = contents_identity(files)
    return {"n_params": n_params(prob.build_model(0)), "data": prob.data.description,
            "data_source": prob.data.source, **{k: v for k, v in prob.data.info.items() if isinstance(v, plain)},
            "data_files": prob.data.info.get("data_files", {})}


def machine_load(when: str) -> dict:
    """The machine's 1-minute load average and CPU count at ``when`` (start | end) of a run: a wall-clock
    timing is compared with another only under like load (hdist.claims.like_load)."""
    try:
        load_1m = os.getloadavg()[0]
    except OSError:  # not available on this platform: the timing claims say "no load recorded"
        load_1m = None
    return {f"load_1m_{when}": load_1m, f"cpu_count_{when}": os.cpu_count()}


def run_paths(cfg: DictConfig) -> tuple[str, Path]:
    rid = C.run_id(cfg)
    return rid, Path(cfg.results_dir) / cfg.stem / rid


_GIT: dict | None = None


def _git_info() -> dict:
    global _GIT
    if _GIT is None:
        try:
            r = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=C.ROOT, capture_output=True,
                               text=True, timeout=5)
            commit = r.stdout.strip() if r.returncode == 0 else None
            dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=C.ROOT,
                                        capture_output=True, text=True, timeout=5).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            commit, dirty = None, None
        _GIT = {"git_commit": commit, "git_dirty": dirty}
    return _GIT


def base_meta(cfg: DictConfig, run_id: str) -> dict:
    import numpy
    import torch

    import hdist

    return {
        "run_id": run_id,
        "stem": cfg.stem,
        "hdist": hdist.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        **_git_info(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "backend": cfg.backend.name,
        # algo.precision (hdist.precision); fp32 for a config written before the key existed
        "precision": str((cfg.algo.get("precision") if "algo" in cfg else None) or "fp32"),
        "argv": sys.argv,
        "start": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    }


def execute(cfg: DictConfig, *, force: bool = False, quiet_skip: bool = False) -> RunResult:
    """Run one finalized, validated config unless it already finished. Returns its result.

    Inside an external MPI world (``mpiexec -n N hdist run backend=mpi ...``: the backend's
    ``in_external_world``), world rank 0 alone prepares the run directory and records the
    result; the other ranks run their part of the run rank 0 announces (``backend.follow``),
    and ``backend.release`` tells them how it ended, whatever way rank 0 leaves.
    """
    from hdist.backends import get_backend

    backend = get_backend(cfg.backend.name)
    if not backend.in_external_world(cfg):
        return _execute(cfg, force=force, quiet_skip=quiet_skip)
    if backend.world_rank() != 0:
        from hdist.algos import get_algo

        return RunResult(*backend.follow(get_algo(cfg.algo.name).run))
    result = None
    try:
        result = _execute(cfg, force=force, quiet_skip=quiet_skip)
        return result
    finally:
        backend.release(result or RunResult(*run_paths(cfg), "failed", "world rank 0 stopped before the run"))


def _finished(cfg: DictConfig, rid: str, run_dir: Path, quiet: bool) -> RunResult | None:
    """The run's result if it already finished (done or diverged): reruns skip it."""
    st = read_status(run_dir)
    if st["status"] not in FINISHED:
        return None
    if not quiet:
        print(f"[hdist] skip {cfg.stem}/{rid}: already {st['status']} ({run_dir})", file=sys.stderr)
    return RunResult(rid, run_dir, st["status"], st.get("reason", ""), skipped=True)


def _finished_on_cpu_as_cuda(cfg: DictConfig, quiet: bool) -> RunResult | None:
    """A CPU run whose config an older hdist stored with ``topology.devices: cuda``: before the device rule
    (:mod:`hdist.devices`) every run computed on the CPU whatever the key said, so that run, finished and
    with no ``device`` in its meta.json, is this one (kavg18's topology said cuda)."""
    if str(cfg.topology.get("devices")) != "cpu":
        return None
    old = OmegaConf.create(OmegaConf.to_container(cfg))
    old.topology.devices = "cuda"
    rid, run_dir = run_paths(old)
    if read_status(run_dir)["status"] not in FINISHED:
        return None
    try:
        recorded = json.loads((Path(run_dir) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or "device" in recorded:
        return None
    return _finished(cfg, rid, run_dir, quiet)


def _recorded_files(run_dir: Path) -> dict[str, str]:
    """The data files (path -> md5) recorded in a run's meta.json; none for generated data (its identity is
    in the config) and for a run finished by an older hdist that recorded none."""
    try:
        recorded = json.loads((Path(run_dir) / "meta.json").read_text()).get("data_files")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(recorded, dict) or "generator" in recorded:
        return {}
    return {str(k): str(v) for k, v in recorded.items()}


def _same_contents(recorded: dict[str, str], now: dict[str, str]) -> bool:
    """Whether two records of data files (path -> md5) are the same files by name and contents."""
    from hdist.data.root import contents_identity

    return contents_identity(recorded) == contents_identity(now)


_SAID: set[str] = set()


def _execute(cfg: DictConfig, *, force: bool = False, quiet_skip: bool = False) -> RunResult:
    from hdist.algos import get_algo
    from hdist.backends import get_backend
    from hdist.types import World

    rid, run_dir = run_paths(cfg)
    # The id of the config alone: the final id of a run of generated data (cheap to skip: nothing is
    # loaded); a run of files under it was finished by an older hdist, found again if its files are
    # the same as now (which needs the data read, below).
    legacy = None
    if not force and read_status(run_dir)["status"] in FINISHED:
        legacy = _recorded_files(run_dir)
        if not legacy:
            return _finished(cfg, rid, run_dir, quiet_skip)
    if not force:
        done = _finished_on_cpu_as_cuda(cfg, quiet_skip)
        if done:
            return done

    algo = get_algo(cfg.algo.name)
    backend = get_backend(cfg.backend.name)
    # The parallel layout, computed once: the backend starts world.ranks ranks and recomputes nothing.
    world = World.build(cfg, algo, backend)
    # Data and model problems (missing files, wrong shapes) are user errors: find them before
    # the run directory exists.
    meta_extra = check_problem(cfg)
    if legacy and _same_contents(legacy, meta_extra.get("data_files") or {}):
        return _finished(cfg, rid, run_dir, quiet_skip)
    if cfg.dataset.get("stand_in") or cfg.dataset.get("identity"):
        rid, run_dir = run_paths(cfg)
        done = None if force else _finished(cfg, rid, run_dir, quiet_skip)
        if done:
            return done

    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except Held as e:
        # Another live process owns this run: leave every file of it alone.
        print(f"[hdist] skip {cfg.stem}/{rid}: {e} ({run_dir})", file=sys.stderr)
        return RunResult(rid, run_dir, "running", str(e), skipped=True)
    try:
        return _own(cfg, rid, run_dir, lock, backend, algo, world, meta_extra, force, quiet_skip)
    finally:
        lock.release()


def _own(cfg, rid, run_dir, lock, backend, algo, world, meta_extra, force, quiet_skip) -> RunResult:
    """Run ``cfg`` in ``run_dir``, whose lock this process holds."""
    # Another owner may have finished it between our first look and the lock.
    done = None if force else _finished(cfg, rid, run_dir, quiet_skip)
    if done:
        return done
    if not lock.wait_for_old_ranks(float(cfg.backend.get("timeout_s") or 30.0) + _OLD_RANKS_GRACE_S):
        msg = "ranks of a previous owner of this run are still running"
        print(f"[hdist] skip {cfg.stem}/{rid}: {msg} ({run_dir})", file=sys.stderr)
        return RunResult(rid, run_dir, "running", msg, skipped=True)
    # Unfinished or failed before: redo from a clean directory so no stale rows mix in.
    lock.clear()
    lock.reserve()
    meta = {}
    old = signal.signal(signal.SIGTERM, raise_interrupted) if _main_thread() else None
    status, reason = "failed", ""
    try:
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
        from hdist import devices

        meta = {**base_meta(cfg, rid), **meta_extra, **backend.library_meta(cfg), **machine_load("start"),
                **devices.meta(str(cfg.topology.get("devices") or "cpu"))}
        from hdist.threads import threads_for

        # the threads each rank runs with (the rule's, when the config leaves them null), not this process's
        key = "threads_per_rank" if "threads_per_rank" in cfg.backend else "threads"
        meta["torch_threads"] = threads_for(cfg, 1 if key == "threads" else world.ranks, key)
        atomic_write_json(run_dir / "meta.json", meta)
        write_status(run_dir, "running")
        backend.launch(run_dir, cfg, algo.run, world, run_id=rid, n_params=int(meta.get("n_params") or 0))
        status = "done"
    except Diverged as e:
        status, reason = "diverged", str(e)
    except (KeyboardInterrupt, Interrupted) as e:
        status, reason = "failed", f"interrupted ({e or 'SIGINT'})"
        raise KeyboardInterrupt from None
    except ConfigError as e:
        status, reason = "failed", str(e)
        raise
    except (WriteFailed, RankWriteFailed) as e:  # a full or unwritable disk: the reason says which file
        status, reason = "failed", str(e)
    except Exception as e:  # a run's own error: record it, the sweep goes on
        msg = str(e).strip()
        status, reason = "failed", f"{type(e).__name__}: {msg.splitlines()[0] if msg else ''}"
        try:
            atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        except WriteFailed:
            pass  # the status below says what failed; the traceback is the part that may go
    finally:
        if status != "done":
            drop_reserve(run_dir)  # a failed run's status must land, on a full disk too
        with_reserve(run_dir, lambda: write_status(run_dir, status, reason))
        if meta:
            meta.update(machine_load("end"))
            meta["end"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
            try:
                atomic_write_json(run_dir / "meta.json", meta)
            except WriteFailed:
                pass  # meta.json of the start stays: complete, only without "end"
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    word = {"done": "done", "diverged": "diverged", "failed": "FAILED"}[status]
    print(f"[hdist] {word} {cfg.stem}/{rid}{': ' + reason if reason else ''} -> {run_dir}", file=sys.stderr)
    return RunResult(rid, run_dir, status, reason)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
