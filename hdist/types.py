"""The few protocols every part of hdist meets in.

Algorithms are written against :class:`RankCtx` and :class:`Comm`; backends implement
:class:`Comm` and :class:`Backend`. Neither side imports the other: an algorithm is looked up
by name in :mod:`hdist.algos`, a backend in :mod:`hdist.backends`, and :mod:`hdist.launch`
hands the one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch


class ConfigError(ValueError):
    """Bad user input, found before anything runs: one line, exit code 2, nothing written."""


class Diverged(RuntimeError):
    """The loss became NaN or inf: the run ends with status ``diverged`` (a result, not a crash)."""


@runtime_checkable
class Comm(Protocol):
    """Communication between the ranks of one run.

    Tensors are flat ``torch.Tensor`` buffers. Every call is blocking unless its name says
    otherwise; blocking receives carry a timeout so that a dead peer ends the run instead of
    hanging it.
    """

    rank: int
    world_size: int

    def barrier(self) -> None: ...

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> None:
        """In place: every rank ends with ``root``'s values."""

    def allreduce(self, tensor: torch.Tensor, op: str = "sum") -> None:
        """In place: ``op`` is ``sum`` or ``mean`` over ranks."""

    def send(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> None: ...

    def recv(self, tensor: torch.Tensor, src: int | None = None, tag: int = 0) -> int:
        """Fill ``tensor`` from ``src`` (any rank when None); return the sender's rank."""

    def pull(self, out: torch.Tensor) -> int:
        """Copy the shared / server parameters into ``out``; return their version."""

    def push(self, update: torch.Tensor, version: int) -> int:
        """Hand an update computed at ``version`` to the server; return the version after it."""


@dataclass
class RankCtx:
    """What one rank of a run sees: who it is, how to talk, where to log, and its config."""

    cfg: Any  # the resolved run config (an OmegaConf DictConfig)
    rank: int
    world_size: int
    comm: Comm
    log: Any  # hdist.metrics.MetricsLogger
    run_dir: Path
    role: str = "worker"  # worker | server | stage
    progress: Any = None  # hdist.progress.Progress or None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extra: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """Every rank's seed derives from (run seed, rank): reproducible and distinct."""
        return int(self.cfg.seed) * 1_000_003 + self.rank


class Algorithm(Protocol):
    """One paper algorithm: ``run`` executes one rank's part of it."""

    name: str
    families: tuple[str, ...]  # serial | ps | shared | collective | pipeline

    def run(self, ctx: RankCtx) -> None: ...


class Backend(Protocol):
    """Starts the ranks of a run and waits for them."""

    name: str
    families: tuple[str, ...]

    def launch(self, run_dir: Path, cfg: Any, rank_fn: Callable[[RankCtx], None]) -> None: ...
