"""Every model trains from the CLI path on the synthetic default; real data when ../shared has it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hdist.config import group_options
from hdist.launch import execute, prepare

BIG = {"resnet101", "resnet152", "densenet121", "resnet50", "resnet110", "resnet164"}  # > 5 s each even at smoke: slow
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _run(tmp_path, *ovs):
    # one torch thread: whether each model trains is the question, and a 2-thread pool on a loaded 2-core
    # machine runs a big model's step many times slower
    cfg = prepare(["scale=smoke", "scale.n_train=32", "scale.n_test=16", "algo.max_steps=2", "algo.batch_size=4",
                   "algo.lr=0.01", "progress=quiet", "backend.threads=1", f"results_dir={tmp_path}", *ovs])
    return execute(cfg, quiet_skip=True)


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in BIG else m
                                   for m in group_options("model")])
def test_every_model_runs_at_smoke_scale(tmp_path, model):
    res = _run(tmp_path, f"model={model}")
    assert res.status == "done", res.reason


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize("ovs", [["dataset=mnist"], ["dataset=ijcnn1", "model=linear"]])
def test_real_data_runs(tmp_path, monkeypatch, ovs):
    monkeypatch.setenv("HDIST_DATA", str(SHARED))
    res = _run(tmp_path, *ovs)
    assert res.status == "done", res.reason
    assert "stand" not in (res.run_dir / "meta.json").read_text()
    assert os.path.exists(res.run_dir / "metrics-r0.parquet")
