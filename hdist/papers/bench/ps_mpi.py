"""bench-ps-mpi: parameter-server updates/s of hdist's MPI backend against a raw mpi4py server loop."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.plots import figure

GOAL = 0.90  # minimum median ratio hdist / raw, from the MPI backend issue


def medians(df: pd.DataFrame) -> pd.DataFrame:
    d = df[(df["metric"] == "updates_per_s") & df["role"].isin(["hdist", "raw"])]
    med = d.pivot_table(index="workers", columns="role", values="value", aggfunc="median")
    # The ratio per repetition (sides paired by rep index), its median and spread.
    per_rep = d.pivot_table(index=["workers", "step"], columns="role", values="value")
    per_rep["ratio"] = per_rep["hdist"] / per_rep["raw"]
    g = per_rep.groupby("workers")["ratio"]
    med["ratio"] = g.median()
    med["ratio_min"] = g.min()
    med["ratio_max"] = g.max()
    med["reps"] = g.size()
    return med


def plot(df: pd.DataFrame):
    med = medians(df)
    fig, (ax1, ax2) = figure(2, title="bench-ps-mpi: PS updates/s, MLP-sized vectors (79,510 float32)")
    x = list(range(len(med)))
    w = 0.38
    ax1.bar([i - w / 2 for i in x], med["raw"], w, label="raw mpi4py loop")
    ax1.bar([i + w / 2 for i in x], med["hdist"], w, label="hdist MPIComm.serve")
    ax1.set_xticks(x, [f"{int(p)} worker(s)" for p in med.index])
    ax1.set_ylabel("updates/s (median)")
    ax1.legend(fontsize=7)
    ax2.bar(x, med["ratio"], color="tab:green")
    ax2.errorbar(x, med["ratio"], yerr=[med["ratio"] - med["ratio_min"], med["ratio_max"] - med["ratio"]],
                 fmt="none", color="k", capsize=3)
    ax2.axhline(GOAL, color="r", linestyle="--", linewidth=1)
    ax2.set_xticks(x, [f"{int(p)} worker(s)" for p in med.index])
    ax2.set_ylabel("hdist / raw (median; bars: min-max)")
    ax2.set_ylim(0, 1.3)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    med = medians(df)
    out = []
    for p, row in med.iterrows():
        out.append(Claim(f"hdist's MPI parameter server applies >= {GOAL:.2f}x the updates/s of a raw mpi4py loop "
                         f"at {int(p)} worker(s)", f">= {GOAL:.2f}",
                         f"{row['ratio']:.3f} (median of {int(row['reps'])} reps; {row['hdist']:.0f} vs "
                         f"{row['raw']:.0f} updates/s)", bool(row["ratio"] >= GOAL)))
    return out
