"""Backend conformance (a test algorithm, ``algo=conformance``): every Comm call with known values.

Every backend launches the same rank function and must pass the same checks; they adapt to
what the backend offers (``world_size``, ``comm.has_server``, ``comm.shared_memory``):

- world: rank, world size, ``n_workers`` and ``worker_index`` agree with each other;
- barrier; allreduce sum and mean of rank-dependent tensors (float32, float64, 2-d), and of a
  tensor larger than any collective slot; broadcast from root 0 and from root world-1 (small
  and large);
- send/recv (world > 1): a ring with two tags received out of order, a large message, values
  fixed at the time of the send; receives from any source that return the sender;
- parameter server / shared state: ``ps_init`` keeps rank 0's x0 (version 0); every worker
  pulls then pushes +1 ``algo.pushes`` times (versions and staleness >= 0; on a server the
  staleness reaches ``on_apply`` in order, version by version), then ``push_pull``
  ``algo.push_pulls`` times; a consistent pull never sees a torn vector (all coordinates equal,
  and equal to the version it returns); an inconsistent pull works where memory is shared;
  finally x == (pushes + push_pulls) * n_workers everywhere, version likewise.

Every tensor the checks hand to the backend is on the rank's device (``ctx.device``: its GPU under
``topology.devices=cuda``, else the CPU), and every result must come back into it: a backend proves
that it takes device tensors (``tests/test_backends.py`` runs the suite on cpu, and on cuda where a
GPU is present).

Each rank logs one row per check: ``kind=event``, ``metric=conformance_ok`` (or
``conformance_skip`` where the check does not apply to this rank or backend), ``value=1``,
``step`` = the check's index in :data:`CHECKS`. A failed check raises ``AssertionError``.

Failure injection: ``algo.fail_rank`` raises ``RuntimeError("conformance: injected failure")``
right after the first barrier; ``algo.die_rank`` calls ``os._exit(9)`` there (process and mpi
backends only: elsewhere it would end the calling process). The run must end ``failed``
quickly on every backend.

It lives with the backends (it tests them) but, like every algorithm, talks to
:class:`~hdist.types.Comm` only.
"""

from __future__ import annotations

import os
import sys

import torch

from hdist.types import AlgoSpec, ConfigError

FAMILIES = ("ps", "shared", "collective", "serial")

CHECKS = ("world", "barrier", "allreduce_sum", "allreduce_mean", "allreduce_large", "broadcast_root0",
          "broadcast_rootlast", "broadcast_large", "sendrecv_ring", "recv_any_source", "ps_init", "ps_push",
          "ps_consistent_pull", "ps_push_pull", "ps_inconsistent_pull", "ps_final")
INJECTED = "conformance: injected failure"
#: Backends whose ranks are processes of their own, where ``die_rank`` can kill one rank only.
DIE_BACKENDS = ("process", "mpi", "torchdist")


def check(cfg) -> dict:
    """Run facts for meta.json; no data is loaded (x has ``algo.dim`` elements)."""
    return {"n_params": int(cfg.algo.dim), "data": "none (backend conformance test)"}


def validate(cfg) -> None:
    a = cfg.algo
    for key in ("dim", "pushes", "push_pulls"):
        v = a.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"algo.{key}={v!r}: not allowed; expected an integer >= 1")
    for key in ("fail_rank", "die_rank"):
        v = a.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ConfigError(f"algo.{key}={v!r}: not allowed; expected null or a rank (an integer >= 0)")
    if a.get("die_rank") is not None and cfg.backend.name not in DIE_BACKENDS:
        raise ConfigError(f"algo.die_rank={a.die_rank}: backend={cfg.backend.name} runs ranks inside this process, "
                          f"which os._exit would end; allowed backends: {', '.join(DIE_BACKENDS)}")


