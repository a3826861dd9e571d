"""Synchronous algorithms agree on their round count when the workers' shards differ in size (issue 25.1).

101 samples on 3 workers: shards of 33, 34 and 34. Each learner once derived its step count from
its own shard, so K-AVG's learners disagreed on how many all-reduces to make ("sim: rank 1 called
allreduce where others called barrier"; a BrokenBarrierError on thread). Every collective
algorithm runs here with a worker count that does not divide n_train, on every backend that runs
it; serial (one worker) with a batch size that does not divide n_train.
"""

from __future__ import annotations

import math

import pytest

from hdist.launch import execute, prepare
from hdist.metrics import load_results

N_TRAIN = 101
TINY = ["scale=smoke", f"scale.n_train={N_TRAIN}", "scale.n_test=16", "scale.epochs=1", "progress=quiet",
        "log.train_every=1", "log.evals_per_epoch=1"]
MLP = ["model=mlp", "model.hidden=[8]"]
RIDGE = ["dataset=synthetic", "dataset.num_classes=2", "dataset.shape=[22]", "model=linear", "objective.l2=0.1",
         "algo.h=5"]

#: every collective algorithm, tiny: (name, overrides)
COLLECTIVE = {
    "kavg": ["algo=kavg", "algo.k=1", "algo.batch_size=1", *MLP],
    "kavg_k3": ["algo=kavg", "algo.k=3", "algo.batch_size=4", *MLP],
    "diloco": ["algo=diloco", "algo.k=2", "algo.batch_size=4", *MLP],
    "cocoa_plus": ["algo=cocoa_plus", *RIDGE],
    "mnag": ["algo=mnag", "algo.batch_size=4", "algo.budget_gflop=null", *MLP],
    "lars": ["algo=lars", "algo.batch_size=4", "algo.budget_gflop=null", *MLP],
    "clars": ["algo=clars", "algo.batch_size=4", "algo.budget_gflop=null", "algo.subsample=6", *MLP],
}
#: the pipeline algorithms run one data stream cut into stages: a batch that does not divide n_train
PIPELINE = {name: [f"algo={name}", "algo.batch_size=16", "model=mlp", "model.hidden=[8,8]", "topology.stages=2"]
            for name in ("bp", "ddg", "fr", "dni")}


def _run(path, ovs):
    res = execute(prepare([*TINY, f"results_dir={path}", *ovs]), quiet_skip=True)
    assert res.status == "done", res.reason
    return load_results(path)


def _check_agree(df, workers: int) -> None:
    """Every worker logged the same number of steps; the run ended with an evaluation."""
    totals = df[df["metric"] == "updates_total"].groupby("rank")["value"].max()
    if len(totals) > 1:
        assert totals.nunique() == 1, totals.to_dict()
    assert (df["metric"] == "train_loss_full").any() or (df["metric"] == "primal").any()


def test_worker_steps_come_from_the_largest_shard(tmp_path):
    # 101 / 3 -> ceil = 34 samples, batch 1: 34 rounds of K=1 on every learner, the shard of 33 included
    df = _run(tmp_path, ["backend=sim", "topology.workers=3", *COLLECTIVE["kavg"]])
    totals = df[df["metric"] == "updates_total"].groupby("rank")["value"].max()
    assert sorted(totals.index) == [0, 1, 2]
    assert set(totals) == {math.ceil(N_TRAIN / 3)}


@pytest.mark.parametrize("backend", ["sim", "thread"])
@pytest.mark.parametrize("algo", sorted(COLLECTIVE))
def test_collective_uneven_shards(tmp_path, algo, backend):
    _check_agree(_run(tmp_path, [f"backend={backend}", "topology.workers=3", *COLLECTIVE[algo]]), 3)


@pytest.mark.parametrize("algo", ["kavg", pytest.param("kavg_k3", marks=pytest.mark.slow),
                                  pytest.param("mnag", marks=pytest.mark.slow), "cocoa_plus"])
def test_collective_uneven_shards_serial(tmp_path, algo):
    ovs = [o for o in COLLECTIVE[algo] if not o.startswith("algo.batch_size")]
    _check_agree(_run(tmp_path, ["backend=serial", "algo.batch_size=3", *ovs]), 1)


def test_kavg_uneven_shards_process(tmp_path):
    _check_agree(_run(tmp_path, ["backend=process", "topology.workers=3", *COLLECTIVE["kavg"]]), 3)


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(set(COLLECTIVE) - {"kavg"}))
def test_collective_uneven_shards_process(tmp_path, algo):
    _check_agree(_run(tmp_path, ["backend=process", "topology.workers=3", *COLLECTIVE[algo]]), 3)


@pytest.mark.parametrize("backend", ["sim", pytest.param("serial", marks=pytest.mark.slow)])
@pytest.mark.parametrize("algo", sorted(PIPELINE))
def test_pipeline_batch_not_dividing_n(tmp_path, algo, backend):
    _check_agree(_run(tmp_path, [f"backend={backend}", *PIPELINE[algo]]), 1)


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(PIPELINE))
def test_pipeline_batch_not_dividing_n_process(tmp_path, algo):
    _check_agree(_run(tmp_path, ["backend=process", *PIPELINE[algo]]), 1)


@pytest.mark.mpi
@pytest.mark.parametrize("algo", sorted(COLLECTIVE))
def test_collective_uneven_shards_mpi(tmp_path, algo):
    _check_agree(_run(tmp_path, ["backend=mpi", "topology.workers=3", *COLLECTIVE[algo]]), 3)
