"""The thread rule of backend.threads / threads_per_rank (hdist.threads): the rule, not its timing."""

from __future__ import annotations

import json
import os

import pytest
import torch

from hdist import config as C
from hdist.backends._ranks import threads_per_rank
from hdist.metrics import load_results
from hdist.threads import SMALL_STEP_FLOP, rule_threads, step_flop, threads_for


def test_rule_gives_one_thread_to_a_small_step_and_the_cores_shared_out_to_a_big_one():
    assert rule_threads(16, 4, SMALL_STEP_FLOP / 10) == 1
    assert rule_threads(16, 4, SMALL_STEP_FLOP * 10) == 4
    assert rule_threads(2, 3, SMALL_STEP_FLOP * 10) == 1  # more ranks than cores: never 0, never more than 1
    assert rule_threads(8, 1, None) == 8  # a step that could not be counted: the cores, as before the rule


def test_the_default_mlp_step_is_small_and_resnet50s_is_big():
    assert step_flop(C.compose([])) < SMALL_STEP_FLOP
    assert step_flop(C.compose(["model=resnet50", "algo=clars"])) > SMALL_STEP_FLOP


def test_null_follows_the_rule_and_a_configured_number_wins(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert threads_for(C.compose([]), 1, "threads") == 1  # the default run: MLP, serial
    assert threads_per_rank(C.compose(["backend=process", "topology.workers=2"]), 2) == 1
    big = C.compose(["backend=process", "topology.workers=2", "model=resnet20", "algo.batch_size=128"])
    assert threads_per_rank(big, 2) == 4
    assert threads_for(C.compose(["backend.threads=3"]), 1, "threads") == 3
    assert threads_per_rank(C.compose(["backend=process", "backend.threads_per_rank=2"]), 2) == 2


def test_the_serial_rank_runs_with_the_rules_threads(monkeypatch, tmp_path):
    from hdist.backends import serial

    seen = []
    cfg = C.compose(["scale=smoke", "progress=quiet"])
    before = torch.get_num_threads()
    serial.launch(tmp_path, cfg, lambda ctx: seen.append(torch.get_num_threads()), world=None, run_id="t")
    assert seen == [1] and torch.get_num_threads() == before  # and the caller's count is restored


@pytest.mark.slow
def test_bench_pool_writes_both_sides_and_its_claims(cli, tmp_path):
    code, _, err = cli("reproduce", "bench-pool", "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path, "bench-pool")
    rows = df[df["metric"] == "steps_per_s"]
    assert set(rows["role"]) == {"threads1", "threads2"} and set(rows["model"]) == {"mlp", "resnet20"}
    claims = json.loads((tmp_path / "bench-pool" / "claims.json").read_text())
    assert len(claims) == 2 and all(isinstance(c["passed"], bool) for c in claims)


def test_meta_records_the_threads_the_rank_ran_with(cli, tmp_path):
    code, _, err = cli("run", "scale=smoke", "scale.n_train=64", "scale.n_test=16", "progress=quiet",
                       f"results_dir={tmp_path}")
    assert code == 0, err
    (meta,) = tmp_path.glob("adhoc/*/meta.json")
    assert json.loads(meta.read_text())["torch_threads"] == 1  # the MLP's step is small: 1 thread, whatever the cores
