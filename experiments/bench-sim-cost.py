"""bench-sim-cost: real seconds per update of a sim run (8 workers) vs the same gradients computed
serially without a simulator (8 replicas, round-robin), and vs one-model serial SGD (reference)."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.plots import figure

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


def summary(df: pd.DataFrame) -> pd.Series:
    return per_update(df).groupby("side")["s_per_update"].median()


def plot(df: pd.DataFrame):
    t = per_update(df)
    s = summary(df)
    fig, (ax,) = figure(1, width=5.5, title="bench-sim-cost: MLP 784-100-10, batch 10")
    for i, (side, g) in enumerate(t.groupby("side")):
        ax.scatter([i] * len(g), g["s_per_update"] * 1e6, alpha=0.6)
        ax.hlines(s[side] * 1e6, i - 0.2, i + 0.2, color="k")
    ax.set_xticks(range(len(s)), list(s.index), fontsize=7)
    ax.set_ylabel("real microseconds per update (median: bar)")
    a, b = LABEL["asysg_con"], LABEL["bench_round_robin"]
    if {a, b} <= set(s.index):
        ax.set_title(f"sim / no-sim = {s[a] / s[b]:.3f} (goal <= {GOAL})", fontsize=8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    s = summary(df)
    a, b, c = LABEL["asysg_con"], LABEL["bench_round_robin"], LABEL["sgd"]
    out = []
    if {a, b} <= set(s.index):
        r = float(s[a] / s[b])
        out.append(Claim(f"simulating 8 workers costs <= {GOAL}x computing the same gradients serially "
                         "(8 replicas, no simulator)", f"<= {GOAL}",
                         f"{r:.3f} ({s[a] * 1e6:.0f} vs {s[b] * 1e6:.0f} us/update)", r <= GOAL))
    if {a, c} <= set(s.index):
        out.append(Claim("for reference: sim (8 workers) vs one-model serial SGD", "(no goal)",
                         f"{s[a] / s[c]:.3f} ({s[a] * 1e6:.0f} vs {s[c] * 1e6:.0f} us/update)", None))
    return out
