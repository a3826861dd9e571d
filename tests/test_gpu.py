"""CUDA tests (``make test-gpu``; marker ``gpu``, skipped without a CUDA device): runs on the GPU end to end.

The serial backend trains on the GPU and meta.json names it; the model lives there; one sim worker is serial
bit for bit on the GPU, and the same seed gives the same bits, under ``torch.use_deterministic_algorithms(True)``
(tests/test_sim.py's CPU tests, on the GPU); a process run with 2 ranks sharing the GPU; the sim with 32
ResNet-20 workers on the one GPU; bench-gpu-overhead measures hdist on the GPU; bench-sim-cost-gpu times its
two sides there; calibrate times a GPU step.
"""

from __future__ import annotations

import os

# cuBLAS is deterministic only with a fixed workspace, configured when its first handle is made: set at
# collection, before any test of the session touches the GPU (torch raises under deterministic mode without it).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import json

import pandas as pd
import pytest
import torch

from hdist.launch import execute, prepare
from hdist.metrics import load_results, read_run_metrics
from tests.test_sim import _frame

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

SMOKE = ["scale=smoke", "scale.n_test=100", "progress=quiet", "log.train_every=1"]
CUDA = "topology.devices=cuda"


def _run(path, *ovs, n_train: int = 400):
    res = execute(prepare([*SMOKE, f"scale.n_train={n_train}", f"results_dir={path}", *ovs]), quiet_skip=True)
    assert res.status == "done", res.reason
    return res


def _meta(res) -> dict:
    return json.loads((res.run_dir / "meta.json").read_text())


@pytest.fixture
def deterministic():
    """torch's deterministic algorithms for one test (cuDNN's autotuner off: it may pick another kernel)."""
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = benchmark


def test_a_serial_sgd_run_on_cuda_is_done_and_meta_names_the_gpu(tmp_path):
    res = _run(tmp_path, "algo=sgd", CUDA)
    meta = _meta(res)
    assert meta["device"] == "cuda"
    assert meta["device_name"] == torch.cuda.get_device_name(0)
    assert meta["gpu_count"] == torch.cuda.device_count()
    assert meta["cuda_version"] == torch.version.cuda and meta["cudnn_version"] == torch.backends.cudnn.version()
    assert "devices: cuda" in (res.run_dir / "config.yaml").read_text()  # the stored config names the device


def test_serial_sgd_trains_its_model_on_the_gpu(tmp_path):
    """Through the serial backend's own launch (its ctx.device): the model's parameters and gradients live on
    the GPU after the run."""
    from hdist.algos import sgd
    from hdist.backends import serial
    from hdist.types import World

    cfg = prepare([*SMOKE, "scale.n_train=400", "algo=sgd", "algo.max_steps=5", CUDA, f"results_dir={tmp_path}"],
                  writes=False)
    seen = {}

    def rank_fn(ctx):
        seen["ctx"] = ctx
        sgd.run(ctx)

    serial.launch(tmp_path / "r", cfg, rank_fn, World(workers=1, stages=1, servers=0, ranks=1), "gpu-test")
    ctx = seen["ctx"]
    assert ctx.device == torch.device("cuda", 0)
    params = list(ctx.extra["model"].parameters())
    assert params and all(p.device == ctx.device for p in params)
    assert all(p.grad is None or p.grad.device == ctx.device for p in params)


@pytest.mark.parametrize("algo", ["sgd", "asysg_con", "asysg_incon"])
def test_one_sim_worker_equals_serial_bit_for_bit_on_the_gpu(tmp_path, deterministic, algo):
    """tests/test_sim.py::test_one_worker_on_sim_equals_serial_bit_for_bit with every rank on the GPU."""
    a = _run(tmp_path / "serial", f"algo={algo}", "backend=serial", CUDA)
    b = _run(tmp_path / "sim", f"algo={algo}", "backend=sim", CUDA)
    assert _meta(a)["device"] == _meta(b)["device"] == "cuda"
    fa = _frame(a.run_dir).drop(columns=["sim_s"])
    fb = _frame(b.run_dir)
    if algo == "asysg_con":  # sim has a server rank: compare the worker's rows and the evaluation
        fb = fb[fb["rank"] == 1].assign(rank=0)
        ev = _frame(b.run_dir)
        ev = ev[(ev["kind"] == "eval")].drop(columns=["sim_s", "role"])
        assert fa[fa["kind"] == "eval"]["value"].tolist() == ev["value"].tolist()
        fa = fa[fa["kind"] == "train"]
        fb = fb[fb["kind"] == "train"]
    cols = ["metric", "step", "value"]
    pd.testing.assert_frame_equal(fa[cols].reset_index(drop=True), fb[cols].reset_index(drop=True), check_exact=True)


