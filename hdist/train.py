"""Pieces every training loop shares: sample order, the evaluation schedule, divergence.

Kept small and allocation-free on the hot path: a step costs one index slice and one gather.
"""

from __future__ import annotations

import math
import time

import torch

from hdist.types import Diverged


def epoch_order(n: int, gen: torch.Generator) -> torch.Tensor:
    """A fresh permutation of the rank's samples for one epoch (sampling without replacement)."""
    return torch.randperm(n, generator=gen)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Mini-batches per epoch; the last one may be smaller."""
    return max(1, math.ceil(n / batch_size))


def total_steps(cfg, n: int) -> int:
    spe = steps_per_epoch(n, cfg.algo.batch_size)
    steps = math.ceil(float(cfg.scale.epochs) * spe)
    max_steps = cfg.algo.get("max_steps")
    return min(steps, int(max_steps)) if max_steps else steps


def check_finite(loss: float, where: str) -> None:
    if not math.isfinite(loss):
        raise Diverged(f"loss became {loss} at {where}")


class Evaluator:
    """Evaluates train and test loss/error at step 0, ``evals_per_epoch`` times an epoch and at the end.

    The time it takes is logged as ``eval_s`` and excluded from ``wall_s``, so that time-based
    curves show training time only.
    """

    def __init__(self, ctx, problem, steps_per_epoch: int, total: int):
        self.ctx, self.problem, self.total = ctx, problem, total
        per = float(ctx.cfg.log.evals_per_epoch)
        self.every = max(1, round(steps_per_epoch / per)) if per > 0 else None
        self.max_samples = ctx.cfg.log.eval_max_samples
        self.test = problem.data.test

    def due(self, step: int) -> bool:
        return step == 0 or step == self.total or (self.every is not None and step % self.every == 0)

    def __call__(self, model, train_split) -> dict[str, float]:
        log = self.ctx.log
        t0 = time.perf_counter()
        wall = log.wall_s()
        tr = self.problem.evaluate(model, train_split, self.max_samples)
        out = {"train_loss_full": tr["loss"]}
        if "error" in tr:
            out["train_error"] = tr["error"]
        if len(self.test):
            te = self.problem.evaluate(model, self.test, self.max_samples)
            out["test_loss"] = te["loss"]
            if "error" in te:
                out["test_error"] = te["error"]
        for k, v in out.items():
            log.log("eval", k, v, wall_s=wall)
        dt = time.perf_counter() - t0
        log.paused_s += dt
        log.log("eval", "eval_s", dt, wall_s=wall)
        log.maybe_flush()
        check_finite(out["train_loss_full"], f"evaluation at step {log.step}")
        return out
