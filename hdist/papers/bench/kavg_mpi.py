"""bench-kavg-mpi: K-AVG's time per sample at K=16 against K=1 on the mpi backend (the all-reduce amortised)."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.bench.common import ratio_text, sides_panel
from hdist.plots import figure


def per_sample(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: side (K), seconds per sample (all learners), and the communication share of the time."""
    rows = []
    for _, g in df.groupby("run_id"):
        train_s = float(g.loc[g["metric"] == "train_s", "value"].iloc[0])
        steps = float(g.loc[g["metric"] == "updates_total", "value"].sum())
        comm = g.loc[g["metric"] == "comm_s", "value"].mean()
        b = int(g["algo.batch_size"].iloc[0])
        rows.append({"side": f"K={int(g['algo.k'].iloc[0])}", "s_per_sample": train_s / (steps * b),
                     "comm_share": float(comm) / train_s if train_s > 0 else float("nan")})
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame):
    t = per_sample(df)
    fig, (ax1, ax2) = figure(2, width=4.2, title="bench-kavg-mpi: K-AVG on mpi, MLP, B=16, 2 learners")
    order = sorted(t["side"].unique(), key=lambda s: int(s[2:]))
    sides_panel(ax1, t, "s_per_sample", order, "microseconds per sample (bar: median)", scale=1e6)
    sides_panel(ax2, t, "comm_share", order, "all-reduce share of the time (bar: median)")
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    t = per_sample(df)
    what = "K-AVG with K=16 takes less time per sample than K=1 on mpi (the all-reduce amortised)"
    r, text = ratio_text(t, "s_per_sample", "K=16", "K=1", unit_scale=1e6, unit=" us")
    if r is None:
        return [not_checked(what, "< 1", text)]
    share = t.groupby("side")["comm_share"].median()
    return [Claim(what, "K=16 / K=1 < 1", f"{text}; all-reduce share K=1 {share.get('K=1', float('nan')):.1%}, "
                  f"K=16 {share.get('K=16', float('nan')):.1%}", r < 1)]
