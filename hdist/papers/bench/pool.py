"""bench-pool: steps/s with 2 torch threads over 1, per model (the measurement behind hdist.threads)."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.plots import figure

TINY_GOAL = 1.05  # a pool must not pay on the tiny step: 2 threads at most this much faster than 1


def ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per model: median steps/s of each side, their ratio threads2 / threads1, and the step's FLOPs."""
    d = df[df["metric"] == "steps_per_s"]
    med = d.pivot_table(index="model", columns="role", values="value", aggfunc="median")
    med["ratio"] = med["threads2"] / med["threads1"]
    flop = df[df["metric"] == "step_flop"].groupby("model")["value"].first()
    med["step_flop"] = flop.reindex(med.index)
    return med.sort_values("step_flop")


def plot(df: pd.DataFrame):
    med = ratios(df)
    fig, (ax1, ax2) = figure(2, title="bench-pool: training steps/s with 1 and 2 torch threads")
    x = list(range(len(med)))
    labels = [f"{m}\n{f:.2g} FLOP/step" for m, f in zip(med.index, med["step_flop"])]
    w = 0.38
    ax1.bar([i - w / 2 for i in x], med["threads1"], w, label="1 thread")
    ax1.bar([i + w / 2 for i in x], med["threads2"], w, label="2 threads")
    ax1.set_yscale("log")
    ax1.set_xticks(x, labels, fontsize=7)
    ax1.set_ylabel("steps/s (median)")
    ax1.legend(fontsize=7)
    ax2.bar(x, med["ratio"], color="tab:green")
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_xticks(x, labels, fontsize=7)
    ax2.set_ylabel("2 threads / 1 thread")
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    from hdist.threads import SMALL_STEP_FLOP

    med = ratios(df)
    if med.empty or med["step_flop"].isna().all():
        return [not_checked("the thread rule's threshold separates the models", "measured", "no rows")]
    out = []
    for model, row in med.iterrows():
        small = row["step_flop"] < SMALL_STEP_FLOP
        got = f"{row['ratio']:.3f} ({row['threads2']:.1f} vs {row['threads1']:.1f} steps/s)"
        if small:
            out.append(Claim(f"{model} ({row['step_flop']:.2g} FLOP/step, below the rule's threshold): 2 threads gain "
                             f"nothing over 1", f"<= {TINY_GOAL}", got, bool(row["ratio"] <= TINY_GOAL)))
        else:
            out.append(Claim(f"{model} ({row['step_flop']:.2g} FLOP/step, above the rule's threshold): 2 threads run "
                             f"faster than 1", "> 1.0", got, bool(row["ratio"] > 1.0)))
    return out
