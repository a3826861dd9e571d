"""Data-parallel large-batch training with mNAG, LARS or CLARS (thesis ch. 4, Algorithm 8) or SGD.

One synchronous step, on every worker w of P, in Algorithm 8's order:

    for t = 0, 1, ..., T-1:
        I_t <- the next B samples of the epoch's order (drawn from seed_for(seed, 0): the same
               on every rank), cut into P*A micro-batches; worker w takes micro-batches a*P + w
        for a = 1..A:                                        # gradient accumulation
            g_w += (|micro| / |I_t|) grad f_micro(w_t)        # line 3: large-batch gradient
        [CLARS] s_w,k = sum_{j in J_w} ||grad_k f_j(w_t)||    # line 4: per-sample norms, J: the
               first ceil(|J| / (P*A)) samples of each micro-batch (all of them: |J| = null)
        allreduce_sum([g_w, s_w, |J_w|, loss_w])              # one collective per step
        gamma_k <- eq. (4.2) mNAG | (4.3) LARS | (4.7) CLARS  # line 5 (hdist.optim)
        w_{t+1}, v_{t+1} <- eq. (4.6)                        # line 6: the same on every rank

Symbols -> config: B = ``algo.batch_size`` (micro-batch b) x ``algo.accum_steps`` (A) x
``topology.workers`` (P); gamma_scale = ``algo.lr`` (gamma_base) x B / ``algo.base_batch``
(B_base; null = no scaling), times the schedule's factor (``algo.schedule``: warmup, poly_decay,
step; :mod:`hdist.schedules`) at the fractional epoch; eta = ``algo.eta``; beta =
``algo.momentum``; |J| = ``algo.subsample``; the rule = ``algo.rule`` (sgd | mnag | lars |
clars); the weight decay wd = ``objective.l2``: the step's gradient is g + wd w, LARS's
denominator ||g_k + wd w_k|| and CLARS's (1/|J|) sum_j ||grad_k f_j + wd w_k|| (hdist uses
||g + wd w||, not You et al.'s ||g_k|| + wd ||w_k||; :mod:`hdist.optim.clars`); a layer k = one
parameter tensor, ``algo.layer_params`` says which get the layer-wise rate. Thesis fig. 9:
``algo.probe_layer`` / ``algo.probe_lr`` give one top-level layer its own rate.

Every rank starts from the same weights (the init of seed_for(seed, 0)) and applies the same
all-reduced update, so replicas stay identical; with P workers and A accumulation steps the
step equals the serial step with P*A accumulation steps (same B, same samples). BatchNorm
running statistics are per rank; they are averaged over the ranks before each evaluation.
Rank 0 logs the training rows, evaluates (:class:`hdist.train.Evaluator`), and every
``log.layer_every`` steps logs ``layer_lr/<tensor>`` (gamma_k) and ``m_k/<tensor>`` (the
variance factor of thesis 4.4.3 on the first ``log.m_k_samples`` training samples; its time is
excluded from ``wall_s`` like evaluation).

``algo.budget_gflop`` caps the training compute of a big model run at full size (the CPU headline,
``hdist run algo=clars model=resnet50``, is resized by :mod:`hdist.demo` instead): forward FLOPs of
one sample are counted once (torch's FlopCounterMode), a step costs 3 x that x (B + 8 |J|), and the
run stops after budget / cost steps (evaluations then use at most a quarter of the samples the
budget trains on, per split). Experiments set it to null.
"""

from __future__ import annotations

import math
import time

import torch

from hdist.devices import synchronize
from hdist.optim import CLARS, LARS, MNAG, SampleGradStats, layer_param_groups, named_rates
from hdist.problems import build_problem
from hdist.rules import finite_pos, int_at_least, one_of, opt
from hdist.schedules import lr_at
from hdist.train import Evaluator, Sampler, check_finite, steps_per_epoch
from hdist.types import AlgoSpec, ConfigError, seed_for

FAMILIES = ("serial", "collective")

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.rule": (one_of("sgd", "mnag", "lars", "clars"), "sgd, mnag, lars or clars"),
    "algo.accum_steps": (int_at_least(1), "an integer >= 1 (micro-batches per step)"),
    "algo.base_batch": (opt(int_at_least(1)), "null or an integer >= 1 (B_base of linear lr scaling)"),
    "algo.eta": (finite_pos, "a finite number > 0 (LARS/CLARS trust coefficient)"),
    "algo.probe_layer": (opt(int_at_least(0)), "null or a layer index >= 0"),
    "algo.probe_lr": (opt(finite_pos), "null or a finite number > 0"),
    "algo.budget_gflop": (opt(finite_pos), "null or a finite number > 0 (GFLOP)"),
}
RULES = ("sgd", "mnag", "lars", "clars")
PER_SAMPLE_COST = 8.0  # a per-sample gradient (vmap) costs ~8 batched ones (measured: ResNet-50, CPU); budget only


def validate(cfg) -> None:
    a = cfg.algo
    if (a.get("probe_layer") is None) != (a.get("probe_lr") is None):
        raise ConfigError(f"algo.probe_layer={a.get('probe_layer')}, algo.probe_lr={a.get('probe_lr')}: "
                          f"set both (thesis fig. 9 probe) or neither")


