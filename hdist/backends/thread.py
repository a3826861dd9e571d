"""thread: workers are Python threads sharing the parameter vector in this process.

Both read modes of lian15: consistent (whole-vector copy under a lock: AsySG-con) and
inconsistent (lock-free: AsySG-incon). Threads share one interpreter, so small torch steps do
not run in parallel (the GIL: ``bench-thread`` measures 2 rank threads at 424 us per MLP update
at batch 10, against 275 us for one and 250 us on ``serial``); use this backend for correctness
and staleness studies, ``process`` for speed.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Callable

from hdist.backends._ranks import alloc_state_tensors, make_ctx, run_rank, scratch_slot, threads_per_rank
from hdist.backends.local import LocalComm, LocalState, PeerFailed
from hdist.types import Backend, RankCtx, World

NAME = "thread"
FAMILIES = ("serial", "ps", "shared", "collective")


def launch(run_dir: Path, cfg, rank_fn: Callable[[RankCtx], None], world: World, run_id: str = "",
           n_params: int = 0) -> None:
    import torch

    size = world.ranks
    # x in the algorithm's declared dtype: it exists before any rank runs, so ps_init cannot choose it
    x, counts, scratch = alloc_state_tensors(n_params, size, scratch_slot(n_params), world.ps_dtype)
    state = LocalState(x=x, counts=counts, scratch=scratch, lock=threading.Lock(),
                       barrier=threading.Barrier(size), abort=threading.Event(),
                       inboxes=[queue.Queue() for _ in range(size)], timeout_s=float(cfg.backend.timeout_s))
    block = cfg.algo.get("block")
    errors: list[tuple[int, BaseException]] = []
    old_threads = torch.get_num_threads()
    # Cores shared out among the rank threads, as processes get them: an intra-op pool is not shared
    # between threads. OpenMP gives every calling thread a team of its own; a second team beside the main
    # thread's (built with the model) oversubscribes the cores and libgomp falls back to sleeping helpers:
    # AsySG-con's MLP update at batch 10 took 1185 us with 2 pool threads in 1 rank thread on 2 cores,
    # 374 us with 1 (serial: 331 us). So rank 0 runs on this thread, whose team already exists: one
    # worker keeps the whole pool (317 us with 2 threads), more get one thread each here.
    # bench-thread keeps this measured: 1 worker against serial, 1.10x now, 4.25x on the old launcher.
    torch.set_num_threads(threads_per_rank(cfg, size))

    def body(rank: int) -> None:
        comm = LocalComm(state, rank, size, block=block, seed=int(cfg.seed) * 7919 + rank)
        ctx = make_ctx(cfg, run_dir, run_id, rank, size, comm)
        try:
            run_rank(ctx, rank_fn)
        except BaseException as e:  # recorded and re-raised by the launcher below
            errors.append((rank, e))
            state.fail()

    threads = [threading.Thread(target=body, args=(r,), name=f"hdist-rank{r}", daemon=True) for r in range(1, size)]
    try:
        for t in threads:
            t.start()
        body(0)
        for t in threads:
            t.join()
    finally:
        torch.set_num_threads(old_threads)
    if errors:
        # The first real error, not the PeerFailed of the ranks it stopped.
        real = [e for e in errors if not isinstance(e[1], PeerFailed)] or errors
        rank, err = real[0]
        if not isinstance(err, PeerFailed):
            raise err  # a Ctrl-C or SIGTERM that landed in rank 0 (on this thread) stays an interruption
        raise RuntimeError(f"rank {rank}: {err}")


class ThreadBackend(Backend):
    name, families = NAME, FAMILIES

    def launch(self, run_dir, cfg, rank_fn, world, run_id="", n_params=0) -> None:
        launch(run_dir, cfg, rank_fn, world, run_id, n_params)


BACKEND = ThreadBackend()
