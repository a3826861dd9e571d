"""Mixed precision, ``algo.precision: fp32 | bf16 | fp16`` (the runtime's, like the clock).

- ``fp32`` (the default, every paper's setting): nothing changes; no autocast is entered, so every CPU
  result keeps its bits.
- ``bf16`` / ``fp16``: every compute block of a rank (``with comm.compute(...)``,
  :class:`hdist.runtime.TimedComm`) runs under :func:`torch.autocast` on the rank's device type, so each
  algorithm's forward passes run their matrix products and convolutions in the low precision while the
  parameters stay float32 (autocast's own op lists decide which ops; losses and reductions stay float32).
  Evaluation runs outside compute blocks: in float32. The weight cache of autocast is off, because a
  block may update the weights in place and run another forward (a pass of many steps), and a cached
  low-precision copy would then be stale.
- ``fp16``: its narrow range lets small gradients underflow to zero, so the gradient is taken of
  ``loss * S`` with a dynamic loss scale S (:class:`LossScaler`, torch.amp.GradScaler's rule) and divided
  by S; a gradient with an inf or a nan is replaced by zeros (the step is skipped) and S halves.
  :meth:`hdist.algos._ps.FlatModel.grad` applies it, so only algorithms whose gradients all go through it
  declare fp16 (:attr:`hdist.types.AlgoSpec.precisions`); ``hdist.config.validate`` refuses the others.

Which precisions an algorithm supports is declared beside its code (``AlgoSpec.precisions``, default fp32
only): an algorithm that has not been run in bf16 does not silently ignore the knob.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

import torch

from hdist.types import PRECISIONS

#: the autocast dtype of each low precision
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# The loss scaler of the compute block running now (fp16 only). A context variable, not a global: the
# thread backend runs ranks as threads and the sim as greenlets, each with its own context.
_SCALER: contextvars.ContextVar[LossScaler | None] = contextvars.ContextVar("hdist_loss_scaler", default=None)


class LossScaler:
    """fp16's dynamic loss scale, with torch.amp.GradScaler's defaults: S starts at 2**16, doubles after
    2000 steps in a row without an inf or nan, halves at one. S and its counter stay on the device and are
    updated by torch's own kernel (``torch._amp_update_scale_``, what GradScaler calls), so no step waits
    for the host to read them."""

    def __init__(self, device: torch.device, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000):
        self.scale = torch.full((), init_scale, dtype=torch.float32, device=device)
        self.growth_tracker = torch.zeros((), dtype=torch.int32, device=device)
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)  # steps zeroed for an inf or nan
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval

    def seed(self, loss: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """The backward pass's seed: S (times the caller's ``scale``), in the loss's dtype."""
        s = self.scale if scale is None else self.scale * scale
        return s.to(dtype=loss.dtype, device=loss.device)

    def unscale_(self, g: torch.Tensor) -> torch.Tensor:
        """``g / S`` in place, or zeros where ``g`` holds an inf or a nan (that step is skipped); then S is
        updated. Returns ``g``."""
        g.div_(self.scale.to(g.dtype))
        found_inf = torch.logical_not(torch.isfinite(g).all())
        g.masked_fill_(found_inf, 0.0)
        self.skipped.add_(found_inf)
        torch._amp_update_scale_(self.scale, self.growth_tracker, found_inf.to(torch.float32),
                                 self.growth_factor, self.backoff_factor, self.growth_interval)
        return g


class Precision:
    """A rank's low precision (bf16 or fp16) on its device: :meth:`region` around a compute block."""

    def __init__(self, name: str, device: torch.device | None):
        if name not in DTYPES:
            raise ValueError(f"Precision: {name!r} is not a low precision; expected one of {', '.join(DTYPES)}")
        self.name, self.dtype = name, DTYPES[name]
        device = torch.device("cpu") if device is None else device
        self.device_type = device.type
        self.scaler = LossScaler(device) if name == "fp16" else None

    @contextmanager
    def region(self):
        """A compute block: autocast on, and fp16's loss scaler the one :func:`loss_scaler` returns."""
        token = _SCALER.set(self.scaler)
        try:
            with torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False):
                yield
        finally:
            _SCALER.reset(token)

    @contextmanager
    def paused(self):
        """Autocast off around a call that may hand the thread to another rank (the sim's ranks are
        greenlets of one thread, and autocast's state belongs to the thread): the other rank must not run
        in this rank's autocast, and this rank's state comes back when the call returns."""
        with torch.autocast(self.device_type, enabled=False):
            yield


def make(name: str | None, device: torch.device | None) -> Precision | None:
    """The rank's :class:`Precision` for ``algo.precision`` (None for fp32: nothing to do)."""
    name = "fp32" if name is None else str(name)
    if name not in PRECISIONS:
        raise ValueError(f"algo.precision={name!r}: expected one of {', '.join(PRECISIONS)}")
    return None if name == "fp32" else Precision(name, device)


def loss_scaler() -> LossScaler | None:
    """The loss scaler of the fp16 compute block running now; None in fp32, bf16 or outside a block."""
    return _SCALER.get()
