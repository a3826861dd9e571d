"""Mini-batch SGD, serial: the tuned baseline of huo17 (section "Experiments", SGD).

    for s = 0, 1, ...:                       # epochs
        eta_s = alpha / (1 + s)^beta         # polynomial learning rate (constant when beta = 0)
        for each mini-batch I_t of size b:   # sampled without replacement
            x <- x - eta_s * grad f_{I_t}(x)

Symbols -> config: alpha = ``algo.lr``, beta = ``algo.beta`` (with ``algo.schedule: poly``),
b = ``algo.batch_size``, the l2 weight C of the objective = ``objective.l2`` (applied as the
exact gradient C*x through the optimizer's weight decay), s = the epoch number.
"""

from __future__ import annotations

import torch

from hdist.problems import build_problem
from hdist.schedules import lr_at
from hdist.train import Evaluator, Sampler, check_finite, steps_per_epoch, total_steps
from hdist.types import AlgoSpec

FAMILIES = ("serial",)
MAX_WORKERS = 1  # one rank: parallel variants are their own algorithms


def run(ctx) -> None:
    cfg, log, comm = ctx.cfg, ctx.log, ctx.comm
    problem = build_problem(cfg, ctx.device)
    model = problem.build_model(ctx.seed)
    ctx.extra["model"] = model
    train = problem.data.train
    b = int(cfg.algo.batch_size)
    spe = steps_per_epoch(len(train), b)
    total = total_steps(cfg, len(train))
    # The sample order and augmentation draws come from the host: the same bits on every device.
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
    order = Sampler(len(train), b, gen)
    opt = torch.optim.SGD(model.parameters(), lr=lr_at(cfg.algo, 0), momentum=float(cfg.algo.momentum),
                          weight_decay=problem.l2)
    evaluate = Evaluator(ctx, problem, spe, total)
    train_every = int(cfg.log.train_every)
    ctx.progress.start(total)
    evaluate(model, train)
    step = 0
    while step < total:
        epoch_idx = step // spe
        lr = lr_at(cfg.algo, epoch_idx)
        for group in opt.param_groups:
            group["lr"] = lr
        log.log("train", "lr", lr)
        for _ in range(min(spe, total - step)):
            x, y = train[order.indices(step)]
            if problem.has_transform:
                x = problem.train_batch(x, gen)
            with comm.compute(x.shape[0]):
                opt.zero_grad(set_to_none=True)
                loss = problem.data_loss(model(x), y)
                loss.backward()
                logging = (step + 1) % train_every == 0
                # The logged objective is at the parameters the gradient was taken at: the
                # regulariser is read before the update.
                reg = problem.reg_value(model) if logging and problem.l2 else 0.0
                opt.step()
            step += 1
            log.step = log.updates = step
            log.samples += x.shape[0]
            log.epoch = step / spe
            if logging:
                value = loss.item() + reg
                check_finite(value, f"step {step}")
                log.log("train", "train_loss", value)
                ctx.progress.update(step, value, log.epoch)
            if evaluate.due(step):
                evaluate(model, train)
    comm.log_straggle_total()


SPEC = AlgoSpec(FAMILIES, run, max_workers=MAX_WORKERS, precisions=("fp32", "bf16"))
