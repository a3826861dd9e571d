"""Parameter-server algorithms on the in-machine backends: one worker equals serial SGD; P workers run."""

from __future__ import annotations

import pytest

from hdist.launch import execute, prepare
from hdist.metrics import load_results

SMOKE = ["scale=smoke", "progress=quiet", "log.train_every=1", "objective.l2=0.001"]


def _run(tmp_path, *ovs):
    return execute(prepare([*SMOKE, f"results_dir={tmp_path}", *ovs]), quiet_skip=True)


@pytest.mark.parametrize("algo", ["asysg_con", "asysg_incon"])
@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_one_worker_reproduces_serial_sgd(tmp_path, algo, backend):
    ref = _run(tmp_path / "ref", "algo=sgd")
    res = _run(tmp_path / "ps", f"algo={algo}", f"backend={backend}")
    assert ref.status == res.status == "done", res.reason
    a = load_results(tmp_path / "ref")
    b = load_results(tmp_path / "ps")
    for metric, x in (("train_loss", "step"), ("train_loss_full", "updates"), ("test_error", "updates")):
        sa = a[a["metric"] == metric].set_index(x)["value"].sort_index()
        sb = b[b["metric"] == metric].set_index(x)["value"].sort_index()
        assert list(sa.index) == list(sb.index), metric
        assert (sa - sb).abs().max() < 1e-5, metric


@pytest.mark.parametrize("algo,backend", [("asysg_incon", "thread"), ("asysg_incon", "process"),
                                          ("asysg_con", "thread"), ("asysg_con", "process")])
def test_two_workers_train_and_log_staleness(tmp_path, algo, backend):
    res = _run(tmp_path, f"algo={algo}", f"backend={backend}", "topology.workers=2", "log.train_every=10")
    assert res.status == "done", res.reason
    df = load_results(tmp_path)
    assert set(df["rank"]) == {0, 1}
    st = df[df["metric"] == "staleness"]
    assert len(st) > 0 and (st["value"] >= 0).all()
    ev = df[df["metric"] == "train_loss_full"].sort_values("updates")
    assert ev["value"].iloc[-1] < ev["value"].iloc[0]
    # Both workers together did one serial run's worth of updates.
    total = df[df["metric"] == "updates_total"]["value"].sum()
    assert total == ev["updates"].max()
    for m in ("compute_s", "comm_s", "wait_s"):
        assert (df[df["metric"] == m]["value"] >= 0).all() and len(df[df["metric"] == m]) == 2


def test_snapshots_of_x_are_evaluated_with_batchnorm_statistics_of_their_own(tmp_path):
    """The server's x never runs forward, so its BatchNorm statistics are re-estimated before each evaluation:
    the logged start evaluation is the initial weights with statistics from log.bn_samples training samples."""
    from hdist.problems import build_problem
    from hdist.types import seed_for

    ovs = ["algo=downpour", "backend=sim", "topology.workers=2", "dataset=cifar10", "dataset.fallback=synthetic",
           "dataset.download=false", "model=resnet8", "scale.n_train=32", "scale.n_test=16", "algo.batch_size=4",
           "log.eval_max_samples=16"]
    finals = {}
    for n in (0, 16):
        res = _run(tmp_path / str(n), *ovs, f"log.bn_samples={n}")
        assert res.status == "done", res.reason
        df = load_results(tmp_path / str(n))
        finals[n] = df[df["metric"] == "test_loss"].sort_values("updates")["value"].tolist()
        train = df[df["metric"] == "train_loss"].sort_values(["rank", "step"])["value"].tolist()
        finals[n, "train"] = train
    # Training is untouched (the sim is deterministic); only the evaluations differ.
    assert finals[0, "train"] == finals[16, "train"]
    assert finals[0][0] != pytest.approx(finals[16][0], rel=1e-6)
    cfg = prepare([*SMOKE, *ovs, "log.bn_samples=16"])
    problem = build_problem(cfg)
    model = problem.build_model(seed_for(cfg.seed, 0))
    fresh = problem.evaluate(model, problem.data.test, 16)["loss"]
    assert finals[0][0] == pytest.approx(fresh, rel=1e-5)  # 0 keeps the initial statistics
    problem.recalibrate_bn(model, problem.data.train, 16, 4, cfg.seed)
    assert finals[16][0] == pytest.approx(problem.evaluate(model, problem.data.test, 16)["loss"], rel=1e-5)
