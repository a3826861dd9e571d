"""process: workers are torch.multiprocessing processes sharing memory.

The parameter vector, the update counters and the collective buffers are ``share_memory_()``
tensors; the lock and the queues come from ``multiprocessing``, the barrier and the abort flag are
:class:`~hdist.backends.local.ProcessBarrier` and :class:`~hdist.backends.local.ProcessFlag` (a
stopped rank cannot hold them). This is the backend that really runs in parallel on a multicore
machine (measured here: lock-free AsySG at 2 workers, 1.88-1.90x over 1 for the MLP at batch 10).

Children are started by a forkserver that has imported torch once, so a run does not pay the
torch import per worker. A worker that raises or dies ends the run: the launcher sees it,
sets the shared abort flag (blocked peers give up), terminates what is left and raises with
the worker's message; nothing waits longer than ``backend.timeout_s``. Workers die with the
hdist process that owns the run (:func:`hdist.rundir.rank_guard`: the forkserver outlives it).

Devices. Under ``topology.devices=cuda`` rank r trains on ``cuda:(r mod GPUs)`` (its local index is
its rank: every rank is on this machine); x, the counters and the collective slots stay in host shared
memory, and :class:`~hdist.backends.local.LocalComm` copies each rank's device tensors through host
buffers of its own. CUDA cannot be initialised again in a child forked from a process that has
initialised it, so a configured ``fork`` becomes ``spawn`` there (:func:`start_method`); forkserver
children come from a fresh server process that never touches CUDA, and spawn children from a fresh
interpreter: both are safe (torch's multiprocessing notes).

A worker that finds the lock on x held polls it for ``backend.spin_s`` before it sleeps on it
(:meth:`LocalComm._acquire`), while every worker has a core of its own (:func:`spin_s`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.multiprocessing as tmp

from hdist.backends._ranks import alloc_state_tensors, make_ctx, run_rank, scratch_slot, threads_per_rank
from hdist.backends._supervise import die_with_parent, report_and_exit, supervise_procs
from hdist.backends.local import LocalComm, LocalState, ProcessBarrier, ProcessFlag
from hdist.rundir import rank_guard, remove_pid_files
from hdist.types import Backend, RankCtx, World

NAME = "process"
FAMILIES = ("serial", "ps", "shared", "collective", "pipeline")

_PRELOAD = ["torch", "hdist.backends.process", "hdist.problems", "hdist.metrics"]
_FAIL_GRACE_S = 10.0  # seconds the other workers get to notice a failure (at most backend.timeout_s)
_STOP_GRACE_S = 5.0  # seconds between SIGTERM and SIGKILL when workers are stopped


def _context(method: str):
    ctx = tmp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _child(rank: int, world: int, cfg_dict: dict, run_dir: str, run_id: str, state: LocalState,
           rank_fn: Callable[[RankCtx], None], errq, threads: int, owner_pid: int) -> None:
    from omegaconf import OmegaConf

    die_with_parent()
    rank_guard(Path(run_dir), owner_pid, rank)  # the forkserver, our parent, outlives the owner
    torch.set_num_threads(threads)
    cfg = OmegaConf.create(cfg_dict)
    try:
        comm = LocalComm(state, rank, world, block=cfg.algo.get("block"), seed=int(cfg.seed) * 7919 + rank)
        ctx = make_ctx(cfg, Path(run_dir), run_id, rank, world, comm)
        run_rank(ctx, rank_fn)
    except BaseException as e:  # noqa: B036 - every way out is reported to the parent
        report_and_exit(errq, rank, e, on_failure=state.fail)


def start_method(cfg) -> str:
    """``backend.start_method``, except ``fork`` under ``topology.devices=cuda``: spawn (a forked child of a
    process that has initialised CUDA cannot use it)."""
    method = str(cfg.backend.get("start_method", "forkserver")).lower()
    if method == "fork" and str(cfg.topology.get("devices") or "cpu") == "cuda":
        return "spawn"
    return method


def spin_s(cfg, world: int) -> float:
    """``backend.spin_s`` while the ranks have a core each, else 0: a rank polling a held lock on an
    oversubscribed machine would take the core its holder needs to release it."""
    if world > (os.cpu_count() or 1):
        return 0.0
    return float(cfg.backend.get("spin_s") or 0.0)


def launch(run_dir: Path, cfg, rank_fn: Callable[[RankCtx], None], world: World, run_id: str = "",
           n_params: int = 0) -> None:
    from omegaconf import OmegaConf

    ps_dtype = world.ps_dtype
    world = world.ranks  # the workers, or one process per stage of a pipeline algorithm (no server rank here)
    mp = _context(start_method(cfg))
    # x in the algorithm's declared dtype: it is shared memory made before any rank runs, so ps_init
    # cannot choose it
    x, counts, scratch = alloc_state_tensors(n_params, world, scratch_slot(n_params), ps_dtype)
    for t in (x, counts, scratch):
        t.share_memory_()
    timeout_s = float(cfg.backend.timeout_s)
    # Not mp.Barrier and mp.Event: their waits on peers have no timeout, so a stopped rank could hold
    # its peers and the watcher's fail() for good (ProcessBarrier, ProcessFlag). The watcher calls
    # fail() itself, with no helper thread: neither of them ever waits on a rank.
    state = LocalState(x=x, counts=counts, scratch=scratch, lock=mp.Lock(), barrier=ProcessBarrier(world, mp),
                       abort=ProcessFlag(mp), inboxes=[mp.Queue() for _ in range(world)], timeout_s=timeout_s,
                       spin_s=spin_s(cfg, world))
    errq = mp.Queue()
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    threads = threads_per_rank(cfg, world)
    procs = [mp.Process(target=_child, name=f"hdist-rank{r}", daemon=True,
                        args=(r, world, cfg_dict, str(run_dir), run_id, state, rank_fn, errq, threads, os.getpid()))
             for r in range(world)]
    try:
        supervise_procs(procs, errq, min(timeout_s, _FAIL_GRACE_S), _STOP_GRACE_S, "worker",
                        on_failure=state.fail, timeout_s=timeout_s)
    finally:
        remove_pid_files(run_dir)


class ProcessBackend(Backend):
    name, families = NAME, FAMILIES

    def launch(self, run_dir, cfg, rank_fn, world, run_id="", n_params=0) -> None:
        launch(run_dir, cfg, rank_fn, world, run_id, n_params)


BACKEND = ProcessBackend()
