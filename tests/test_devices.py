"""The device rule (hdist/devices.py): auto, cpu, and cuda where there is none; the local rank; meta.json."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hdist import devices
from hdist.types import ConfigError

SMALL = ["algo=sgd", "scale=smoke", "algo.max_steps=3", "progress=quiet"]
NO_GPU = not torch.cuda.is_available()


def test_cpu_is_cpu_and_auto_is_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 0)
    assert devices.resolve("cpu") == "cpu"
    assert devices.resolve("auto") == "cpu"
    assert devices.resolve("AUTO") == "cpu"


def test_auto_is_cuda_with_a_gpu(monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 2)
    assert devices.resolve("auto") == "cuda"
    assert devices.resolve("cuda") == "cuda"


@pytest.mark.parametrize("value", ["gpu", "cuda:0", "", 3])
def test_a_bad_value_is_named(value):
    with pytest.raises(ConfigError, match=r"^topology.devices=.*expected auto, cpu, cuda"):
        devices.resolve(value)


def test_cuda_without_a_gpu_is_refused_not_a_fall_back(monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match=r"^topology.devices=cuda: CUDA_VISIBLE_DEVICES='' hides every GPU"):
        devices.resolve("cuda")


@pytest.mark.parametrize("env,want", [
    ({}, 5),
    ({"LOCAL_RANK": "1"}, 1),  # torchrun
    ({"SLURM_LOCALID": "3"}, 3),  # srun
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "2"}, 2),  # Open MPI's mpiexec
    ({"MPI_LOCALRANKID": "4"}, 4),  # MPICH's hydra
    ({"LOCAL_RANK": "0", "SLURM_LOCALID": "3"}, 0),  # torchrun inside an allocation: torchrun's
    ({"LOCAL_RANK": "x"}, 5),
])
def test_the_local_rank_comes_from_the_launcher(env, want):
    assert devices.local_rank(default=5, env=env) == want


def test_rank_device_on_the_cpu():
    assert devices.rank_device("cpu", 3) == torch.device("cpu")
    with pytest.raises(ValueError):
        devices.rank_device("auto")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_on_a_cpu_machine_is_one_line_and_exit_2(sub, tmp_path):
    r = sub("run", *SMALL, "topology.devices=cuda", f"results_dir={tmp_path / 'r'}")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hdist: topology.devices=cuda: "), r.stderr
    assert "allowed here: cpu or auto" in lines[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_auto_runs_on_the_cpu_as_cpu_did_and_says_so(cli, tmp_path):
    res = tmp_path / "r"
    assert cli("run", *SMALL, "topology.devices=auto", f"results_dir={res}")[0] == 0
    (run_dir,) = list(res.glob("adhoc/*"))
    assert json.loads((run_dir / "meta.json").read_text())["device"] == "cpu"
    assert "devices: cpu" in (run_dir / "config.yaml").read_text()  # settled before the run id
    code, _, err = cli("run", *SMALL, "topology.devices=cpu", f"results_dir={res}")
    assert code == 0 and "already done" in err  # the same run: auto on a CPU is cpu


def test_a_cpu_run_stored_as_cuda_by_an_older_hdist_is_found(cli, tmp_path):
    """Before the device rule every run computed on the CPU whatever topology.devices said (kavg18's
    topology said cuda): such a run, finished, is the CPU run of its config and is not redone."""
    from omegaconf import OmegaConf

    from hdist import config as C

    res = tmp_path / "r"
    assert cli("run", *SMALL, "topology.devices=cpu", f"results_dir={res}")[0] == 0
    (run_dir,) = list(res.glob("adhoc/*"))
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.topology.devices = "cuda"
    old_dir = res / "adhoc" / C.run_id(cfg)
    shutil.move(run_dir, old_dir)
    meta = json.loads((old_dir / "meta.json").read_text())
    del meta["device"]  # an older hdist recorded none
    (old_dir / "meta.json").write_text(json.dumps(meta))
    code, _, err = cli("run", *SMALL, "topology.devices=cpu", f"results_dir={res}")
    assert code == 0 and "already done" in err, err
    assert [p.name for p in (res / "adhoc").iterdir()] == [old_dir.name]
    # one that recorded a device was run by this hdist on that device: another run
    meta["device"] = "cuda"
    (old_dir / "meta.json").write_text(json.dumps(meta))
    assert cli("run", *SMALL, "topology.devices=cpu", f"results_dir={res}")[0] == 0
    assert sorted(p.name for p in (res / "adhoc").iterdir()) == sorted([old_dir.name, run_dir.name])


def test_a_problem_moved_to_a_device_builds_its_model_and_delivers_its_batches_there():
    """The code path of a GPU run, on the CPU: Problem.to keeps the data and the model on the device."""
    from omegaconf import OmegaConf

    from hdist.config import compose, finalize
    from hdist.problems import build_problem

    cfg = finalize(compose(["algo=sgd", "scale=smoke"]))
    cpu = torch.device("cpu")
    prob = build_problem(cfg, cpu)
    assert prob is build_problem(cfg) and prob.device == cpu
    model = prob.build_model(0)
    assert all(p.device == cpu for p in model.parameters())
    x, y = prob.data.train[torch.arange(4)]
    assert x.device == cpu and y.device == cpu
    assert OmegaConf.select(cfg, "topology.devices") == "cpu"
