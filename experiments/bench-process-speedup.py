"""bench-process-speedup: AsySG-incon on processes, 2 workers vs 1 (same total updates)."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.plots import figure, speedup

GOAL = 1.8  # time speedup at 2 workers, from the asynchronous-SGD issue


def train_times(df: pd.DataFrame) -> pd.DataFrame:
    """Training seconds (common start to last worker done) and updates/s per run."""
    t = df[df["metric"] == "train_s"][["run_id", "workers", "seed", "value"]].rename(columns={"value": "train_s"})
    upd = df[df["metric"] == "updates_total"].groupby("run_id")["value"].sum().rename("updates")
    t = t.join(upd, on="run_id")
    t["updates_per_s"] = t["updates"] / t["train_s"]
    return t


def summary(df: pd.DataFrame) -> pd.DataFrame:
    t = train_times(df)
    s = t.groupby("workers").agg(train_s=("train_s", "median"), updates_per_s=("updates_per_s", "median"),
                                 reps=("train_s", "size"))
    base = s.loc[1, "train_s"] if 1 in s.index else float("nan")
    s["speedup"] = base / s["train_s"]
    return s


def plot(df: pd.DataFrame):
    s = summary(df)
    t = train_times(df)
    fig, (ax1, ax2) = figure(2, title="bench-process-speedup: AsySG-incon, process backend, MLP, batch 10")
    for w, g in t.groupby("workers"):
        ax1.scatter([w] * len(g), g["train_s"], alpha=0.6)
    ax1.plot(s.index, s["train_s"], "k_", markersize=20, label="median")
    ax1.set_xlabel("workers")
    ax1.set_ylabel("training time (s), same total updates")
    ax1.legend(fontsize=7)
    speedup(ax2, s.index, s["speedup"], label="measured (median)")
    ax2.axhline(GOAL, color="r", ls="--", lw=0.8)
    ax2.set_title("2 cores: speedup is bounded by 2", fontsize=8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    s = summary(df)
    if 2 not in s.index or 1 not in s.index:
        return []
    v = float(s.loc[2, "speedup"])
    return [Claim(f"lock-free AsySG on 2 processes runs >= {GOAL}x faster than on 1 (same updates)",
                  f">= {GOAL} (hand-measured 1.88-1.90)",
                  f"{v:.2f} ({s.loc[1, 'train_s']:.2f} s vs {s.loc[2, 'train_s']:.2f} s, "
                  f"{int(s.loc[2, 'reps'])} reps)", v >= GOAL)]