def check_problem(cfg, problem) -> None:
    """The optimizer on the run's model (probe_layer within its layers): refused in the parent, not in the ranks."""
    make_optimizer(cfg, problem.build_model(seed_for(cfg.seed, 0)), problem.l2)


def batch_size(cfg, n_workers: int) -> int:
    """B = micro-batch x accumulation steps x workers."""
    return int(cfg.algo.batch_size) * int(cfg.algo.get("accum_steps") or 1) * int(n_workers)


def gamma_scale(cfg, B: int) -> float:
    """gamma_base x B / B_base (linear scaling); gamma_base when ``algo.base_batch`` is null."""
    base = cfg.algo.get("base_batch")
    return float(cfg.algo.lr) * (B / float(base) if base else 1.0)


def make_optimizer(cfg, model, weight_decay: float) -> torch.optim.Optimizer:
    a = cfg.algo
    rule = a.get("rule", "mnag")
    probe_scale = float(a.probe_lr) / float(a.lr) if a.get("probe_lr") is not None else 1.0
    try:
        groups = layer_param_groups(model, a.get("layer_params", "all"), a.get("probe_layer"), probe_scale)
    except ValueError as e:
        raise ConfigError(f"algo.{e}") from None
    lr, beta = float(a.lr), float(a.get("momentum", 0.0))
    if rule == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=beta, weight_decay=weight_decay)
    if rule == "mnag":
        return MNAG(groups, lr=lr, momentum=beta, weight_decay=weight_decay)
    if rule == "lars":
        return LARS(groups, lr=lr, eta=float(a.eta), momentum=beta, weight_decay=weight_decay)
    if rule == "clars":
        return CLARS(groups, lr=lr, eta=float(a.eta), momentum=beta, weight_decay=weight_decay)
    raise ConfigError(f"algo.rule={rule}: not allowed; expected {', '.join(RULES)}")


