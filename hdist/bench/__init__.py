"""Benchmark algorithms (``FAMILIES = ("bench",)``): each times hdist against a baseline in one
process; :func:`alternate` is their shared repetition loop."""

from __future__ import annotations

from typing import Callable


def alternate(ctx, reps: int, sides: dict[str, Callable[[int], float]], metric: str) -> None:
    """Time the sides ``reps`` times in this process, alternating which goes first so that drifts in
    the machine's load hit every side alike. ``sides``: role -> function of the repetition index
    returning the measurement. Rows: ``metric`` per side and repetition (``role`` = the side,
    ``step`` = the repetition)."""
    log = ctx.log
    roles = list(sides)
    ctx.progress.start(reps, unit="rep")
    for rep in range(reps):
        log.step = rep
        for role in (roles if rep % 2 == 0 else roles[::-1]):
            value = sides[role](rep)
            log.role = role
            log.log("train", metric, value)
        log.role = "bench"
        ctx.progress.update(rep + 1)
