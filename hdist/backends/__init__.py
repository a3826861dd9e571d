"""Backends start the ranks of a run and give them a :class:`~hdist.types.Comm`.

A backend module defines a subclass of :class:`~hdist.types.Backend` (its name, the communication
families it carries, ``launch(run_dir, cfg, rank_fn, world, ...)`` and the hooks it overrides) and
exposes an instance as ``BACKEND``. It never imports an algorithm: :mod:`hdist.launch` hands it
``rank_fn`` and the run's :class:`~hdist.types.World`. A backend proves itself by passing the
conformance suite (``algo=conformance``, ``tests/test_backends.py``).
"""

from __future__ import annotations

import importlib

from hdist.types import Backend, ConfigError

BACKENDS: dict[str, str] = {
    "serial": "hdist.backends.serial",
    "thread": "hdist.backends.thread",
    "process": "hdist.backends.process",
    "mpi": "hdist.backends.mpi",
    "sim": "hdist.backends.sim",
    "torchdist": "hdist.backends.torchdist",
}


def get_backend(name: str) -> Backend:
    """The backend's instance (its module's ``BACKEND``)."""
    if name not in BACKENDS:
        raise ConfigError(f"backend={name}: unknown backend; allowed: {', '.join(sorted(BACKENDS))}")
    backend = importlib.import_module(BACKENDS[name]).BACKEND
    if not isinstance(backend, Backend):
        raise TypeError(f"{BACKENDS[name]}.BACKEND is not a Backend")
    return backend
