"""backend=torchdist (the K-AVG issue): the conformance suite on gloo through the real launch path,
failing ranks end the run quickly with nothing left running, and K-AVG (kavg18 Alg. 1) on
torchdist ends with exactly the parameters of PyTorch's own PostLocalSGDOptimizer +
PeriodicModelAverager with period K fed the same batches.

Each torchdist run pays ~1-3 s of process start here (forkserver, gloo rendezvous). The NCCL
case carries the ``gpu`` marker and is skipped without two CUDA devices.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from hdist.backends import torchdist as td
from hdist.backends.conformance import CHECKS, INJECTED
from hdist.launch import execute, prepare
from hdist.metrics import read_run_metrics
from hdist.problems import build_problem
from hdist.types import ConfigError, World, seed_for
from tests.conftest import ROOT
from tests.test_backends import _assert_nothing_left, _procs, _run

# --- conformance -----------------------------------------------------------------------------------


def _check_conformance(res, workers: int) -> None:
    assert res.status == "done", res.reason
    df = read_run_metrics(res.run_dir).to_pandas()
    rows = df[df["metric"].isin(["conformance_ok", "conformance_skip"])]
    world = workers + 1  # the conformance algorithm has the parameter-server family: rank 0 serves
    assert sorted(rows["rank"].unique()) == list(range(world))
    for rank, g in rows.groupby("rank"):
        assert sorted(g["step"]) == list(range(len(CHECKS))), f"rank {rank}: {sorted(g['step'])}"
        assert (g["kind"] == "event").all() and (g["value"] == 1).all()
    ok = {CHECKS[s] for s in rows.loc[rows["metric"] == "conformance_ok", "step"]}
    assert ok == set(CHECKS) - {"ps_inconsistent_pull"}  # a server rank: no shared memory
    assert (df.loc[df["rank"] == 0, "role"] == "server").all()
    assert (df.loc[df["rank"] > 0, "role"] == "worker").all()


@pytest.mark.parametrize("workers", [2, 3])
def test_conformance(tmp_path, workers):
    # topology.devices=cpu given explicitly: the device rule's CPU path (the run auto settles to here)
    _check_conformance(_run(tmp_path, "torchdist", workers, "topology.devices=cpu"), workers)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_conformance_on_gpu_ranks_over_gloo(tmp_path):
    """The suite's tensors on the ranks' GPUs (every rank on cuda:(r mod GPUs)), gloo staging them through
    host buffers: the path of a machine with fewer GPUs than ranks."""
    _check_conformance(_run(tmp_path, "torchdist", 2, "topology.devices=cuda", "backend.dist_backend=gloo"), 2)


@pytest.mark.slow
def test_conformance_with_spawn(tmp_path):
    """spawn (a fresh interpreter per rank, ~9 s here) as well as the default forkserver."""
    _check_conformance(_run(tmp_path, "torchdist", 1, "backend.start_method=spawn"), 1)


# --- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key,rank", [("fail_rank", 2), ("fail_rank", 0), ("die_rank", 0), ("die_rank", 1)])
def test_a_failing_rank_ends_the_run(tmp_path, key, rank):
    before = set(_procs())
    t0 = time.monotonic()
    res = _run(tmp_path, "torchdist", 2, f"algo.{key}={rank}")
    took = time.monotonic() - t0
    assert res.status == "failed"
    want = INJECTED if key == "fail_rank" else "exit code 9"
    assert want in res.reason, res.reason
    assert re.match(rf"RuntimeError: rank {rank}\b", res.reason), res.reason  # the reason names the rank
    assert took < 20, f"the run took {took:.1f} s to fail"
    assert json.loads((Path(res.run_dir) / "status.json").read_text())["status"] == "failed"
    _assert_nothing_left(before, res.run_dir)


@pytest.mark.slow  # > 5 s: the default suite stays under 5 minutes
def test_a_peer_that_hangs_fails_the_run_after_the_timeout(tmp_path):
    """A rank stuck outside any call: its peers give up after backend.timeout_s, not gloo's 30 min."""
    before = set(_procs())
    cfg = prepare(["algo=kavg", "backend=torchdist", "topology.workers=2", "backend.timeout_s=2", "progress=quiet",
                   f"results_dir={tmp_path}"])
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"rank 0: PeerFailed: barrier.*timeout_s"):
        td.launch(tmp_path, cfg, _hang_on_rank_1, World(workers=2, stages=1, servers=0, ranks=2))
    assert time.monotonic() - t0 < 15
    _assert_nothing_left(before, tmp_path)


