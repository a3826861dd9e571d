"""Stragglers (thesis 3.5) are applied by the runtime (:mod:`hdist.runtime`) at the end of every
compute block, so every algorithm straggles the same way on every backend: the sim in its cost
model's virtual time, serial and process by a real sleep, from the same per-worker draws."""

from __future__ import annotations

import pytest

from hdist.launch import execute, prepare
from hdist.metrics import read_run_metrics

SMOKE = ["scale=smoke", "scale.n_train=200", "scale.n_test=50", "progress=quiet", "log.evals_per_epoch=1"]
# p < 1: the same steps must straggle, not only as many; short holds keep the real runs quick.
STRAGGLE = ["topology.straggler.p=0.5", "topology.straggler.m=[0.1,0.3]"]


@pytest.mark.parametrize("algo,extra,worker", [("sgd", [], 0), ("lars", [], 0), ("ddg", ["topology.stages=2"], 1)])
def test_same_straggle_count_on_serial_process_and_sim(tmp_path, algo, extra, worker):
    counts = {}
    for backend in ("serial", "process", "sim"):
        res = execute(prepare([*SMOKE, f"algo={algo}", f"backend={backend}", *extra, *STRAGGLE,
                               f"topology.straggler.workers=[{worker}]", f"results_dir={tmp_path / backend}"]),
                      quiet_skip=True)
        assert res.status == "done", res.reason
        df = read_run_metrics(res.run_dir).to_pandas()
        events = df[df["metric"] == "straggle_s"]
        counts[backend] = len(events)
        if backend != "sim":  # real seconds slept, and their total over the run
            total = df.loc[df["metric"] == "straggle_s_total", "value"]
            assert len(total) == 1 and total.iloc[0] == pytest.approx(events["value"].sum())
    assert counts["serial"] == counts["process"] == counts["sim"] > 0, counts


# --- every backend that runs dp (mNAG/LARS/CLARS), sgd and the pipeline algorithms (issue 25.4) ------
TINY = ["model.hidden=[8,8]"]
DP = [*TINY, "log.layer_every=0", "algo.batch_size=16", "algo.accum_steps=1", "algo.budget_gflop=null",
      "topology.workers=2"]
PIPE = [*TINY, "topology.stages=2", "algo.batch_size=16"]
SLOW, MPI = pytest.mark.slow, pytest.mark.mpi
#: (algo, overrides, straggling worker or stage, {backend besides sim that runs it: marks})
CASES = [
    ("mnag", DP, 1, {"thread": (), "process": SLOW, "mpi": MPI}),
    ("lars", DP, 0, {"thread": SLOW, "mpi": MPI}),
    ("clars", [*DP, "algo.subsample=4"], 1, {"thread": (), "process": SLOW, "mpi": MPI}),
    ("sgd", TINY, 0, {"thread": SLOW}),
    ("bp", PIPE, 1, {"serial": (), "process": SLOW}),
    ("fr", PIPE, 0, {"serial": SLOW, "process": SLOW}),
    ("dni", PIPE, 1, {"serial": SLOW, "process": SLOW}),
]


def _straggles(path, algo, backend, extra, worker) -> int:
    res = execute(prepare([*SMOKE, f"algo={algo}", f"backend={backend}", *extra, *STRAGGLE,
                           f"topology.straggler.workers=[{worker}]", f"results_dir={path}"]), quiet_skip=True)
    assert res.status == "done", res.reason
    df = read_run_metrics(res.run_dir).to_pandas()
    events = df[df["metric"] == "straggle_s"]
    if backend != "sim":  # real seconds slept, and their total over the run
        total = df.loc[df["metric"] == "straggle_s_total", "value"]
        assert total.sum() == pytest.approx(events["value"].sum())
    return len(events)


@pytest.mark.parametrize("algo,extra,worker,backend", [pytest.param(a, e, w, b, marks=m, id=f"{a}-{b}")
                                                      for a, e, w, bs in CASES for b, m in bs.items()])
def test_straggles_match_the_sim(tmp_path, algo, extra, worker, backend):
    want = _straggles(tmp_path / "sim", algo, "sim", extra, worker)
    assert want > 0
    assert _straggles(tmp_path / backend, algo, backend, extra, worker) == want
