"""Benchmark ``bench-startup``: how long the small verbs take, start to exit, in a fresh interpreter.

Sides, alternating for ``algo.reps`` repetitions: ``python`` (``python -c pass``: the interpreter's own
start, the floor), ``help`` (``hdist --help``), ``ls`` (``hdist ls`` of an empty results folder) and
``data`` (``hdist data``). None of the verbs imports torch (tests/test_small_verbs.py checks that).

Rows: ``metric=startup_s``, ``role`` = the side, ``step`` = repetition index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from hdist.bench import alternate
from hdist.types import AlgoSpec

FAMILIES = ("bench",)


def _sides(results_dir: str) -> dict[str, list[str]]:
    hdist = [sys.executable, "-m", "hdist.cli"]
    return {"python": [sys.executable, "-c", "pass"], "help": [*hdist, "--help"],
            "ls": [*hdist, "ls", f"results_dir={results_dir}"], "data": [*hdist, "data"]}


def wall_s(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=os.environ.copy())
    return time.perf_counter() - t0


def run(ctx) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sides = _sides(tmp)
        for cmd in sides.values():  # untimed: the file cache warm for every side alike
            wall_s(cmd)
        alternate(ctx, int(ctx.cfg.algo.reps), {role: (lambda rep, c=cmd: wall_s(c)) for role, cmd in sides.items()},
                  "startup_s")


SPEC = AlgoSpec(FAMILIES, run)