def _hang_on_rank_1(ctx) -> None:
    if ctx.rank == 1:
        time.sleep(120)
    ctx.comm.barrier()


# --- K-AVG against PyTorch's PostLocalSGDOptimizer -------------------------------------------------

KAVG = ["algo=kavg", "backend=torchdist", "topology.workers=2", "scale=smoke", "scale.n_train=96", "scale.n_test=32",
        "scale.epochs=2", "algo.batch_size=8", "algo.lr=0.05", "objective.l2=0.001", "backend.threads_per_rank=1",
        "progress=quiet"]
# 96 samples / 2 learners / batch 8 = 6 local steps an epoch; 2 epochs = 12 steps a learner (a
# reshuffle at step 6). K = 3 divides 12; K = 5 leaves a last round of 2 steps, which K-AVG closes
# with a final average.


def _kavg_keep_params(ctx) -> None:
    """hdist's K-AVG rank, then its final parameters into the run directory."""
    from hdist.algos import kavg

    kavg.run(ctx)
    flat = torch.cat([p.detach().reshape(-1) for p in ctx.extra["model"].parameters()])
    torch.save(flat.clone(), ctx.run_dir / f"params-r{ctx.rank}.pt")


def _batches(problem, cfg, rank: int, world: int):
    """The batches hdist's K-AVG feeds learner ``rank`` (hdist.algos._ps.Worker), written out: shard
    ``rank`` of ``world``, a fresh permutation each epoch from a generator seeded (seed, rank)."""
    from hdist.types import seed_for

    assert not problem.has_transform  # no augmentation draws from the generator here
    shard = problem.data.train.shard(rank, world)
    b = int(cfg.algo.batch_size)
    spe = math.ceil(len(shard) / b)
    total = math.ceil(float(cfg.scale.epochs) * spe)
    gen = torch.Generator().manual_seed(seed_for(cfg.seed, rank))
    step = 0
    while step < total:
        order = torch.randperm(len(shard), generator=gen)
        for i in range(min(spe, total - step)):
            step += 1
            yield shard[order[i * b:(i + 1) * b]]


def _reference_rank(rank: int, world: int, port: int, cfg_dict: dict, periods: list[int], out: str) -> None:
    """PyTorch's post-local SGD on gloo: plain SGD (weight decay = l2, no momentum) wrapped in
    PostLocalSGDOptimizer with PeriodicModelAverager(period K), from the model hdist starts from."""
    import torch.distributed as dist
    from omegaconf import OmegaConf
    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
    from torch.distributed.algorithms.model_averaging.utils import average_parameters
    from torch.distributed.optim import PostLocalSGDOptimizer

    from hdist.problems import build_problem
    from hdist.types import seed_for

    os.environ.setdefault("GLOO_SOCKET_IFNAME", td._loopback() or "lo")
    torch.set_num_threads(1)  # as the hdist run (backend.threads_per_rank=1): the same matmul sums
    tmo = datetime.timedelta(seconds=30)
    store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=tmo)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=tmo)
    cfg = OmegaConf.create(cfg_dict)
    problem = build_problem(cfg)
    for period in periods:
        model = problem.build_model(seed_for(cfg.seed, 0))  # hdist's w~_1: worker 0's initialisation
        sgd = torch.optim.SGD(model.parameters(), lr=float(cfg.algo.lr), momentum=0.0, weight_decay=problem.l2)
        # PeriodicModelAverager averages after optimizer step s (0-based) when s >= warmup_steps
        # and (s - warmup_steps) % period == 0, i.e. after steps 1, K+1, 2K+1, ... with no warmup;
        # K-AVG averages after steps K, 2K, ...: warmup_steps = K - 1 makes them the same (the
        # learners start from the same model, so skipping the average of step 1 changes nothing
        # else). During warm-up the averager does nothing at all: no DDP gradient all-reduce here.
        opt = PostLocalSGDOptimizer(sgd, PeriodicModelAverager(period=period, warmup_steps=period - 1))
        steps = 0
        for x, y in _batches(problem, cfg, rank, world):
            opt.zero_grad()
            problem.data_loss(model(x), y).backward()
            opt.step()
            steps += 1
        if steps % period:
            average_parameters(iter(model.parameters()), dist.group.WORLD)  # K-AVG's closing average
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        torch.save(flat, Path(out) / f"ref-k{period}-r{rank}.pt")
    dist.destroy_process_group()


