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