def forward_flops(model, sample: torch.Tensor) -> float:
    """Forward FLOPs of one sample (eval mode: BatchNorm statistics are left alone)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(sample.unsqueeze(0))
    finally:
        model.train(was)
    return float(fc.get_total_flops())


def run(ctx) -> None:
    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    a = cfg.algo
    problem = build_problem(cfg, ctx.device)
    # Every rank starts from the serial run's initialisation: replicas are identical.
    model = problem.build_model(seed_for(cfg.seed, 0))
    ctx.extra["model"] = model
    train = problem.data.train
    P, w = int(comm.n_workers), int(comm.worker_index or 0)
    A = int(a.get("accum_steps") or 1)
    B = batch_size(cfg, P)
    n = len(train)
    spe = steps_per_epoch(n, B)
    total = max(1, math.ceil(float(cfg.scale.epochs) * spe))
    if a.get("max_steps"):
        total = min(total, int(a.max_steps))
    rule = a.get("rule", "mnag")
    sub = a.get("subsample")
    micros = P * A
    j_per = (max(1, math.ceil(int(sub) / micros)) if sub else None) if rule == "clars" else 0
    opt = make_optimizer(cfg, model, problem.l2)
    params = [p for g in opt.param_groups for p in g["params"]]
    # CLARS's per-sample gradients carry the weight decay the step's gradient carries (hdist.optim.clars)
    stats = SampleGradStats(model, problem.data_loss, params, weight_decay=problem.l2) if rule == "clars" else None

    evaluate = Evaluator(ctx, problem, spe, total)
    budget = a.get("budget_gflop")
    if budget:
        x0, _ = train[torch.arange(1, device="cpu")]
        flops = forward_flops(model, problem.eval_batch(x0)[0] if problem.has_transform else x0[0])
        j_total = micros * (j_per if j_per is not None else B // micros) if rule == "clars" else 0
        # a sample's forward + backward ~ 3 forwards; a per-sample gradient ~ PER_SAMPLE_COST of those
        allowed = max(1, int(float(budget) * 1e9 // (3 * flops * (B + PER_SAMPLE_COST * j_total))))
        if allowed < total:
            total = allowed
            evaluate.total = total
            cap = max(64, total * B // 4)
            evaluate.max_samples = min(int(evaluate.max_samples or cap), cap)
            if ctx.rank == 0:
                ctx.progress.message(f"[hdist] algo.budget_gflop={budget:g}: {total} steps of B={B} "
                                     f"({total / spe:.3g} epochs; {flops / 1e9:.3g} GFLOP per sample forward), "
                                     f"evaluations on <= {evaluate.max_samples} samples; "
                                     f"algo.budget_gflop=null runs scale.epochs={cfg.scale.epochs}")
    total_epochs = total / spe
    scale = gamma_scale(cfg, B)

    # Generators on the host: the same sample order and augmentation bits on every device.
    order = Sampler(n, B, torch.Generator(device="cpu").manual_seed(seed_for(cfg.seed, 0)))  # the same on every rank
    aug_gen = torch.Generator(device="cpu").manual_seed(ctx.worker_seed())  # augmentation draws: per worker
    train_every = int(cfg.log.train_every)
    layer_every = int(cfg.log.get("layer_every") or 0)
    mk_stats, mk_data = None, None
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    lead = ctx.rank == 0

    def sync_and_evaluate() -> None:
        if P > 1 and buffers:  # BatchNorm running statistics: the mean over ranks (every rank calls)
            flat = torch.cat([b.reshape(-1) for b in buffers])
            with comm.untimed():  # an evaluation's synchronisation is no step's communication
                comm.allreduce(flat, "mean")
            off = 0
            for b in buffers:
                b.copy_(flat[off:off + b.numel()].view_as(b))
                off += b.numel()
        if lead:
            evaluate(model, train)

    def log_layers() -> None:
        nonlocal mk_stats, mk_data
        synchronize(ctx.device)  # the step's queued work is training time, not this logging's
        t0 = time.perf_counter()
        for name, rate in named_rates(opt):
            log.log("train", f"layer_lr/{name}", rate)
        m = int(cfg.log.get("m_k_samples") or 0)
        if m > 1:
            if mk_stats is None:
                mk_stats = SampleGradStats(model, problem.data_loss, params)
                x, y = train[torch.arange(min(m, n), device="cpu")]
                mk_data = (problem.eval_batch(x) if problem.has_transform else x, y)
            for name, value in mk_stats.variance_factor(*mk_data).items():
                log.log("train", f"m_k/{name}", value)
        log.paused_s += time.perf_counter() - t0

    ctx.progress.start(total)
    synchronize(ctx.device)  # the model's copy to the device is no training time
    comm.barrier()
    log.t0 = time.perf_counter()
    comm.restart_timing()
    sync_and_evaluate()
    step = 0
    device = ctx.device
    norm_sums = torch.zeros(len(params), dtype=torch.float64, device=device)
    while step < total:
        for _ in range(min(spe, total - step)):
            comm.mark_step()
            batch = order.indices(step)
            n_t = batch.numel()
            pieces = torch.tensor_split(batch, micros)
            opt.zero_grad(set_to_none=False)
            norm_sums.zero_()
            # The mini-batch loss is summed on the device, in float64 as a Python float would: no sync per micro-batch.
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            j_count, own = 0, 0
            sub_x, sub_y = [], []
            for k in range(A):
                idx = pieces[k * P + w]
                if idx.numel() == 0:
                    continue
                with comm.compute(idx.numel()):
                    x, y = train[idx]
                    if problem.has_transform:
                        x = problem.train_batch(x, aug_gen)
                    loss = problem.data_loss(model(x), y)
                    (loss * (idx.numel() / n_t)).backward()
                    loss_sum += loss.detach().to(torch.float64) * idx.numel()
                own += idx.numel()
                if stats is not None:
                    sub_x.append(x if j_per is None else x[:j_per])
                    sub_y.append(y if j_per is None else y[:j_per])
            if sub_x:  # CLARS: one vmap call over this worker's part of J
                with comm.compute():
                    s = stats(torch.cat(sub_x), torch.cat(sub_y))
                    norm_sums += torch.stack(s["norm_sum"])
                    j_count = s["n"]
                    comm.compute_done(s["n"])
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            counts = torch.stack([torch.full((), j_count, dtype=torch.float64, device=device), loss_sum]).float()
            flat = torch.cat([g.reshape(-1) for g in grads] + [norm_sums.float(), counts])
            comm.allreduce(flat, "sum")
            off = 0
            for p, g in zip(params, grads):
                k = p.numel()
                if p.grad is None:
                    p.grad = g
                p.grad.copy_(flat[off:off + k].view_as(p))
                off += k
            epoch_f = step / spe
            base = lr_at(a, epoch_f, total_epochs) * (scale / float(a.lr))
            for g in opt.param_groups:
                g["lr"] = base * float(g.get("lr_scale", 1.0))
            if stats is not None:
                count = float(flat[-2])
                opt.step(sample_norms=list(flat[off:off + len(params)].double() / max(count, 1.0)))
            else:
                opt.step()
            step += 1
            value = float(flat[-1]) / n_t
            log.step = log.updates = step
            log.samples += own
            log.epoch = step / spe
            # The global mini-batch loss, the same on every rank: all ranks stop together on NaN.
            check_finite(value, f"step {step}")
            if step % train_every == 0:
                value += problem.reg_value(model) if problem.l2 else 0.0
                if lead:
                    log.log("train", "train_loss", value)
                    log.log("train", "lr", base)
                ctx.progress.update(step, value, log.epoch)
            if lead and layer_every and step % layer_every == 0:
                log_layers()
            if evaluate.due(step):
                sync_and_evaluate()
    synchronize(ctx.device)  # the queued steps finish before the clocks stop
    t = comm.timing()
    log.log_many("comm", {"compute_s": t["compute_s"], "comm_s": t["comm_s"], "updates_total": step})
    comm.log_straggle_total()
    comm.barrier()
    if lead:
        log.log("event", "train_s", comm.elapsed_s())


SPEC = AlgoSpec(FAMILIES, run, validate=validate, check_problem=check_problem, keys=KEYS, precisions=("fp32", "bf16"))
