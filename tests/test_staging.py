"""Staging device tensors through reusable buffers (:mod:`hdist.backends.staging`), on the CPU.

A GPU rank's tensors reach host-memory paths (the thread and process backends' shared state, MPI
without CUDA support, gloo) through :class:`Staging`. On a CPU-only machine a contiguous CPU tensor is
used in place, so these tests make the copy-in / copy-back path run by other means: ``always=True``
(stage everything), views with an offset and non-contiguous views, the whole conformance suite on the
thread backend with every call staged, and MPIComm's buffer choice without MPI. What only a GPU shows
(pinned buffers, device-to-host copies, the process backend with CUDA ranks, CUDA-aware MPI) runs in
the ``gpu``-marked tests (``test_backends.py::test_conformance[cuda]``, ``test_backend_devices.py``).
"""

from __future__ import annotations

import pytest
import torch

import hdist.backends.thread as thread
from hdist.backends.staging import Staging
from tests.test_backends import _run, check_conformance


def test_a_contiguous_tensor_on_home_is_used_in_place():
    st = Staging("cpu")
    t = torch.arange(6, dtype=torch.float32).view(2, 3)
    flat = st.to_home(t, "a")
    assert flat.data_ptr() == t.data_ptr() and flat.shape == (6,)
    flat.mul_(2)  # the path writes into t itself: back has nothing to copy
    st.back(t, flat)
    assert torch.equal(t, (torch.arange(6, dtype=torch.float32) * 2).view(2, 3))
    assert st.home_for(t, "a").data_ptr() == t.data_ptr()


def test_an_offset_view_comes_back_into_its_own_elements_only():
    st = Staging("cpu", always=True)
    base = torch.zeros(20, dtype=torch.float64)
    view = base[5:12]  # contiguous, with a storage offset
    view.copy_(torch.arange(7, dtype=torch.float64))
    buf = st.to_home(view, "a")
    assert buf.data_ptr() != view.data_ptr() and torch.equal(buf, torch.arange(7, dtype=torch.float64))
    buf.add_(100)
    st.back(view, buf)
    want = torch.zeros(20, dtype=torch.float64)
    want[5:12] = torch.arange(7, dtype=torch.float64) + 100
    assert torch.equal(base, want)


def test_a_non_contiguous_view_is_staged_and_written_back_in_its_own_layout():
    st = Staging("cpu")  # not forced: a strided view cannot be handed to a path in place
    m = torch.arange(12, dtype=torch.float32).view(3, 4)
    col = m[:, 1]
    assert not st.in_place(col)
    buf = st.to_home(col, "a")
    assert torch.equal(buf, torch.tensor([1.0, 5.0, 9.0]))
    out = st.home_for(col, "a")
    out.copy_(torch.tensor([-1.0, -2.0, -3.0]))
    st.back(col, out)
    assert torch.equal(m[:, 1], torch.tensor([-1.0, -2.0, -3.0]))
    assert torch.equal(m[:, 0], torch.tensor([0.0, 4.0, 8.0]))  # its neighbours untouched


def test_buffers_are_reused_per_slot_and_dtype_and_grow_to_the_largest():
    st = Staging("cpu", always=True)
    a = st.to_home(torch.ones(10), "delta")
    b = st.to_home(torch.ones(4), "delta")
    assert b.data_ptr() == a.data_ptr()  # the same memory, call after call
    assert st.to_home(torch.ones(4), "out").data_ptr() != a.data_ptr()  # another call site: its own
    d = st.to_home(torch.ones(4, dtype=torch.float64), "delta")
    assert d.dtype == torch.float64 and d.data_ptr() != a.data_ptr()
    big = st.to_home(torch.arange(50, dtype=torch.float32), "delta")
    assert big.numel() == 50 and torch.equal(big, torch.arange(50, dtype=torch.float32))
    assert st.to_home(torch.ones(10), "delta").data_ptr() == big.data_ptr()


def test_a_fresh_copy_shares_nothing():
    st = Staging("cpu")
    t = torch.ones(5)
    f = st.fresh(t)
    t.fill_(7.0)
    assert torch.equal(f, torch.ones(5))


class _Counting(Staging):
    """Staging that counts its copies in (to_home, home_for) and back."""

    copies_in = 0
    copies_back = 0

    def to_home(self, t, slot):
        _Counting.copies_in += 1
        return super().to_home(t, slot)

    def home_for(self, t, slot):
        _Counting.copies_in += 1
        return super().home_for(t, slot)

    def back(self, t, buf):
        if buf.data_ptr() != t.data_ptr():
            _Counting.copies_back += 1
        super().back(t, buf)