def _run_reference(cfg, periods: list[int], out: Path, world: int = 2) -> None:
    import torch.distributed as dist
    import torch.multiprocessing as tmp
    from omegaconf import OmegaConf

    store = dist.TCPStore("127.0.0.1", 0, world + 1, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=30))
    mp = tmp.get_context("forkserver")
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    procs = [mp.Process(target=_reference_rank, args=(r, world, store.port, cfg_dict, periods, str(out)), daemon=True)
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0] * world, f"reference ranks exited with {codes}"


@pytest.mark.parametrize("k", [3, pytest.param(5, marks=pytest.mark.slow)])
def test_kavg_matches_post_local_sgd(tmp_path, monkeypatch, k):
    import hdist.algos

    cfg = prepare([*KAVG, f"algo.k={k}", f"results_dir={tmp_path / 'hdist'}"])
    # The real launch path (run directory, config, torchdist.launch) with K-AVG's own rank
    # function plus a line that keeps the final parameters.
    kavg = hdist.algos.get_algo("kavg")
    real_get_algo = hdist.algos.get_algo
    monkeypatch.setattr(hdist.algos, "get_algo", lambda name: dataclasses.replace(
        kavg, run=_kavg_keep_params) if name == "kavg" else real_get_algo(name))
    res = execute(cfg, force=True)
    assert res.status == "done", res.reason
    mine = [torch.load(Path(res.run_dir) / f"params-r{r}.pt") for r in range(2)]

    other = k + 1  # a different period: the comparison tells periods apart
    _run_reference(cfg, [k, other], tmp_path)
    ref = [torch.load(tmp_path / f"ref-k{k}-r{r}.pt") for r in range(2)]
    ref_other = torch.load(tmp_path / f"ref-k{other}-r0.pt")

    start = build_problem(cfg).build_model(seed_for(cfg.seed, 0))
    init = torch.cat([p.detach().reshape(-1) for p in start.parameters()])
    assert mine[0].shape == ref[0].shape == init.shape
    assert not torch.equal(mine[0], init)  # training moved the parameters
    assert torch.equal(mine[0], mine[1])  # the last step is an average: every learner holds it
    assert torch.equal(ref[0], ref[1])
    # Bit for bit: the same gradients (same model, batches, threads), the same SGD update
    # (w - lr (g + l2 w)) and the same averages ((a + b) / 2 == a/2 + b/2 exactly for two ranks).
    diff = (mine[0] - ref[0]).abs().max().item()
    assert torch.equal(mine[0], ref[0]), f"max |hdist - PostLocalSGD| = {diff:.3g}"
    assert not torch.allclose(mine[0], ref_other), "period K+1 gives the same parameters: the test cannot tell"


# --- the library backend, the meta, external worlds ------------------------------------------------


def test_dist_backend_choice(capsys):
    cpu = prepare(["algo=kavg", "backend=torchdist", "topology.workers=2"])
    assert td.choose_dist_backend(cpu, 2) == "gloo"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0:  # cuda without a GPU is refused when the config is settled (hdist/devices.py)
        with pytest.raises(ConfigError, match="topology.devices=cuda"):
            prepare(["algo=kavg", "backend=torchdist", "topology.workers=2", "topology.devices=cuda"])
    # the choice itself, for a config settled on a machine with a GPU
    cuda = prepare(["algo=kavg", "backend=torchdist", "topology.workers=2"])
    cuda.topology.devices = "cuda"
    if gpus >= 2 and torch.distributed.is_nccl_available():
        assert td.choose_dist_backend(cuda, 2) == "nccl"
    else:
        assert td.choose_dist_backend(cuda, 2) == "gloo"
        assert "gloo, the ranks' GPU tensors staged" in capsys.readouterr().err
        with pytest.raises(ConfigError, match="dist_backend=nccl"):
            td.choose_dist_backend(prepare(["backend=torchdist", "backend.dist_backend=nccl"]), 2)
    with pytest.raises(ConfigError, match="backend.dist_backend"):
        td.validate(prepare(["backend=torchdist", "backend.dist_backend=mpi"]))
    meta = td.library_meta(cpu)
    assert meta["dist_library"] == f"torch.distributed {torch.__version__}, gloo"


