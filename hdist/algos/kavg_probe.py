"""kavg_probe: the constants of kavg18's Theorem 3.4 at the initial point w~_1, logged as a run.

Not a training algorithm. Zhou and Cong, IJCAI 2018, Theorem 3.4 bounds K-AVG's average squared gradient norm by
B(K) (eq. 3.44) from L (the gradient's Lipschitz constant), M (the mini-batch gradient variance times B) and
F(w~_1) - F*. One serial rank builds w~_1 exactly as K-AVG does (the model seed of worker 0), runs
:func:`hdist.analysis.kavg_bound.probe` on the run's own problem and logs ``probe/L``, ``probe/M``,
``probe/F1``, ``probe/grad_norm_sq`` and the probe's sizes as ``event`` rows. The kavg18 K-sweep stems (figs 5, 6)
run it as one arm of their sweep, so that their figures and claims are pure functions of the results table.

Symbols -> config: B = ``algo.batch_size``; the probe's sizes ``algo.batches`` (mini-batch gradients behind M),
``algo.hvp_samples`` (samples in each Hessian-vector product) and ``algo.iters`` (power iterations behind L).
"""

from __future__ import annotations

from hdist.analysis import kavg_bound as kb
from hdist.problems import build_problem
from hdist.rules import int_at_least
from hdist.types import AlgoSpec, seed_for

FAMILIES = ("serial",)

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.batches": (int_at_least(2), "an integer >= 2 (mini-batch gradients of kavg_probe's variance)"),
    "algo.hvp_samples": (int_at_least(1), "an integer >= 1 (samples)"),
    "algo.iters": (int_at_least(1), "an integer >= 1 (power iterations)"),
}


def run(ctx) -> None:
    cfg, log = ctx.cfg, ctx.log
    ctx.progress.start(1)
    problem = build_problem(cfg, ctx.device)
    model = problem.build_model(seed_for(cfg.seed, 0))  # w~_1, as K-AVG builds it
    ctx.extra["model"] = model
    evals = min(int(cfg.log.eval_max_samples or 1024), 1024)  # F(w~_1) on at most 1,024 samples
    out = kb.probe(problem, model, int(cfg.algo.batch_size), batches=int(cfg.algo.batches),
                   hvp_samples=int(cfg.algo.hvp_samples), iters=int(cfg.algo.iters), seed=int(cfg.seed),
                   eval_samples=evals)
    out["n_params"] = float(sum(p.numel() for p in model.parameters()))
    log.log_many("event", {f"probe/{k}": float(v) for k, v in out.items()})
    ctx.progress.update(1)


SPEC = AlgoSpec(FAMILIES, run, keys=KEYS)