def test_the_thread_backend_passes_the_conformance_suite_with_every_call_staged(tmp_path, monkeypatch):
    """LocalComm's device path on the CPU: every push, all-reduce and broadcast goes through the host
    buffers and back, as for a GPU rank; the suite's checks (exact sums, float64 bits, versions) hold."""

    class StagedComm(thread.LocalComm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, staging=_Counting("cpu", always=True), **kwargs)

    monkeypatch.setattr(thread, "LocalComm", StagedComm)
    monkeypatch.setattr(_Counting, "copies_in", 0)
    monkeypatch.setattr(_Counting, "copies_back", 0)
    res = _run(tmp_path, "thread", 3)
    check_conformance(res, "thread", 3)
    assert _Counting.copies_in > 0 and _Counting.copies_back > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_tensor_is_staged_in_pinned_host_memory_and_comes_back():
    st = Staging("cpu")
    t = torch.arange(8, dtype=torch.float32, device="cuda")
    buf = st.to_home(t, "a")
    assert buf.device.type == "cpu" and buf.is_pinned() and torch.equal(buf, torch.arange(8, dtype=torch.float32))
    buf.mul_(3)
    st.back(t, buf)
    assert t.device.type == "cuda" and torch.equal(t.cpu(), torch.arange(8, dtype=torch.float32) * 3)


def _on_meta(run):
    """The rank function with torch's default device set to ``meta`` in the rank (thread-local): a
    tensor made without ``device=`` lands on meta and fails against the rank's CPU tensors."""

    def rank_fn(ctx):
        torch.set_default_device("meta")
        try:
            run(ctx)
        finally:
            torch.set_default_device(None)

    return rank_fn


@pytest.mark.parametrize("backend,workers", [("serial", 1), ("thread", 3), ("sim", 3)])
def test_no_tensor_in_the_backend_or_the_suite_ignores_the_rank_s_device(tmp_path, monkeypatch, backend, workers):
    """Device hygiene of the backends' own code (LocalComm, the sim, staging) and of the suite: every
    tensor says where it lives. A CPU tensor mixed with a meta one fails, so a run that ends done shows
    that nothing was made on torch's default device (the sim's ranks share one thread: its scheduler
    runs under meta too)."""
    import dataclasses

    import hdist.algos

    real = hdist.algos.get_algo

    def get_algo(name):
        spec = real(name)
        return dataclasses.replace(spec, run=_on_meta(spec.run)) if name == "conformance" else spec

    monkeypatch.setattr(hdist.algos, "get_algo", get_algo)
    res = _run(tmp_path, backend, workers, "topology.devices=cpu")
    check_conformance(res, backend, workers)
    assert torch.empty(1).device.type == "cpu"  # the default is back where it was


def test_mpi_buffers_stage_and_copy_back_without_starting_mpi():
    """MPIComm's choice of buffer (no MPI call: the comm is built without __init__): a contiguous CPU
    tensor is handed to MPI as a numpy view of itself; a staged one (as a GPU tensor on an MPI without
    CUDA support) goes through a reused host buffer, filled only where MPI reads it, and comes back."""
    from hdist.backends.mpi import MPIComm

    comm = MPIComm.__new__(MPIComm)
    comm.cuda_aware, comm._stage, comm._views = False, Staging("cpu"), [None, None]
    t = torch.arange(4, dtype=torch.float32)
    arr, host = comm._buf(t, "collective")
    assert host is None and arr.ctypes.data == t.data_ptr()

    comm._stage = Staging("cpu", always=True)
    arr, host = comm._buf(t, "collective")
    assert host is not None and arr.ctypes.data != t.data_ptr() and list(arr) == [0.0, 1.0, 2.0, 3.0]
    arr *= 10  # what MPI wrote into the host buffer
    comm._back(t, host)
    assert torch.equal(t, torch.arange(4, dtype=torch.float32) * 10)
    out = torch.full((3,), -1.0)
    arr, host = comm._view(out, 0, fill=False)  # a receive: the buffer is not filled from out
    arr[:] = 7.0
    comm._back(out, host)
    assert torch.equal(out, torch.full((3,), 7.0)) and comm._views[0] is None  # staged views are not cached
    arr2, _ = comm._view(torch.ones(3), 1, fill=True)
    assert arr2.ctypes.data != arr.ctypes.data  # delta and out: buffers of their own
