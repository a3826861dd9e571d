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
    return torch.randperm(n, generator=gen, device="cpu")


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Mini-batches per epoch; the last one may be smaller."""
    return max(1, math.ceil(n / batch_size))


class Sampler:
    """The sample order of every training loop: step s -> the indices of its mini-batch.

    Each epoch is a fresh permutation of the ``n`` samples (:func:`epoch_order`), cut into
    ``steps_per_epoch(n, batch_size)`` mini-batches; the last one may be smaller. An epoch's
    permutation is drawn from ``gen`` when one of its steps is first asked for, so draws that
    the loop makes from the same generator in between (augmentation) come in the same order as
    in a loop that draws each epoch's order at the epoch's start. ``lookback``: steps before the
    newest that may still be asked for (a pipeline's delayed gradients, its probes).
    """

    def __init__(self, n: int, batch_size: int, gen: torch.Generator, lookback: int = 0):
        self.n, self.b, self.gen = int(n), int(batch_size), gen
        self.spe = steps_per_epoch(self.n, self.b)
        self._orders: dict[int, torch.Tensor] = {}
        self._next_epoch = 0
        self._keep = 2 + int(lookback) // self.spe  # epoch orders kept

    def indices(self, s: int) -> torch.Tensor:
        e, i = divmod(int(s), self.spe)
        while self._next_epoch <= e:
            self._orders[self._next_epoch] = epoch_order(self.n, self.gen)
            self._next_epoch += 1
            for old in [k for k in self._orders if k < self._next_epoch - self._keep]:
                del self._orders[old]
        return self._orders[e][i * self.b:(i + 1) * self.b]


def total_steps(cfg, n: int) -> int:
    spe = steps_per_epoch(n, cfg.algo.batch_size)
    steps = math.ceil(float(cfg.scale.epochs) * spe)
    max_steps = cfg.algo.get("max_steps")
    return min(steps, int(max_steps)) if max_steps else steps


def check_finite(loss: float, where: str) -> None:
    if not math.isfinite(loss):
        raise Diverged(f"loss became {loss} at {where}")


def measure(problem, model, train_split, max_samples) -> dict[str, float]:
    """The evaluation of every loop: loss (and error, for classifiers) of ``model`` on the training
    split and, when there is one, the test split; at most ``max_samples`` samples of each."""
    tr = problem.evaluate(model, train_split, max_samples)
    out = {"train_loss_full": tr["loss"]}
    if "error" in tr:
        out["train_error"] = tr["error"]
    if len(problem.data.test):
        te = problem.evaluate(model, problem.data.test, max_samples)
        out["test_loss"] = te["loss"]
        if "error" in te:
            out["test_error"] = te["error"]
    return out


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

    def recalibrate(self, model, train_split) -> None:
        """BatchNorm running statistics for the weights being evaluated, first evaluation included: at step 0
        they are the initial mean 0 / variance 1, which through ResNet-56's 27 blocks gave a first test loss
        near 1000; later they are a moving average over past weights. Every algorithm evaluated here gets
        them re-estimated on ``log.bn_samples`` training samples (Problem.recalibrate_bn). The training
        trajectory does not change: training-mode BatchNorm uses batch statistics, and the global RNG
        (dropout in the forward passes) is restored afterwards."""
        cfg = self.ctx.cfg
        with torch.random.fork_rng(devices=[]):
            self.problem.recalibrate_bn(model, train_split, int(cfg.log.bn_samples),
                                        int(cfg.algo.get("batch_size") or 128), cfg.seed)

    def due(self, step: int) -> bool:
        return step == 0 or step == self.total or (self.every is not None and step % self.every == 0)

    def __call__(self, model, train_split) -> dict[str, float]:
        log = self.ctx.log
        t0 = time.perf_counter()
        wall = log.wall_s()
        self.recalibrate(model, train_split)
        out = measure(self.problem, model, train_split, self.max_samples)
        for k, v in out.items():
            log.log("eval", k, v, wall_s=wall)
        dt = time.perf_counter() - t0
        log.paused_s += dt
        log.log("eval", "eval_s", dt, wall_s=wall)
        log.maybe_flush()
        check_finite(out["train_loss_full"], f"evaluation at step {log.step}")
        return out
