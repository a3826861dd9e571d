"""DiLoCo (hdist/algos/diloco.py), the algorithm docs/adding-an-algorithm.md adds: with outer_lr 1 and
outer_momentum 0 its outer step is K-AVG's average, so its losses are K-AVG's, bit for bit, on sim and on a
real backend; with the paper's outer Nesterov step it trains and differs; its keys are checked."""

from __future__ import annotations

import pytest

from hdist.launch import execute, prepare
from hdist.metrics import read_run_metrics
from hdist.types import ConfigError

TINY = ["scale=smoke", "scale.n_train=240", "scale.n_test=60", "scale.epochs=2", "progress=quiet",
        "log.train_every=1", "algo.k=4", "algo.batch_size=10", "topology.workers=3", "model=mlp",
        "model.hidden=[16]"]


def _losses(tmp_path, *ovs) -> list[tuple]:
    res = execute(prepare([*TINY, f"results_dir={tmp_path}", *ovs]), quiet_skip=True)
    assert res.status == "done", res.reason
    df = read_run_metrics(res.run_dir).to_pandas()
    rows = df[df["metric"].isin(["train_loss", "test_loss", "test_error"])]
    return sorted(zip(rows["rank"], rows["metric"], rows["step"], rows["value"]))


@pytest.mark.parametrize("backend", ["sim", "thread"])
def test_diloco_with_outer_lr_1_and_no_momentum_is_kavg_bit_for_bit(tmp_path, backend):
    kavg = _losses(tmp_path, "algo=kavg", f"backend={backend}")
    diloco = _losses(tmp_path, "algo=diloco", "algo.outer_lr=1.0", "algo.outer_momentum=0.0", f"backend={backend}")
    assert len(kavg) > 20 and kavg == diloco


def test_diloco_outer_nesterov_step_changes_the_trajectory(tmp_path):
    kavg = _losses(tmp_path, "algo=kavg", "backend=sim")
    diloco = _losses(tmp_path, "algo=diloco", "backend=sim")  # the paper's eta 0.7, mu 0.9
    first = [r for r in kavg if r[1] == "train_loss"][0]
    assert first in diloco  # the same first step: no outer step has been taken yet
    assert kavg != diloco


@pytest.mark.parametrize("key, value", [("algo.outer_lr", 0), ("algo.outer_lr", -1.0),
                                        ("algo.outer_momentum", 1.0), ("algo.outer_momentum", -0.1)])
def test_diloco_keys_are_checked(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        prepare([*TINY, f"results_dir={tmp_path}", "algo=diloco", "backend=sim", f"{key}={value}"])
