"""K-AVG: one learner is serial SGD; every backend computes the same averages."""

from __future__ import annotations

import pytest

from hdist.launch import execute, prepare
from hdist.metrics import load_results

SMOKE = ["scale=smoke", "scale.n_train=512", "scale.n_test=128", "scale.epochs=2", "progress=quiet",
         "log.train_every=1", "objective.l2=0.001"]


def _run(path, *ovs):
    res = execute(prepare([*SMOKE, f"results_dir={path}", *ovs]), quiet_skip=True)
    assert res.status == "done", res.reason
    return load_results(path)


@pytest.mark.parametrize("k", [1, 4])
def test_one_learner_is_serial_sgd(tmp_path, k):
    a = _run(tmp_path / "sgd", "algo=sgd", "algo.batch_size=16")
    b = _run(tmp_path / "kavg", "algo=kavg", f"algo.k={k}")
    sa = a[a["metric"] == "train_loss"].set_index("step")["value"].sort_index()
    sb = b[b["metric"] == "train_loss"].set_index("step")["value"].sort_index()
    assert list(sa.index) == list(sb.index)
    assert (sa - sb).abs().max() < 1e-5
    ea = a[a["metric"] == "test_error"].sort_values("epoch")["value"].tolist()
    eb = b[b["metric"] == "test_error"].sort_values("epoch")["value"].tolist()
    assert ea == pytest.approx(eb, abs=1e-6)


def test_backends_agree_on_the_averages(tmp_path):
    finals = {}
    for backend in ("thread", "process", "sim"):
        df = _run(tmp_path / backend, "algo=kavg", f"backend={backend}", "topology.workers=2", "algo.k=3")
        ev = df[df["metric"] == "train_loss_full"].sort_values("updates")
        finals[backend] = ev["value"].tolist()
        assert ev["value"].iloc[-1] < ev["value"].iloc[0]
    # The same arithmetic on every backend; only torch's thread counts differ (thread and sim: one
    # pool for all ranks; process: one thread each), which may move the last bits of a matmul.
    assert finals["thread"] == pytest.approx(finals["sim"], rel=1e-6)
    assert finals["process"] == pytest.approx(finals["sim"], rel=1e-6)


def test_averaging_rounds_and_epochs(tmp_path):
    df = _run(tmp_path, "algo=kavg", "backend=sim", "topology.workers=4", "algo.k=2")
    ev = df[df["metric"] == "train_loss_full"]
    # 512 samples / 4 learners / batch 16 = 8 local steps per epoch -> 4 rounds per epoch, 2 epochs.
    assert ev["updates"].max() == 8
    assert ev["epoch"].max() == pytest.approx(2.0)


@pytest.mark.mpi
def test_bench_kavg_mpi_reproduces_at_smoke(cli, tmp_path):
    code, out, err = cli("reproduce", "bench-kavg-mpi", "scale=smoke", "scale.n_train=640", "seed=0",
                         "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    assert (tmp_path / "figures" / "bench-kavg-mpi.png").exists()
    assert "K-AVG with K=16 takes less time per sample" in out and "[n/a]" not in out
