"""Staging: device tensors through reusable buffers where a communication path needs its own memory.

Algorithms hand the backends tensors on ``ctx.device`` (a GPU, or the CPU). Not every path can work on
them in place: the thread and process backends keep x, the counters and the collective slots in host
(shared) memory; MPI without CUDA support and gloo read and write host memory only; NCCL reads and
writes GPU memory only. A :class:`Staging` owns, per call site (``slot``), one flat buffer on the path's
own device (``home``), grown to the largest tensor seen and then reused: a step of an algorithm copies
into and out of the same memory every time instead of allocating. A tensor already on ``home`` and
contiguous is used in place: no copy, so every CPU run takes the same code path as a GPU run and keeps
its bits.

Host buffers for GPU tensors are pinned (page-locked): a copy from or to pinned memory is one DMA,
without the driver's own bounce buffer.

The copies are blocking (``copy_`` without ``non_blocking``): a device-to-host copy returns once the
host buffer holds the values, so a library may read it at once; a host-to-device copy returns once the
host buffer has been read, so the buffer may be overwritten at once.
"""

from __future__ import annotations

import torch


class Staging:
    """Reusable flat buffers on ``home`` for tensors that are elsewhere (or not contiguous).

    ``always`` stages every tensor, even one that could be used in place: it lets a CPU-only machine
    run the copy-in / copy-back code that a GPU run takes (tests)."""

    def __init__(self, home: torch.device | str = "cpu", always: bool = False):
        self.home = torch.device(home)
        self.always = bool(always)
        self._bufs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def in_place(self, t: torch.Tensor) -> bool:
        """Whether ``t`` itself can be handed to the path (on ``home``, contiguous)."""
        return not self.always and t.device == self.home and t.is_contiguous()

    def buffer(self, slot: str, numel: int, dtype: torch.dtype, pin: bool = False) -> torch.Tensor:
        """The slot's buffer for ``numel`` elements of ``dtype`` on ``home`` (its first ``numel``; the values
        are whatever the last use left)."""
        key = (slot, dtype)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < numel:
            pin = pin and self.home.type == "cpu"
            buf = torch.empty(max(1, numel), dtype=dtype, device=self.home, pin_memory=pin)
            self._bufs[key] = buf
        return buf[:numel]

    def _pin(self, t: torch.Tensor) -> bool:
        return t.device.type == "cuda"

    def to_home(self, t: torch.Tensor, slot: str) -> torch.Tensor:
        """``t``'s values, flat, on ``home``: ``t``'s own memory when :meth:`in_place`, else a copy in the
        slot's buffer."""
        t = t.detach()
        if self.in_place(t):
            return t.view(-1)
        buf = self.buffer(slot, t.numel(), t.dtype, self._pin(t))
        buf.view(t.shape).copy_(t)
        return buf

    def home_for(self, t: torch.Tensor, slot: str) -> torch.Tensor:
        """A flat buffer on ``home`` that receives values for ``t`` (hand it to :meth:`back` after):
        ``t``'s own memory when :meth:`in_place`, else the slot's buffer (its values undefined)."""
        t = t.detach()
        if self.in_place(t):
            return t.view(-1)
        return self.buffer(slot, t.numel(), t.dtype, self._pin(t))

    @staticmethod
    def back(t: torch.Tensor, buf: torch.Tensor) -> None:
        """Copy ``buf`` (from :meth:`to_home` or :meth:`home_for`) into ``t``, unless it is ``t``'s memory."""
        if buf.device == t.device and buf.data_ptr() == t.data_ptr() and t.is_contiguous():
            return
        with torch.no_grad():
            t.copy_(buf.view(t.shape))

    def fresh(self, t: torch.Tensor) -> torch.Tensor:
        """A new flat copy of ``t`` on ``home`` that nothing else writes: a message that outlives the call
        (a buffered send) must not share a reused buffer."""
        return t.detach().reshape(-1).to(self.home, copy=True).contiguous()
