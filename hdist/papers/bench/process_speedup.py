"""bench-process-speedup: AsySG on processes, 2 workers vs 1 (same total updates).

Two parts. Lock-free AsySG-incon: the speedup of 2 workers over 1. Consistent AsySG-con: 2 workers
that poll a held lock for ``backend.spin_s`` before sleeping on it (the default) against 2 that
sleep on it at once (``backend.spin_s=0``), and the polling side's speedup over 1 worker.
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.plots import figure, speedup

GOAL = 1.8  # time speedup at 2 workers, from the asynchronous-SGD issue
LOCK_GOAL = 1.1  # training time of 2 AsySG-con workers sleeping on the lock / polling it first (sim issue)
INCON, CON, CON_SLEEP = "AsySG-incon, lock-free", "AsySG-con, polls the lock", "AsySG-con, sleeps on the lock"


def train_times(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: its side, training seconds (common start to last worker done) and updates/s."""
    runs = df.drop_duplicates("run_id").set_index("run_id")
    spin = runs["backend.spin_s"] if "backend.spin_s" in runs.columns else pd.Series(None, index=runs.index)
    side = pd.Series([INCON if a == "asysg_incon" else CON_SLEEP if s == 0 else CON
                      for a, s in zip(runs["algo"], spin)], index=runs.index, name="side")
    t = df[df["metric"] == "train_s"][["run_id", "workers", "seed", "value"]].rename(columns={"value": "train_s"})
    upd = df[df["metric"] == "updates_total"].groupby("run_id")["value"].sum().rename("updates")
    t = t.join(upd, on="run_id").join(side, on="run_id")
    t["updates_per_s"] = t["updates"] / t["train_s"]
    return t


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Medians per (side, workers), and each side's speedup over its algorithm's 1-worker runs."""
    t = train_times(df)
    s = t.groupby(["side", "workers"]).agg(train_s=("train_s", "median"), updates_per_s=("updates_per_s", "median"),
                                           reps=("train_s", "size"))
    one = {side: s.loc[(side, 1), "train_s"] for side in (INCON, CON) if (side, 1) in s.index}
    one[CON_SLEEP] = one.get(CON, float("nan"))  # one worker never waits for the lock: the same baseline
    s["speedup"] = [one.get(side, float("nan")) / v for (side, _), v in s["train_s"].items()]
    return s


def plot(df: pd.DataFrame):
    s = summary(df)
    t = train_times(df)
    fig, (ax1, ax2) = figure(2, title="bench-process-speedup: AsySG, process backend, MLP, batch 10")
    for i, (side, g) in enumerate(t.groupby("side")):
        ax1.scatter(g["workers"] + 0.08 * (i - 1), g["train_s"], alpha=0.6, label=side)
    ax1.set_xlabel("workers")
    ax1.set_ylabel("training time (s), same total updates")
    ax1.legend(fontsize=7)
    first = True
    for side, g in s.groupby(level="side"):
        w = g.index.get_level_values("workers")
        if first:  # draws the ideal line once
            speedup(ax2, w, g["speedup"], label=side)
        else:
            ax2.plot(w, g["speedup"], "o-", label=side)
        first = False
    ax2.axhline(GOAL, color="r", ls="--", lw=0.8)
    ax2.legend(fontsize=7)
    ax2.set_title("2 cores: speedup is bounded by 2", fontsize=8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    s = summary(df)
    out = []
    if (INCON, 1) in s.index and (INCON, 2) in s.index:
        v = float(s.loc[(INCON, 2), "speedup"])
        out.append(Claim(f"lock-free AsySG on 2 processes runs >= {GOAL}x faster than on 1 (same updates)",
                         f">= {GOAL} (hand-measured 1.88-1.90)",
                         f"{v:.2f} ({s.loc[(INCON, 1), 'train_s']:.2f} s vs {s.loc[(INCON, 2), 'train_s']:.2f} s, "
                         f"{int(s.loc[(INCON, 2), 'reps'])} reps)", v >= GOAL))
    if (CON, 2) in s.index and (CON_SLEEP, 2) in s.index:
        poll, sleep = float(s.loc[(CON, 2), "train_s"]), float(s.loc[(CON_SLEEP, 2), "train_s"])
        v = sleep / poll
        vs_one = f"; polling, 2 workers vs 1: {s.loc[(CON, 2), 'speedup']:.2f}x" if (CON, 1) in s.index else ""
        out.append(Claim(f"consistent AsySG-con on 2 processes: polling the lock before sleeping trains >= "
                         f"{LOCK_GOAL}x faster than sleeping on it at once (same updates)",
                         f">= {LOCK_GOAL} (run_timers: 450-490 vs 360-375 us per update)",
                         f"{v:.2f} ({sleep:.2f} s vs {poll:.2f} s, {int(s.loc[(CON, 2), 'reps'])} reps{vs_one})",
                         v >= LOCK_GOAL))
    return out
