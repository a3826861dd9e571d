"""bench-sim-cost: real seconds per update of a sim run (8 workers) vs the same gradients computed
serially without a simulator (8 replicas, round-robin), and vs one-model serial SGD (reference)."""

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
        rows.append({"run_id": run_id, "side": LABEL.get(algo, algo), "s_per_update": v})
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame):
    t = per_update(df)
    fig, (ax,) = figure(1, width=5.5, title="bench-sim-cost: MLP 784-100-10, batch 10")
    sides_panel(ax, t, "s_per_update", list(LABEL.values()), "real microseconds per update (bar: median)", scale=1e6)
    r, _ = ratio_text(t, "s_per_update", LABEL["asysg_con"], LABEL["bench_round_robin"])
    if r is not None:
        ax.set_title(f"sim / no-sim = {r:.3f} (goal <= {GOAL})", fontsize=8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    t = per_update(df)
    a, b, c = LABEL["asysg_con"], LABEL["bench_round_robin"], LABEL["sgd"]
    out = []
    r, text = ratio_text(t, "s_per_update", a, b, unit_scale=1e6, unit=" us/update")
    if r is not None:
        out.append(Claim(f"simulating 8 workers costs <= {GOAL}x computing the same gradients serially "
                         "(8 replicas, no simulator)", f"<= {GOAL}", text, r <= GOAL))
    r, text = ratio_text(t, "s_per_update", a, c, unit_scale=1e6, unit=" us/update")
    if r is not None:
        out.append(Claim("for reference: sim (8 workers) vs one-model serial SGD", "(no goal)", text, None))
    return out
