"""Honest timing on GPUs (issue 22): every clock read of a rank's accounts waits for its device first.

No GPU is needed: the device is a ``torch.device("cuda", 0)`` object (constructing one needs no CUDA) and
``hdist.runtime.synchronize`` is replaced by a recorder, so the test sees each synchronize and each clock
read in order."""

from __future__ import annotations

import pytest
import torch

import hdist.runtime as runtime
from hdist.backends.serial import SerialComm
from hdist.runtime import TimedComm, wall_clock


class ClockComm(SerialComm):
    """A serial comm whose clock logs every read into ``events``."""

    def __init__(self, events: list):
        super().__init__()
        self.events, self.t = events, 0.0

    def now(self) -> float:
        self.events.append("read")
        self.t += 1.0
        return self.t


def _reads_synced(events: list) -> bool:
    """Every clock read comes right after a synchronize."""
    return all(i > 0 and events[i - 1] == "sync" for i, e in enumerate(events) if e == "read")


def test_cuda_clock_reads_synchronize_first(monkeypatch):
    events: list = []
    dev = torch.device("cuda", 0)
    monkeypatch.setattr(runtime, "synchronize", lambda d: events.append("sync") if d == dev else None)
    comm = TimedComm(ClockComm(events), device=dev)
    with comm.compute():
        pass
    comm.allreduce(torch.zeros(2))
    comm.barrier()
    timing = comm.timing()
    train_s = comm.elapsed_s()
    comm.now()
    assert events.count("read") >= 7 and _reads_synced(events), events
    assert timing["compute_s"] == 1.0 and timing["comm_s"] == 3.0 and train_s > 0


def test_cpu_clock_reads_do_not_synchronize(monkeypatch):
    events: list = []
    monkeypatch.setattr(runtime, "synchronize", lambda d: events.append("sync"))
    comm = TimedComm(ClockComm(events), device=torch.device("cpu"))
    with comm.compute():
        comm.allreduce(torch.zeros(2))
    comm.timing()
    comm.elapsed_s()
    assert "sync" not in events and events.count("read") >= 4
    # the CPU clock of a rank's logger is perf_counter itself, as before
    import time

    assert wall_clock(torch.device("cpu")) is time.perf_counter and wall_clock(None) is time.perf_counter


def test_the_sims_virtual_clock_is_read_without_a_sync(monkeypatch):
    """The sim's clock is its cost model's: syncing the GPU its ranks share would only stall it."""
    events: list = []
    monkeypatch.setattr(runtime, "synchronize", lambda d: events.append("sync"))
    inner = ClockComm(events)
    inner.virtual_time = True
    comm = TimedComm(inner, device=torch.device("cuda", 0))
    with comm.compute():
        pass
    comm.elapsed_s()
    assert "sync" not in events and events.count("read") >= 3


def test_cuda_wall_clock_synchronizes(monkeypatch):
    events: list = []
    dev = torch.device("cuda", 1)
    monkeypatch.setattr(runtime, "synchronize", lambda d: events.append(d))
    wall_clock(dev)()
    assert events == [dev]


def test_make_ctx_gives_the_rank_device_to_its_clocks(monkeypatch, tmp_path):
    """The backends' context builder hands the rank's device to its comm's accounts and its logger."""
    import hdist.devices as devices
    from hdist import config as C
    from hdist.backends._ranks import make_ctx

    dev = torch.device("cuda", 0)
    monkeypatch.setattr(devices, "cfg_device", lambda cfg, index=0: torch.device("cuda", index))
    synced: list = []
    monkeypatch.setattr(runtime, "synchronize", lambda d: synced.append(d))
    cfg = C.finalize(C.compose(["algo=sgd", "scale=smoke"]))
    ctx = make_ctx(cfg, tmp_path, "rid", 0, 1, SerialComm())
    try:
        assert ctx.device == dev and ctx.comm.device == dev
        ctx.comm.elapsed_s()
        ctx.log.wall_s()
        assert synced and all(d == dev for d in synced)
        ctx2 = make_ctx(cfg, tmp_path, "rid", 1, 2, SerialComm(), local_index=3)  # a launcher's local rank
        ctx2.log.close()
        assert ctx2.device == ctx2.comm.device == torch.device("cuda", 3)
    finally:
        ctx.log.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_run_synchronizes_its_device_at_its_clock_reads(monkeypatch, tmp_path):
    from hdist.launch import execute, prepare

    calls: list = []
    real = runtime.synchronize
    monkeypatch.setattr(runtime, "synchronize", lambda d: (calls.append(d), real(d)))
    res = execute(prepare(["algo=sgd", "backend=serial", "topology.devices=cuda", "scale=smoke", "scale.n_train=240",
                           "scale.n_test=60", "scale.epochs=1", "progress=quiet", f"results_dir={tmp_path}"]),
                  quiet_skip=True)
    assert res.status == "done", res.reason
    assert calls and all(d.type == "cuda" for d in calls)
