"""The GPU check's plumbing on a CPU (``make gpu-check``, hdist/gpu_check.py) and the bench-gpu-overhead stem.

No GPU is needed: the check's refusal without CUDA, its pieces' configs, its numbers file, and the benchmark
run at smoke scale on the CPU, where its claim is n/a. The CUDA runs themselves are in tests/test_gpu.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from hdist import gpu_check
from hdist.metrics import load_results
from hdist.papers.bench import gpu_overhead
from tests.conftest import ROOT


def test_without_cuda_the_check_is_one_line_exit_2_and_writes_nothing(tmp_path):
    # CUDA_VISIBLE_DEVICES="" hides every GPU: the refusal is tested on any machine.
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "hdist.gpu_check", "--out", str(out)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no CUDA device: "), r.stderr
    assert "CUDA_VISIBLE_DEVICES" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("name", [n for n in gpu_check.PIECES if n != "test-gpu"])
def test_every_piece_of_the_check_is_a_valid_command(name):
    """Each hdist piece composes and validates (on the CPU: its device turned to cpu), so that a GPU machine's
    scarce minutes are not spent on a typo."""
    from hdist.launch import prepare
    from hdist.sweeps import experiment_runs

    cmd, limit_s = gpu_check.PIECES[name]
    assert 0 < limit_s <= 180
    verb, args = cmd[3], cmd[4:]
    if verb == "reproduce":
        stem, ovs = args[0], args[1:]
        points = experiment_runs(stem, [o for o in ovs if o.startswith("scale=")])
        assert points
        for point in points:
            prepare([*point, "topology.devices=cpu"], writes=False)
    else:
        assert verb == "run" and "topology.devices=cuda" in args
        cfg = prepare([a.replace("topology.devices=cuda", "topology.devices=cpu") for a in args], writes=False)
        assert cfg.stem == "adhoc"


def test_the_time_limits_add_up_to_under_8_minutes():
    assert sum(limit for _, limit in gpu_check.PIECES.values()) < 8 * 60


def test_the_numbers_file(tmp_path, monkeypatch):
    """gpu-check.json after a piece (a stand-in command): the device, the piece's command, exit code, wall seconds
    and the end of its output; a piece that left no run does not pass, nor does the check."""
    monkeypatch.setattr(gpu_check, "no_cuda_reason", lambda: None)
    monkeypatch.setattr(gpu_check.devices, "meta", lambda kind: {"device": kind, "device_name": "stand-in"})
    monkeypatch.setattr(gpu_check, "PIECES", {"tiny": ([sys.executable, "-c", "print('from the piece')"], 60.0)})
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["device"] == {"device": "cuda", "device_name": "stand-in"} and report["passed"] is False
    [row] = report["pieces"]
    assert row["name"] == "tiny" and row["rc"] == 0 and row["wall_s"] > 0 and row["limit_s"] == 60.0
    assert row["status"] == "0 runs found" and row["passed_piece"] is False
    assert "from the piece" in row["output_tail"]


def test_a_run_s_numbers(cli, tmp_path):
    """What the check reads of a finished run: status, device, updates and updates/s."""
    code, _, err = cli("run", "algo=sgd", "scale=smoke", "algo.max_steps=3", "progress=quiet", "topology.devices=cpu",
                       f"results_dir={tmp_path}")
    assert code == 0, err
    got = gpu_check.run_numbers(tmp_path)
    assert got["status"] == "done" and got["device"] == "cpu" and got["updates"] == 3 and got["updates_per_s"] > 0


def test_the_benchmark_ratios_are_read_from_its_claims(tmp_path):
    (tmp_path / "bench-gpu-overhead").mkdir()
    claims = gpu_overhead.check(_frame(0.97, 1, 1)) + gpu_overhead.check(_frame(0.5, 0, 1))
    (tmp_path / "bench-gpu-overhead" / "claims.json").write_text(json.dumps([vars(c) for c in claims]))
    got = gpu_check.bench_numbers(tmp_path, "bench-gpu-overhead")["claims"]
    assert [(c["status"], c["ratio"]) for c in got] == [("PASS", 0.97), ("n/a", 0.5)]


def test_pytest_counts_are_read_from_its_summary():
    assert gpu_check.test_numbers("... 7 passed, 2 skipped, 1 deselected in 3.2s") == {
        "passed": 7, "failed": 0, "skipped": 2, "deselected": 1, "errors": 0}
    assert gpu_check.test_numbers("1 failed, 3 passed, 1 error in 9s")["errors"] == 1


# ---------------------------------------------------------------------------------------------
# bench-gpu-overhead
# ---------------------------------------------------------------------------------------------


def test_bench_gpu_overhead_runs_on_the_cpu_and_its_claim_is_na(cli, tmp_path):
    """The benchmark's plumbing on the CPU: both sides timed, hdist's model on the run's device; the claim,
    about a GPU, is n/a ("no GPU")."""
    code, _, err = cli("run", "experiment=bench-gpu-overhead", "scale=smoke", "algo.batch_size=8", "progress=quiet",
                       f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path, "bench-gpu-overhead")
    sps = df[df["metric"] == "steps_per_s"]
    assert set(sps["role"]) == {"hdist", "raw"} and (sps["value"] > 0).all()
    assert len(sps) == 2 * 2  # 2 repetitions at smoke scale, each side once per repetition
    flags = df[df["role"] == "bench"].set_index("metric")["value"]
    assert flags["on_cuda"] == 0 and flags["hdist_on_device"] == 1
    [claim] = gpu_overhead.check(df)
    assert (claim.status, claim.reason) == ("n/a", "no GPU")
    assert gpu_overhead.plot(df) is not None


def _frame(ratio: float, on_cuda: float, on_device: float) -> pd.DataFrame:
    rows = []
    for rep in range(3):
        rows += [{"model": "resnet20", "algo.batch_size": 128, "role": "raw", "step": rep, "metric": "steps_per_s",
                  "value": 100.0},
                 {"model": "resnet20", "algo.batch_size": 128, "role": "hdist", "step": rep, "metric": "steps_per_s",
                  "value": 100.0 * ratio}]
    rows += [{"model": "resnet20", "algo.batch_size": 128, "role": "bench", "step": 2, "metric": m, "value": v}
             for m, v in (("on_cuda", on_cuda), ("hdist_on_device", on_device))]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("ratio, on_cuda, on_device, status", [
    (0.97, 1, 1, "PASS"), (0.90, 1, 1, "FAIL"), (0.99, 1, 0, "FAIL"), (0.99, 0, 1, "n/a"), (0.5, 0, 0, "n/a")])
def test_the_claim_holds_only_for_hdist_on_the_gpu(ratio, on_cuda, on_device, status):
    [claim] = gpu_overhead.check(_frame(ratio, on_cuda, on_device))
    assert claim.status == status, claim
    assert claim.kind == "bench" and f"{ratio:.3f}" in claim.measured


@pytest.mark.slow  # both models (ResNet-50 too) at smoke scale: ~20 s on 2 busy cores
def test_bench_gpu_overhead_is_a_stem(cli, tmp_path):
    stem = "bench-gpu-overhead"
    code, _, err = cli("reproduce", stem, "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    claims = json.loads((tmp_path / stem / "claims.json").read_text())
    assert [c["status"] for c in claims] == ["n/a", "n/a"]
    assert {c["claim"].split(" ")[0] for c in claims} == {"resnet20", "resnet50"}
    assert (tmp_path / "figures" / f"{stem}.png").exists()


# ---------------------------------------------------------------------------------------------
# bench-sim-cost-gpu (bench-sim-cost's GPU arm)
# ---------------------------------------------------------------------------------------------


def test_bench_sim_cost_gpu_times_nothing_without_a_gpu_and_its_claim_is_na(cli, tmp_path):
    stem = "bench-sim-cost-gpu"
    code, _, err = cli("reproduce", stem, "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path, stem)
    assert set(df[df["role"] == "bench"]["metric"]) == {"on_cuda"} and (df[df["role"] == "bench"]["value"] == 0).all()
    assert not (df["metric"] == "s_per_update").any()
    claims = json.loads((tmp_path / stem / "claims.json").read_text())
    assert [(c["status"], c["reason"]) for c in claims] == [("n/a", "no GPU")]
    assert (tmp_path / "figures" / f"{stem}.png").exists()


@pytest.mark.slow  # 6 short runs in one: ~20 s on 2 busy cores
def test_bench_sim_cost_gpu_times_both_sides_where_it_times(tmp_path, monkeypatch):
    """The GPU arm's timed path on the CPU (its device kinds widened for the test): P sim workers and P replicas
    with no simulator, each a real run, alternating; the claim stays n/a (not a GPU)."""
    from hdist.bench import sim_gpu
    from hdist.launch import execute, prepare
    from hdist.papers.bench import sim_cost_gpu

    monkeypatch.setattr(sim_gpu, "TIMED_ON", ("cuda", "cpu"))
    cfg = prepare(["experiment=bench-sim-cost-gpu", "scale=smoke", "model=mlp", "algo.workers=2", "algo.reps=2",
                   "scale.n_train=200", "progress=quiet", f"results_dir={tmp_path}"])
    assert execute(cfg).status == "done"
    df = load_results(tmp_path, "bench-sim-cost-gpu")
    t = sim_cost_gpu.sides(df)
    assert sorted(t.groupby("side").size().items()) == [("no_sim", 2), ("sim", 2)] and (t["value"] > 0).all()
    [claim] = sim_cost_gpu.check(df)
    assert claim.status == "n/a"


def _sim_frame(ratio: float, on_cuda: float) -> pd.DataFrame:
    rows = [{"model": "resnet20", "algo.workers": 32, "role": role, "step": rep, "metric": "s_per_update",
             "value": 1e-3 * (ratio if role == "sim" else 1.0)} for rep in range(3) for role in ("sim", "no_sim")]
    rows.append({"model": "resnet20", "algo.workers": 32, "role": "bench", "step": 2, "metric": "on_cuda",
                 "value": on_cuda})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("ratio, on_cuda, status", [(1.05, 1, "PASS"), (1.3, 1, "FAIL"), (1.05, 0, "n/a")])
def test_the_sim_cost_gpu_claim(ratio, on_cuda, status):
    from hdist.papers.bench import sim_cost_gpu

    [claim] = sim_cost_gpu.check(_sim_frame(ratio, on_cuda))
    assert claim.status == status and claim.kind == "bench" and "simulating 32 workers" in claim.claim
    assert sim_cost_gpu.plot(_sim_frame(ratio, on_cuda)) is not None
