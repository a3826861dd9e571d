"""Algorithms, one paper algorithm per module, looked up by config name (``algo.name``).

An algorithm module defines ``FAMILIES`` (which communication families it belongs to:
serial, ps, shared, collective, pipeline, bench) and ``run(ctx: RankCtx)``, executed on
every rank. It never imports a backend.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hdist.types import ConfigError

#: config name -> module path
ALGOS: dict[str, str] = {
    "sgd": "hdist.algos.sgd",
    "asysg_con": "hdist.algos.asysg_con",
    "asysg_incon": "hdist.algos.asysg_incon",
    "kavg": "hdist.algos.kavg",
    "downpour": "hdist.algos.downpour",
    "eamsgd": "hdist.algos.eamsgd",
    "bench_overhead": "hdist.bench.overhead",
    "bench_data_models": "hdist.bench.data_models",
    "bench_ps_mpi": "hdist.bench.ps_mpi",
    "conformance": "hdist.backends.conformance",  # a test algorithm: the backend conformance suite
}


def get_algo(name: str) -> ModuleType:
    if name not in ALGOS:
        raise ConfigError(f"algo={name}: unknown algorithm; allowed: {', '.join(sorted(ALGOS))}")
    return importlib.import_module(ALGOS[name])
