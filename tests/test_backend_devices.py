"""Every backend runs a training algorithm with ``topology.devices=cpu`` given explicitly, through the
code path a GPU run takes (the device rule of :mod:`hdist.devices`, ``ctx.device``, the backends' staging),
and where the rank's device comes from on each backend (its local index).

K-AVG (collective: every backend has it, serial with one learner) at a tiny size: a few hundred
samples, one epoch. The run must be the run ``auto`` settles to on this CPU machine: the same run id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from hdist import config as C
from hdist.backends import process
from hdist.launch import execute, prepare
from hdist.metrics import load_results

TINY = ["algo=kavg", "algo.k=2", "scale=smoke", "scale.n_train=256", "scale.n_test=64", "scale.epochs=1",
        "progress=quiet", "log.train_every=1"]
# process and torchdist start processes (5-12 s a run on a loaded 2-core box): slow here; the default
# suite runs their conformance with topology.devices=cpu given explicitly (test_backends, test_torchdist).
BACKENDS = [("serial", 1), ("thread", 2), pytest.param("process", 2, marks=pytest.mark.slow), ("sim", 2),
            pytest.param("torchdist", 2, marks=pytest.mark.slow), pytest.param("mpi", 2, marks=pytest.mark.mpi)]


@pytest.mark.parametrize("backend,workers", BACKENDS)
def test_every_backend_trains_with_devices_cpu_given_explicitly(tmp_path, backend, workers):
    ovs = [*TINY, f"backend={backend}", f"topology.workers={workers}", f"results_dir={tmp_path}"]
    cfg = prepare([*ovs, "topology.devices=cpu"])
    assert cfg.topology.devices == "cpu"
    # auto settles to cpu here before the run id: explicit cpu is the very same run
    assert C.run_id(cfg) == C.run_id(prepare([*ovs, "topology.devices=auto"]))
    res = execute(cfg)
    assert res.status == "done", res.reason
    meta = json.loads((Path(res.run_dir) / "meta.json").read_text())
    assert meta["device"] == "cpu"
    if backend == "mpi":
        assert meta["mpi_cuda_aware"] in (True, False)
    df = load_results(tmp_path)
    loss = df[df["metric"] == "train_loss"]["value"]
    assert len(loss) > 0 and loss.notna().all()


def _cfg(devices: str, method: str):
    return OmegaConf.create({"topology": {"devices": devices}, "backend": {"start_method": method}})


def test_process_start_method_is_spawn_where_cuda_cannot_fork():
    # A child forked from a process that has initialised CUDA cannot use it; forkserver and spawn
    # children start from a process that never did.
    assert process.start_method(_cfg("cuda", "fork")) == "spawn"
    assert process.start_method(_cfg("cuda", "forkserver")) == "forkserver"
    assert process.start_method(_cfg("cuda", "spawn")) == "spawn"
    assert process.start_method(_cfg("cpu", "fork")) == "fork"  # the CPU keeps what it was given


@pytest.mark.parametrize("backend,workers,want", [("thread", 3, [0, 1, 2]), ("sim", 3, [0, 0, 0, 0])])
def test_each_rank_gets_its_device_from_its_local_index(tmp_path, monkeypatch, backend, workers, want):
    """The index that picks a rank's GPU (cuda:(index mod GPUs)): the rank itself where hdist starts every
    rank on this machine, 0 for every simulated rank (sim: one device; its server rank too)."""
    import hdist.devices

    asked = []
    real = hdist.devices.cfg_device

    def spy(cfg, index=0):
        asked.append(index)
        return real(cfg, index)

    monkeypatch.setattr(hdist.devices, "cfg_device", spy)
    res = execute(prepare(["algo=conformance", f"backend={backend}", f"topology.workers={workers}", "progress=quiet",
                           "topology.devices=cpu", f"results_dir={tmp_path}"]))
    assert res.status == "done", res.reason
    assert sorted(asked) == want


def test_torchdist_ranks_take_the_local_rank_they_are_given(monkeypatch):
    """torchdist passes a rank its local index: its rank when hdist spawns it, LOCAL_RANK under torchrun."""
    import hdist.backends._ranks as ranks
    from hdist.backends import torchdist

    asked = {}

    def make_ctx(cfg, run_dir, run_id, rank, world, comm, role="worker", local_index=None):
        asked[rank] = local_index
        return "ctx"

    monkeypatch.setattr(ranks, "make_ctx", make_ctx)

    class Comm:
        rank, world_size = 3, 4

    cfg = prepare(["algo=conformance", "backend=torchdist", "topology.workers=3", "progress=quiet"])
    assert torchdist._rank_ctx(cfg, Path("."), "rid", Comm(), False, 1) == "ctx"
    assert asked == {3: 1}
    monkeypatch.setenv("LOCAL_RANK", "2")
    from hdist.devices import local_rank

    assert local_rank(default=0) == 2  # what _run_in_place passes under torchrun


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend,workers,extra", [
    ("serial", 1, []), ("thread", 2, []), ("process", 2, []), ("sim", 2, []),
    ("process", 2, ["backend.start_method=fork"]),  # becomes spawn: CUDA in a forked child fails
    ("torchdist", 2, ["backend.dist_backend=gloo"]),  # GPU ranks, gloo collectives staged through the host
])
def test_every_backend_trains_on_cuda(tmp_path, backend, workers, extra):
    res = execute(prepare([*TINY, f"backend={backend}", f"topology.workers={workers}", f"results_dir={tmp_path}",
                           "topology.devices=cuda", *extra]))
    assert res.status == "done", res.reason
    assert json.loads((Path(res.run_dir) / "meta.json").read_text())["device"] == "cuda"
