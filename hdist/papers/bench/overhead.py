"""bench-overhead: hdist's serial SGD steps/s against a minimal torch loop, per batch size."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.plots import figure

GOALS = {10: 0.90, 128: 0.97}  # minimum median ratio hdist / raw, from the run-pipeline issue


def ratio_medians(d: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of ``by``: the median steps/s of each side (``role`` hdist / raw), their ratio and its
    min-max over repetitions (sides paired by rep index, the ``step`` column). ``d``: steps_per_s rows."""
    med = d.pivot_table(index=by, columns="role", values="value", aggfunc="median")
    med["ratio"] = med["hdist"] / med["raw"]
    per_rep = d.pivot_table(index=[by, "step"], columns="role", values="value")
    per_rep["ratio"] = per_rep["hdist"] / per_rep["raw"]
    med["ratio_min"] = per_rep.groupby(by)["ratio"].min()
    med["ratio_max"] = per_rep.groupby(by)["ratio"].max()
    return med


def medians(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["metric"] == "steps_per_s"]
    b = "algo.batch_size" if "algo.batch_size" in d.columns else None
    return ratio_medians(d.assign(batch=d[b] if b else 0), "batch")


def plot(df: pd.DataFrame):
    med = medians(df)
    fig, (ax1, ax2) = figure(2, title="bench-overhead: serial SGD, MLP 784-100-10, 1 thread")
    x = range(len(med))
    w = 0.38
    ax1.bar([i - w / 2 for i in x], med["raw"], w, label="raw torch loop")
    ax1.bar([i + w / 2 for i in x], med["hdist"], w, label="hdist serial SGD")
    ax1.set_xticks(list(x), [f"batch {int(b)}" for b in med.index])
    ax1.set_ylabel("steps/s (median)")
    ax1.legend(fontsize=7)
    ax2.bar(list(x), med["ratio"], color="tab:green")
    ax2.errorbar(list(x), med["ratio"], yerr=[med["ratio"] - med["ratio_min"], med["ratio_max"] - med["ratio"]],
                 fmt="none", color="k", capsize=3)
    for i, b in zip(x, med.index):
        if int(b) in GOALS:
            ax2.hlines(GOALS[int(b)], i - 0.4, i + 0.4, colors="r", linestyles="--")
    ax2.set_xticks(list(x), [f"batch {int(b)}" for b in med.index])
    ax2.set_ylabel("hdist / raw (median; bars: min-max)")
    ax2.set_ylim(0, 1.2)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    med = medians(df)
    out = []
    for b, row in med.iterrows():
        goal = GOALS.get(int(b))
        if goal is None:
            continue
        out.append(Claim(f"hdist's serial SGD runs at >= {goal:.2f}x a raw torch loop at batch {int(b)}",
                         f">= {goal:.2f}", f"{row['ratio']:.3f} ({row['hdist']:.0f} vs {row['raw']:.0f} steps/s)",
                         bool(row["ratio"] >= goal)))
    return out
