"""Backends start the ranks of a run and give them a :class:`~hdist.types.Comm`.

A backend module defines ``NAME``, ``FAMILIES`` (the communication families it can carry),
optionally ``MAX_WORKERS``, and ``launch(run_dir, cfg, rank_fn)``. It never imports an
algorithm: it is handed ``rank_fn`` by :mod:`hdist.launch`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hdist.types import ConfigError

BACKENDS: dict[str, str] = {
    "serial": "hdist.backends.serial",
    "thread": "hdist.backends.thread",
    "process": "hdist.backends.process",
    "mpi": "hdist.backends.mpi",
    "sim": "hdist.backends.sim",
    "torchdist": "hdist.backends.torchdist",
}


def get_backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise ConfigError(f"backend={name}: unknown backend; allowed: {', '.join(sorted(BACKENDS))}")
    return importlib.import_module(BACKENDS[name])
