"""``bench-sim-cost-gpu`` (bench-sim-cost's GPU arm): what simulating P workers costs on one GPU.

Both sides in this one run, alternating for ``algo.reps`` repetitions, each a real hdist run on the one GPU
(``topology.devices=cuda``) in a scratch results directory, same model (``model``), batch
(``algo.batch_size``), data (``scale.n_train``, ``scale.epochs``) and seed:

- **sim**: AsySG-con on the sim backend with ``algo.workers`` = P simulated workers, every one on the GPU;
  real seconds per update = its last full evaluation's ``wall_s`` / updates (evaluation is paused out of it);
- **no sim**: :mod:`hdist.bench.round_robin` with P replicas on the GPU: the same gradient steps, round-robin,
  with no simulator (its ``s_per_update``).

Where the run's device is not a GPU nothing is timed: the arm is about a GPU, and its claim is n/a.
Rows: ``s_per_update`` per side (``role`` = sim | no_sim) and repetition (``step``); once, ``on_cuda``
(``role`` = bench, 1 on a GPU).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hdist import devices
from hdist.bench import alternate
from hdist.rules import int_at_least
from hdist.types import AlgoSpec

FAMILIES = ("bench",)
TIMED_ON = ("cuda",)  # device kinds the arm times on (the claim is about a GPU)

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.workers": (int_at_least(1), "an integer >= 1 (simulated workers P, and replicas of the no-sim side)"),
    "algo.reps": (int_at_least(1), "an integer >= 1 (repetitions of each side)"),
}


def side_overrides(cfg, side: str, kind: str) -> list[str]:
    """The command line of one side's run: the arm's model, batch, data and seed on device ``kind``."""
    p = int(cfg.algo.workers)
    common = [f"model={cfg.model.name}", f"dataset={cfg.dataset.name}", f"algo.batch_size={int(cfg.algo.batch_size)}",
              f"algo.lr={float(cfg.algo.lr)}", f"scale.n_train={int(cfg.scale.n_train)}",
              f"scale.n_test={int(cfg.scale.n_test)}", f"scale.epochs={cfg.scale.epochs}", f"seed={int(cfg.seed)}",
              f"topology.devices={kind}", "log.evals_per_epoch=0", "log.train_every=100", "progress=quiet"]
    if side == "sim":
        return ["algo=asysg_con", "backend=sim", f"topology.workers={p}", *common]
    return ["algo=bench_round_robin", "backend=serial", f"algo.replicas={p}", *common]


def s_per_update(cfg, side: str, kind: str, results_dir: Path) -> float:
    """Real seconds per update of one side's run (a fresh run in ``results_dir``)."""
    from hdist.calibrate import short_run

    run = short_run(side_overrides(cfg, side, kind), str(results_dir), f"bench-sim-cost-gpu {side}", accept=("done",))
    df = run["df"]
    if side == "sim":
        last = df[df["metric"] == "train_loss_full"].sort_values("updates").iloc[-1]
        return float(last["wall_s"] / last["updates"])
    return float(df.loc[df["metric"] == "s_per_update", "value"].iloc[0])


def run(ctx) -> None:
    cfg, log = ctx.cfg, ctx.log
    kind = devices.cfg_device(cfg, 0).type
    if kind in TIMED_ON:
        with tempfile.TemporaryDirectory(prefix="hdist-sim-gpu-") as tmp:
            # One untimed run of each side first: CUDA's lazy module loading and the allocator's first blocks.
            for side in ("sim", "no_sim"):
                s_per_update(cfg, side, kind, Path(tmp) / f"warm-{side}")
            alternate(ctx, int(cfg.algo.reps),
                      {side: (lambda rep, side=side: s_per_update(cfg, side, kind, Path(tmp) / f"{side}-{rep}"))
                       for side in ("sim", "no_sim")}, "s_per_update")
    log.role = "bench"
    log.log("train", "on_cuda", float(kind == "cuda"))


SPEC = AlgoSpec(FAMILIES, run, keys=KEYS)