class _Checker:
    def __init__(self, ctx):
        self.log, self.rank = ctx.log, ctx.comm.rank

    def _row(self, name: str, metric: str) -> None:
        self.log.step = CHECKS.index(name)
        self.log.log("event", metric, 1.0)

    def ok(self, name: str) -> None:
        self._row(name, "conformance_ok")

    def skip(self, name: str) -> None:
        self._row(name, "conformance_skip")

    def expect(self, cond, name: str, detail: str) -> None:
        if not cond:
            raise AssertionError(f"conformance check {name} failed on rank {self.rank}: {detail}")


def _equal(t: torch.Tensor, want: torch.Tensor) -> bool:
    return t.shape == want.shape and bool(torch.equal(t, want.to(t.device, t.dtype)))


def run(ctx) -> None:
    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    a = cfg.algo
    c = _Checker(ctx)
    dev = ctx.device  # every tensor on the rank's device: the backend takes and returns device tensors
    r, W = comm.rank, comm.world_size
    is_server = bool(comm.has_server) and comm.worker_index is None
    if is_server:
        ctx.role = log.role = "server"

    # --- world ----------------------------------------------------------------------------------
    c.expect(r == ctx.rank and W == ctx.world_size and 0 <= r < W, "world", f"rank {r} of {W}, ctx {ctx.rank}")
    c.expect(comm.n_workers == W - (1 if comm.has_server else 0), "world", f"n_workers {comm.n_workers}, world {W}")
    want_index = (None if r == 0 else r - 1) if comm.has_server else r
    c.expect(comm.worker_index == want_index, "world", f"worker_index {comm.worker_index}, expected {want_index}")
    c.ok("world")

    comm.barrier()
    c.ok("barrier")
    if a.get("fail_rank") is not None and int(a.fail_rank) == r:
        raise RuntimeError(INJECTED)
    if a.get("die_rank") is not None and int(a.die_rank) == r:
        log.close()
        sys.stderr.flush()
        os._exit(9)

    # --- all-reduce -------------------------------------------------------------------------------
    tri = W * (W + 1) / 2  # sum over ranks of (rank + 1)
    n_large = max(70_001, 2 * int(a.dim) + 1)  # larger than any backend's collective slot
    t = torch.full((5,), float(r + 1), device=dev)
    comm.allreduce(t, "sum")
    c.expect(_equal(t, torch.full((5,), tri, device=dev)), "allreduce_sum", f"float32 sum {t.tolist()}, expected {tri}")
    t64 = torch.arange(7, dtype=torch.float64, device=dev) * (r + 1)
    comm.allreduce(t64)  # the default op is sum
    c.expect(_equal(t64, torch.arange(7, dtype=torch.float64, device=dev) * tri), "allreduce_sum",
             f"float64 sum {t64.tolist()}")
    # float64 values float32 cannot hold (1 + 2^-40 rounds to 1): the collective must carry all 53 bits
    fine = torch.full((9,), 1.0 + 2.0 ** -40, dtype=torch.float64, device=dev)
    t64 = fine * (r + 1)
    comm.allreduce(t64, "sum")
    c.expect(_equal(t64, fine * tri), "allreduce_sum", f"float64 sum {t64.tolist()}, expected {(fine * tri).tolist()}")
    ramp = 1.0 + torch.arange(n_large, dtype=torch.float64, device=dev) * 2.0 ** -40  # exact in float64, not in float32
    big64 = ramp * (r + 1)
    comm.allreduce(big64, "sum")
    c.expect(_equal(big64, ramp * tri), "allreduce_sum",
             f"{n_large} float64 elements: first {big64[:3].tolist()}")
    t2 = torch.full((3, 4), float(r), device=dev)
    comm.allreduce(t2, "sum")
    c.expect(_equal(t2, torch.full((3, 4), (W - 1) * W / 2, device=dev)), "allreduce_sum", f"2-d sum {t2.tolist()}")
    c.ok("allreduce_sum")
    t = torch.full((3,), float(r + 1), device=dev)
    comm.allreduce(t, "mean")
    c.expect(bool(torch.allclose(t, torch.full((3,), (W + 1) / 2, device=dev))), "allreduce_mean", f"mean {t.tolist()}")
    c.ok("allreduce_mean")
    big = torch.arange(n_large, dtype=torch.float32, device=dev) * (r + 1)
    comm.allreduce(big, "sum")
    c.expect(_equal(big, torch.arange(n_large, dtype=torch.float32, device=dev) * tri), "allreduce_large",
             f"{n_large} elements: first {big[:3].tolist()}, last {big[-1].item()}")
    c.ok("allreduce_large")

    # --- broadcast --------------------------------------------------------------------------------
    t = torch.full((6,), float(r), device=dev)
    comm.broadcast(t, root=0)
    c.expect(_equal(t, torch.zeros(6, device=dev)), "broadcast_root0", f"{t.tolist()}")
    c.ok("broadcast_root0")
    t = torch.full((2, 3), float(r) + 0.5, device=dev)
    comm.broadcast(t, root=W - 1)
    c.expect(_equal(t, torch.full((2, 3), W - 0.5, device=dev)), "broadcast_rootlast", f"{t.tolist()}")
    c.ok("broadcast_rootlast")
    big = torch.arange(n_large, dtype=torch.float32, device=dev) + r
    comm.broadcast(big, root=W - 1)
    c.expect(_equal(big, torch.arange(n_large, dtype=torch.float32, device=dev) + (W - 1)), "broadcast_large",
             f"first {big[:3].tolist()}")
    fine = torch.full((5,), 1.0 + 2.0 ** -40, dtype=torch.float64, device=dev) * (r + 1)
    comm.broadcast(fine, root=W - 1)
    want = torch.full((5,), 1.0 + 2.0 ** -40, dtype=torch.float64, device=dev) * W
    c.expect(_equal(fine, want), "broadcast_large", f"float64 {fine.tolist()}, expected {want.tolist()}")
    c.ok("broadcast_large")

    # --- point to point ---------------------------------------------------------------------------
    if W > 1:
        nxt, prv = (r + 1) % W, (r - 1) % W
        small = torch.full((4,), 100.0 + r, device=dev)
        large = torch.full((n_large,), float(r), device=dev)
        comm.send(small, nxt, tag=8)
        comm.send(large, nxt, tag=7)
        small.fill_(-1.0)  # after the send: the receiver must see the values at the time of the call
        large.fill_(-1.0)
        got = torch.empty(n_large, device=dev)
        src = comm.recv(got, prv, tag=7)  # tag 7 first, although tag 8 was sent first
        c.expect(src == prv and _equal(got, torch.full((n_large,), float(prv), device=dev)), "sendrecv_ring",
                 f"tag 7 from {src} (expected {prv}): {got[:3].tolist()}")
        got = torch.empty(4, device=dev)
        src = comm.recv(got, None, tag=8)
        c.expect(src == prv and _equal(got, torch.full((4,), 100.0 + prv, device=dev)), "sendrecv_ring",
                 f"tag 8 from {src} (expected {prv}): {got.tolist()}")
        c.ok("sendrecv_ring")
        comm.barrier()
        if r != 0:
            comm.send(torch.full((3,), 10.0 * r, device=dev), 0, tag=9)
        else:
            seen = set()
            for _ in range(W - 1):
                got = torch.empty(3, device=dev)
                src = comm.recv(got, None, tag=9)
                c.expect(_equal(got, torch.full((3,), 10.0 * src, device=dev)), "recv_any_source",
                         f"from {src}: {got.tolist()}")
                seen.add(src)
            c.expect(seen == set(range(1, W)), "recv_any_source", f"senders {sorted(seen)}")
        c.ok("recv_any_source")
        comm.barrier()
    else:
        c.skip("sendrecv_ring")
        c.skip("recv_any_source")

    _check_ps(ctx, c, is_server)


