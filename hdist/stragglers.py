"""Straggler and delay injection (thesis 3.5), the same on every backend.

A chosen worker, with probability ``p`` per step, is held "for m times as long as the normal
computing time" (thesis 3.5): after computing, it waits ``m * compute_s`` more, with ``m``
uniform in ``[m_lo, m_hi]``. On real backends the wait is a sleep (the CPU is free for the
others, as on a slow node), applied at the end of every compute block (:mod:`hdist.runtime`);
every delay is logged as an event row ``straggle_s``. The draws come from :func:`stream` (run
seed, worker index), the stream the sim's cost model draws its stragglers from, in the same
order: without jitter, the same steps straggle on every backend, and a rerun straggles identically.
"""

from __future__ import annotations

import random
import time


def stream(seed: int, worker: int) -> random.Random:
    """Worker ``worker``'s straggler draws (one stream per worker, drawn in its own step order)."""
    return random.Random(int(seed) * 15485863 + worker)


class Straggler:
    def __init__(self, topology_cfg, worker_index: int | None, seed: int):
        st = topology_cfg.get("straggler") or {}
        workers = set(int(w) for w in (st.get("workers") or []))
        self.active = worker_index is not None and worker_index in workers and float(st.get("p", 0)) > 0
        self.p = float(st.get("p", 0.0))
        lo, hi = (st.get("m") or [0.0, 0.0])
        self.lo, self.hi = float(lo), float(hi)
        self.rng = stream(seed, worker_index or 0)
        self.total_s = 0.0

    def delay_s(self, compute_s: float) -> float:
        """The extra seconds this step waits (0 for most steps and for other workers)."""
        if not self.active or self.rng.random() >= self.p:
            return 0.0
        return self.rng.uniform(self.lo, self.hi) * compute_s

    def after_compute(self, compute_s: float, log=None, sleep=time.sleep) -> float:
        d = self.delay_s(compute_s)
        if d > 0:
            sleep(d)
            self.total_s += d
            if log is not None:
                log.log("event", "straggle_s", d)
        return d
