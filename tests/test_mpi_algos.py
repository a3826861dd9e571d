"""The asynchronous and collective algorithms from the CLI path on MPI (marker ``mpi``: make test-mpi)."""

from __future__ import annotations

import pytest

from hdist.launch import execute, prepare
from hdist.metrics import load_results

pytestmark = pytest.mark.mpi

SMOKE = ["scale=smoke", "scale.n_train=512", "scale.n_test=128", "progress=quiet", "log.train_every=1"]


@pytest.mark.parametrize("algo", ["asysg_con", "downpour", "eamsgd", "kavg"])
def test_algorithms_run_on_mpi(tmp_path, algo):
    res = execute(prepare([*SMOKE, f"algo={algo}", "backend=mpi", "topology.workers=2", f"results_dir={tmp_path}"]))
    assert res.status == "done", res.reason
    df = load_results(tmp_path)
    ev = df[df["metric"] == "train_loss_full"].sort_values("updates")
    assert ev["value"].iloc[-1] < ev["value"].iloc[0]


def test_one_mpi_worker_reproduces_serial_sgd(tmp_path):
    ref = execute(prepare([*SMOKE, "algo=sgd", f"results_dir={tmp_path / 'ref'}"]))
    res = execute(prepare([*SMOKE, "algo=asysg_con", "backend=mpi", f"results_dir={tmp_path / 'mpi'}"]))
    assert ref.status == res.status == "done", res.reason
    a, b = load_results(tmp_path / "ref"), load_results(tmp_path / "mpi")
    sa = a[a["metric"] == "train_loss"].set_index("step")["value"].sort_index()
    sb = b[(b["metric"] == "train_loss") & (b["rank"] == 1)].set_index("step")["value"].sort_index()
    assert list(sa.index) == list(sb.index)
    assert (sa - sb).abs().max() < 1e-5