def _check_ps(ctx, c: _Checker, is_server: bool) -> None:
    comm, a, dev = ctx.comm, ctx.cfg.algo, ctx.device
    r = comm.rank
    dim, n, m = int(a.dim), int(a.pushes), int(a.push_pulls)
    total = (n + m) * comm.n_workers
    # Only rank 0's x0 counts: the other ranks pass something else.
    comm.ps_init(torch.zeros(dim, device=dev) if r == 0 else torch.full((dim,), 1000.0 + r, device=dev))
    if r == 0:
        buf = torch.full((dim,), -1.0, device=dev)
        v = comm.pull(buf, consistent=True)
        c.expect(v == 0 and comm.ps_version() == 0 and _equal(buf, torch.zeros(dim, device=dev)), "ps_init",
                 f"version {v}, x {buf[:3].tolist()}")
    comm.barrier()  # rank 0 has read x0 before anyone pushes
    c.ok("ps_init")

    if is_server:
        state = {"version": 0, "applied": 0}

        def on_apply(version: int, x: torch.Tensor, staleness: int) -> None:
            c.expect(version == state["version"] + 1, "ps_push", f"on_apply version {version} after {state['version']}")
            c.expect(0 <= staleness < version, "ps_push", f"staleness {staleness} at version {version}")
            c.expect(x[0].item() == version and bool((x == x[0]).all()), "ps_consistent_pull",
                     f"x after update {version}: {x[:3].tolist()}")
            state["version"] = version
            state["applied"] += 1

        comm.serve(on_apply)
        c.expect(state["applied"] == total, "ps_push", f"{state['applied']} updates applied, expected {total}")
        for name in ("ps_push", "ps_consistent_pull", "ps_push_pull"):
            c.ok(name)
        c.skip("ps_inconsistent_pull")
    else:
        buf = torch.empty(dim, device=dev)
        ones = torch.ones(dim, device=dev)
        v = 0
        for _ in range(n):
            v = comm.pull(buf, consistent=True)
            c.expect(0 <= v <= total, "ps_push", f"pull version {v}")
            c.expect(bool((buf == buf[0]).all()), "ps_consistent_pull",
                     f"torn vector at version {v}: min {buf.min().item()} max {buf.max().item()}")
            c.expect(buf[0].item() == v, "ps_consistent_pull", f"x = {buf[0].item()} but pull returned version {v}")
            st = comm.push(ones, v, consistent=True)
            if comm.has_server:
                c.expect(st is None, "ps_push", f"push returned {st!r} (a server reports staleness to on_apply)")
            else:
                c.expect(isinstance(st, int) and 0 <= st < total, "ps_push", f"staleness {st!r}")
        pv = comm.ps_version()
        # Shared memory applies a push before it returns; a server may apply it a little later.
        least = v if comm.has_server else v + 1
        c.expect(pv >= least, "ps_push", f"ps_version {pv} after pushing on version {v}; expected >= {least}")
        c.ok("ps_push")
        c.ok("ps_consistent_pull")
        for _ in range(m):
            st, v2 = comm.push_pull(ones, v, buf)
            c.expect(0 <= st and v2 >= v + 1 and st <= v2 - 1 - v, "ps_push_pull",
                     f"(staleness {st}, version {v2}) after reading version {v}")
            c.expect(bool((buf == v2).all()), "ps_push_pull", f"x {buf[:3].tolist()} at version {v2}")
            v = v2
        c.ok("ps_push_pull")
        if comm.shared_memory:
            vi = comm.pull(buf, consistent=False)
            c.expect(0 <= vi <= total and bool(((buf >= 0) & (buf <= total)).all()), "ps_inconsistent_pull",
                     f"version {vi}, x in [{buf.min().item()}, {buf.max().item()}]")
            c.ok("ps_inconsistent_pull")
        else:
            c.skip("ps_inconsistent_pull")
        comm.ps_done()
    comm.barrier()
    if r == 0:
        buf = torch.empty(dim, device=dev)
        v = comm.pull(buf, consistent=True)
        want = torch.full((dim,), float(total), device=dev)
        c.expect(v == total and comm.ps_version() == total and _equal(buf, want), "ps_final",
                 f"version {v}, x {buf[:3].tolist()}, expected {total} everywhere")
    comm.barrier()  # nobody leaves before rank 0 has checked
    c.ok("ps_final")


SPEC = AlgoSpec(FAMILIES, run, validate=validate, check=check)