def test_external_world_is_torchrun_environment(monkeypatch):
    cfg = prepare(["backend=torchdist"])
    for k in td._LAUNCHER_ENV:
        monkeypatch.delenv(k, raising=False)
    assert not td.in_external_world(cfg)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert td.in_external_world(cfg) and td.world_rank() == 1
    assert not td.in_external_world(prepare(["backend=torchdist", "backend.external='false'"]))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not td.in_external_world(cfg)


def test_external_world_frees_its_default_group_at_exit(monkeypatch):
    """The leader's control group is freed by an exit handler registered once per process: gloo
    threads left to interpreter teardown aborted a rank after a good run (SIGABRT under torchrun)."""
    import socket

    registered = []
    monkeypatch.setattr(td.atexit, "register", registered.append)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "GLOO_SOCKET_IFNAME": td._loopback() or "lo"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    dist = td._control()
    try:
        td._control()  # a second run in the same process joins nothing new
        assert dist.is_initialized() and registered == [td._leave_world]
    finally:
        td._leave_world()
    assert not dist.is_initialized()
    td._leave_world()  # nothing left to free: a no-op


def _torchrun(tmp_path: Path, *extra: str):
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3", "-m", "hdist.cli",
           "run", "algo=conformance", "backend=torchdist", "topology.workers=2", "progress=quiet",
           f"results_dir={tmp_path}", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": td._loopback() or "lo"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)


@pytest.mark.slow
def test_torchrun_external_world(tmp_path):
    """``torchrun --standalone --nproc-per-node 3 -m hdist.cli run backend=torchdist ...`` (~11 s
    here): no second launch; world rank 0 alone records the run, the others follow."""
    r = _torchrun(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = list((tmp_path / "adhoc").iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "done"
    df = read_run_metrics(run_dir).to_pandas()
    assert sorted(df["rank"].unique()) == [0, 1, 2]
    assert len(df[df["metric"] == "conformance_ok"]) == 3 * (len(CHECKS) - 1)
    assert r.stderr.count("[hdist] done") == 1


@pytest.mark.slow
def test_torchrun_failing_rank(tmp_path):
    """Under torchrun a failing rank records the run failed itself and ends the world."""
    before = set(_procs())
    r = _torchrun(tmp_path, "algo.fail_rank=1")
    assert r.returncode != 0
    (run_dir,) = list((tmp_path / "adhoc").iterdir())
    st = json.loads((run_dir / "status.json").read_text())
    assert st["status"] == "failed" and "rank 1" in st["reason"] and INJECTED in st["reason"], st
    assert json.loads((run_dir / "error-r1.json").read_text())["kind"] == "error"
    _assert_nothing_left(before, run_dir)


# --- NCCL ------------------------------------------------------------------------------------------


def _gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 2, reason="needs 2 CUDA devices")
def test_nccl_kavg_and_conformance(tmp_path, monkeypatch):
    """On GPUs: the conformance suite with NCCL collectives, and K-AVG on NCCL ending with the
    parameters K-AVG on gloo ends with (the average of two numbers is the same on either)."""
    import hdist.algos

    res = _run(tmp_path / "conf", "torchdist", 1, "backend.dist_backend=nccl", "topology.devices=cuda")
    _check_conformance(res, 1)
    kavg = hdist.algos.get_algo("kavg")
    real_get_algo = hdist.algos.get_algo
    monkeypatch.setattr(hdist.algos, "get_algo", lambda name: dataclasses.replace(
        kavg, run=_kavg_keep_params) if name == "kavg" else real_get_algo(name))
    params = {}
    for lib, dev in (("nccl", "cuda"), ("gloo", "cpu")):
        cfg = prepare([*KAVG, "algo.k=3", f"backend.dist_backend={lib}", f"topology.devices={dev}",
                       f"results_dir={tmp_path / lib}"])
        res = execute(cfg, force=True)
        assert res.status == "done", res.reason
        params[lib] = torch.load(Path(res.run_dir) / "params-r1.pt")
    assert torch.equal(params["nccl"], params["gloo"])


@pytest.mark.slow
def test_bench_kavg_postlocal_reproduces_at_smoke(cli, tmp_path):
    # 4 torchdist runs of 2 ranks (~2-3 s each): the benchmark's pipeline, not its timing.
    code, out, err = cli("reproduce", "bench-kavg-postlocal", "scale=smoke", "scale.n_train=400", "seed=0",
                         "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    assert (tmp_path / "figures" / "bench-kavg-postlocal.png").exists()
    assert "PostLocalSGDOptimizer" in out and "[n/a]" not in out
