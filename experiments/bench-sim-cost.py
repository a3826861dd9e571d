"""bench-sim-cost: real seconds per update of a sim run (8 workers) vs the same gradients computed
serially without a simulator (8 replicas, round-robin), and vs one-model serial SGD (reference).

Two workloads, one panel and one claim each: the MLP 784-100-10 at batch 10 (a ~0.3 ms step: the worst case,
where the sim's fixed cost per event is a large share) and lian15's CIFAR10-full network at batch 10 (a ~12 ms
step, as the lian15 stems run it). The ratio's excess over 1, times the no-sim time per update, is the sim's
own cost per update, reported in microseconds."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.plots import figure
from hdist.plots.bench import ratio_text, sides_panel

GOAL = 1.10
LABEL = {"asysg_con": "sim, 8 workers", "bench_round_robin": "8 replicas, no sim", "sgd": "serial SGD, 1 model"}


def per_update(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: real seconds per update (training only)."""
    rows = []
    for run_id, g in df.groupby("run_id"):
        algo = g["algo"].iloc[0]
        if algo == "bench_round_robin":
            v = float(g[g["metric"] == "s_per_update"]["value"].iloc[0])
        else:
            last = g[g["metric"] == "train_loss_full"].sort_values("updates").iloc[-1]
            v = float(last["wall_s"] / last["updates"])
        rows.append({"run_id": run_id, "model": g["model"].iloc[0], "side": LABEL.get(algo, algo), "s_per_update": v})
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame):
    t = per_update(df)
    models = sorted(t["model"].unique()) if len(t) else ["(no runs)"]
    fig, axes = figure(len(models), width=5.0, title="bench-sim-cost: 8 sim workers vs the same gradients, no sim")
    for ax, m in zip(axes, models):
        part = t[t["model"] == m]
        sides_panel(ax, part, "s_per_update", list(LABEL.values()), "real microseconds per update (bar: median)",
                    scale=1e6)
        r, _ = ratio_text(part, "s_per_update", LABEL["asysg_con"], LABEL["bench_round_robin"])
        ax.set_title(f"{m}, batch 10" + (f": sim / no-sim = {r:.3f} (goal <= {GOAL})" if r is not None else ""),
                     fontsize=8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    t = per_update(df)
    a, b, c = LABEL["asysg_con"], LABEL["bench_round_robin"], LABEL["sgd"]
    out = []
    for m, part in (t.groupby("model", sort=True) if len(t) else []):
        r, text = ratio_text(part, "s_per_update", a, b, unit_scale=1e6, unit=" us/update")
        if r is not None:
            extra = (r - 1) * float(part[part["side"] == b]["s_per_update"].median()) * 1e6
            out.append(Claim(f"{m}: simulating 8 workers costs <= {GOAL}x computing the same gradients serially "
                             "(8 replicas, no simulator)", f"<= {GOAL}",
                             f"{text}; the sim's own cost {extra:.0f} us per update", r <= GOAL))
        r, text = ratio_text(part, "s_per_update", a, c, unit_scale=1e6, unit=" us/update")
        if r is not None:
            out.append(Claim(f"{m}, for reference: sim (8 workers) vs one-model serial SGD", "(no goal)", text, None))
    return out
