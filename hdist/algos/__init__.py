"""Algorithms, one paper algorithm per module, looked up by config name (``algo.name``).

An algorithm module declares ``SPEC``, an :class:`~hdist.types.AlgoSpec`: its communication
families (serial, ps, shared, collective, pipeline, bench), ``run(ctx: RankCtx)`` executed on every
rank, and its config checks. It never imports a backend. ``docs/adding-an-algorithm.md`` walks
through a new one.
"""

from __future__ import annotations

import importlib
import pkgutil

from hdist.types import AlgoSpec, ConfigError

#: config name -> module path, for the algorithms whose module is not ``hdist.algos.<name>``, and the
#: older ones. A new algorithm needs no line here: ``hdist/algos/<name>.py`` is found by its name.
ALGOS: dict[str, str] = {
    "sgd": "hdist.algos.sgd",
    "asysg_con": "hdist.algos.asysg_con",
    "asysg_incon": "hdist.algos.asysg_incon",
    "kavg": "hdist.algos.kavg",
    "downpour": "hdist.algos.downpour",
    "eamsgd": "hdist.algos.eamsgd",
    "mnag": "hdist.algos.dp",  # data-parallel large-batch training (thesis ch. 4), rule mNAG
    "lars": "hdist.algos.dp",  # ... rule LARS (eq. 4.3)
    "clars": "hdist.algos.dp",  # ... rule CLARS (eq. 4.7, Algorithm 8)
    "svrg": "hdist.algos.svrg",
    "sgd_svrg": "hdist.algos.sgd_svrg",
    "dist_svrg": "hdist.algos.dist_svrg",
    "dfsdca": "hdist.algos.dfsdca",
    "cocoa_plus": "hdist.algos.cocoa_plus",
    "bp": "hdist.algos.bp",  # pipeline (thesis ch. 5-6): backpropagation across K stages, the baseline
    "ddg": "hdist.algos.ddg",  # ... delayed gradients, thesis Alg. 9-10 (SGD-DDG, Adam-DDG)
    "fr": "hdist.algos.fr",  # ... Features Replay, thesis Alg. 11
    "dni": "hdist.algos.dni",  # ... synthetic gradients (Jaderberg et al. 2017; thesis 5.5.1, 6.5.1)
    "dataset_stats": "hdist.algos.dataset_stats",  # thesis Table 2: statistics of the loaded data (no training)
    "kavg_probe": "hdist.algos.kavg_probe",  # kavg18 Theorem 3.4: L, M, F(w~_1) at K-AVG's initial point (no training)
    "bench_overhead": "hdist.bench.overhead",
    "bench_gpu_overhead": "hdist.bench.gpu_overhead",
    "bench_round_robin": "hdist.bench.round_robin",
    "bench_sim_gpu": "hdist.bench.sim_gpu",
    "bench_data_models": "hdist.bench.data_models",
    "bench_ps_mpi": "hdist.bench.ps_mpi",
    "bench_clars": "hdist.bench.clars",
    "bench_postlocal": "hdist.bench.postlocal",
    "bench_flat_grad": "hdist.bench.flat_grad",
    "bench_pool": "hdist.bench.pool",
    "bench_startup": "hdist.bench.startup",
    "conformance": "hdist.backends.conformance",  # a test algorithm: the backend conformance suite
}


#: modules of hdist.algos that host algorithms under other names (dp: mnag, lars, clars)
_HOSTS = {"dp"}


def algo_names() -> list[str]:
    """Every algorithm: the registry above and every public module of this package."""
    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return sorted(set(ALGOS) | (found - _HOSTS))


def get_algo(name: str) -> AlgoSpec:
    """The algorithm's declared spec (its module's ``SPEC``)."""
    names = algo_names()
    if name not in names:
        raise ConfigError(f"algo={name}: unknown algorithm; allowed: {', '.join(names)}")
    path = ALGOS.get(name, f"{__name__}.{name}")
    spec = importlib.import_module(path).SPEC
    if not isinstance(spec, AlgoSpec):
        raise TypeError(f"{path}.SPEC is not an AlgoSpec")
    return spec
