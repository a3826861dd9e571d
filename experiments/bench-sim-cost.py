"""bench-sim-cost: wall time of a sim run (8 workers) vs serial SGD over the same gradient steps."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.plots import figure

GOAL = 1.10


def train_wall(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: real seconds of training (the last evaluation row's wall_s) and its updates."""
    ev = df[df["metric"] == "train_loss_full"].sort_values("updates")
    last = ev.groupby("run_id").tail(1)
    out = last[["run_id", "backend", "workers", "seed", "wall_s", "updates"]].copy()
    out["s_per_update"] = out["wall_s"] / out["updates"]
    return out


def summary(df: pd.DataFrame) -> pd.Series:
    t = train_wall(df)
    return t.groupby("backend")["s_per_update"].median()


def plot(df: pd.DataFrame):
    t = train_wall(df)
    s = summary(df)
    fig, (ax,) = figure(1, title="bench-sim-cost: sim (8 workers) vs serial, MLP batch 10")
    for i, (b, g) in enumerate(t.groupby("backend")):
        ax.scatter([i] * len(g), g["s_per_update"] * 1e6, alpha=0.6)
        ax.hlines(s[b] * 1e6, i - 0.2, i + 0.2, color="k")
    ax.set_xticks(range(len(s)), list(s.index))
    ax.set_ylabel("real microseconds per gradient step")
    if {"sim", "serial"} <= set(s.index):
        ax.set_title(f"ratio sim/serial = {s['sim'] / s['serial']:.3f} (goal <= {GOAL})", fontsize=8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    s = summary(df)
    if not {"sim", "serial"} <= set(s.index):
        return []
    r = float(s["sim"] / s["serial"])
    return [Claim(f"simulating 8 workers costs <= {GOAL}x computing the same gradients serially",
                  f"<= {GOAL}", f"{r:.3f} ({s['sim'] * 1e6:.0f} vs {s['serial'] * 1e6:.0f} us/step)", r <= GOAL)]