def test_same_seed_same_bits_on_the_gpu(tmp_path, deterministic):
    """tests/test_sim.py::test_same_seed_same_bits_including_virtual_time on the GPU: 8 sim workers."""
    ovs = ["algo=asysg_con", "backend=sim", "topology.workers=8", "topology.sim.compute.jitter=0.3", CUDA]
    a = _run(tmp_path / "a", *ovs)
    b = _run(tmp_path / "b", *ovs)
    pd.testing.assert_frame_equal(_frame(a.run_dir), _frame(b.run_dir), check_exact=True)


def test_a_process_run_with_two_ranks_sharing_the_gpu(tmp_path):
    res = _run(tmp_path, "algo=kavg", "backend=process", "topology.workers=2", "algo.k=2", CUDA)
    assert _meta(res)["device"] == "cuda"
    df = read_run_metrics(res.run_dir).to_pandas()
    assert {0, 1} <= set(df["rank"])
    assert df[df["metric"] == "train_loss"]["value"].notna().all()


def test_the_sim_runs_32_resnet20_workers_on_the_one_gpu(tmp_path):
    res = _run(tmp_path, "algo=asysg_con", "backend=sim", "topology.workers=32", "model=resnet20",
               "algo.batch_size=16", "log.train_every=10", "log.evals_per_epoch=0", "log.eval_max_samples=128",
               "log.bn_samples=64", CUDA, n_train=1024)
    assert _meta(res)["device"] == "cuda"
    df = read_run_metrics(res.run_dir).to_pandas()
    assert df["rank"].nunique() == 33  # a server and 32 workers
    assert df[df["kind"] == "train"]["updates"].max() > 0


def test_bench_gpu_overhead_times_hdist_on_the_gpu(cli, tmp_path):
    """The benchmark's hdist side trains on the GPU (else its claim fails, not passes); its claim is settled
    (PASS or FAIL, whichever the ratio gives: no timing asserted here)."""
    from hdist.papers.bench import gpu_overhead

    code, _, err = cli("run", "experiment=bench-gpu-overhead", "scale=smoke", "progress=quiet",
                       f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path, "bench-gpu-overhead")
    flags = df[df["role"] == "bench"].set_index("metric")["value"]
    assert flags["on_cuda"] == 1 and flags["hdist_on_device"] == 1
    [claim] = gpu_overhead.check(df)
    assert claim.status in ("PASS", "FAIL"), claim


def test_bench_sim_cost_gpu_times_32_sim_workers_against_the_same_steps_on_the_gpu(cli, tmp_path):
    """bench-sim-cost's GPU arm at smoke scale: both sides timed on the GPU, the claim settled (no timing
    asserted here)."""
    stem = "bench-sim-cost-gpu"
    code, _, err = cli("reproduce", stem, "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path, stem)
    t = df[df["metric"] == "s_per_update"]
    assert sorted(t.groupby("role").size().items()) == [("no_sim", 2), ("sim", 2)] and (t["value"] > 0).all()
    claims = json.loads((tmp_path / stem / "claims.json").read_text())
    assert [c["status"] in ("PASS", "FAIL") for c in claims] == [True], claims


def test_calibrate_times_the_step_on_the_gpu(cli, tmp_path):
    out = tmp_path / "gpu.yaml"
    code, stdout, err = cli("calibrate", str(out), "scale=smoke", CUDA)
    assert code == 0, err
    text = out.read_text()
    assert f"# Timed on device cuda:0 ({torch.cuda.get_device_name(0)})" in text
    assert "seconds per step on cuda:0" in text
