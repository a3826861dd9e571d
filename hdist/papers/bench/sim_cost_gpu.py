"""bench-sim-cost-gpu: bench-sim-cost's GPU arm. Real seconds per update of 32 simulated ResNet-20 workers vs
the same gradient steps round-robin with no simulator (32 replicas), both on the one GPU, timed in one run
(:mod:`hdist.bench.sim_gpu`). One claim, bench-sim-cost's goal; n/a ("no GPU") where the run's device was not a
GPU (nothing was timed there)."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.bench.common import ratio_text, sides_panel
from hdist.papers.bench.sim_cost import GOAL
from hdist.plots import figure

SIM, NO_SIM = "sim", "no_sim"  # the rows' roles (hdist/bench/sim_gpu.py)


def sides(df: pd.DataFrame) -> pd.DataFrame:
    """Per repetition and side: real seconds per update."""
    return df[df["metric"] == "s_per_update"].assign(side=lambda d: d["role"], s_per_update=lambda d: d["value"])


def on_gpu(df: pd.DataFrame) -> bool:
    flags = df[df["metric"] == "on_cuda"]["value"]
    return bool(len(flags)) and bool((flags >= 1).all())


def _workers(df: pd.DataFrame) -> int:
    return int(df["algo.workers"].dropna().iloc[0]) if "algo.workers" in df.columns and len(df) else 32


def plot(df: pd.DataFrame):
    p = _workers(df)
    fig, (ax,) = figure(1, width=4.0, title=f"bench-sim-cost-gpu: {p} sim workers vs the same steps, no sim, one GPU")
    t = sides(df)
    if t.empty:
        ax.set_title("no GPU: nothing timed" if not on_gpu(df) else "no side timed", fontsize=8)
    else:
        sides_panel(ax, t, "s_per_update", [SIM, NO_SIM], "real microseconds per update (bar: median)", scale=1e6)
        r, _ = ratio_text(t, "s_per_update", SIM, NO_SIM)
        ax.set_title(f"sim / no-sim = {r:.3f} (goal <= {GOAL})" if r is not None else "a side is missing", fontsize=8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    if df.empty:
        return []
    p, model = _workers(df), str(df["model"].iloc[0])
    claim = Claim(f"{model}, on one GPU: simulating {p} workers costs <= {GOAL}x computing the same gradient steps "
                  f"round-robin ({p} replicas, no simulator)", f"<= {GOAL}", "", None, kind="bench")
    if not on_gpu(df):
        return [claim.not_applicable("no GPU")]
    r, text = ratio_text(sides(df), "s_per_update", SIM, NO_SIM, unit_scale=1e6, unit=" us/update")
    if r is None:
        return [claim.inconclusive(text)]
    return [Claim(claim.claim, claim.paper, text, r <= GOAL, kind="bench")]
