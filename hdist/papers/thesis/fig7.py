"""thesis Figure 7: time speedup of Dis-dfSDCA and CoCoA+ against workers under stragglers (ch. 3, 3.5.1.2).

Row 1: time speedup (3.39) against workers on ijcnn1 and covtype, one line per method, with the ideal line;
row 2: duality gap against time on rcv1, one line per method and worker count (colour = workers, solid =
Dis-dfSDCA, dashed = CoCoA+).

Speedup(K) = T(1) / T(K), T = simulated time until the duality gap first reaches a common target (one per
dataset, for both methods and every K: 1e-5 when every run reaches it, else 10 % of the way, in log10, from
the highest best gap back up to the start; :func:`thesis-fig6.reach_target`). T(1) is each method's serial
run (one worker, no straggler); :func:`hdist.analysis.speedup.speedup_table` does the rest.

Claims: on ijcnn1 and covtype, Dis-dfSDCA's time speedup beats CoCoA+'s at every K > 1 ("Dis-dfSDCA has better
speedup property than CoCoA+ when there is straggler problem"); on rcv1, Dis-dfSDCA reaches the target sooner
than CoCoA+ at every worker count ("always converges faster than CoCoA+ when they have the same number of
workers"). ``tables`` writes the speedup tables as markdown (figures/thesis-fig7-speedup.md).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hdist.analysis import speedup_table, to_markdown
from hdist.claims import Claim, not_checked
from hdist.papers.thesis import fig6 as _fig6
from hdist.plots import data_note

SPEEDUP_DATASETS = ("ijcnn1", "covtype")  # row 1 of the figure
CONVERGENCE_DATASET = "rcv1"  # row 2
METHODS = ("Dis-dfSDCA", "CoCoA+")


def gaps(df: pd.DataFrame) -> pd.DataFrame:
    """Duality-gap rows with ``method`` (Dis-dfSDCA / CoCoA+, H not in the name: one H per method here) and ``time``."""
    d = _fig6.methods(df)
    if len(d):
        d["method"] = np.where(d["algo"] == "cocoa_plus", "CoCoA+", "Dis-dfSDCA")
    return d


def target_of(d: pd.DataFrame) -> float:
    """The dataset's common target: every run of both methods, every K, crosses it."""
    return _fig6.reach_target([g for _, g in d.groupby("run_id")])


def speedups(d: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One dataset's speedup table per method (same target for both), from hdist.analysis.speedup."""
    target = target_of(d)
    # A diverged run never reaches the target (it may pass it on its way up): its time becomes NaN.
    d = d.copy()
    d.loc[d["run_id"].isin(_fig6.diverged_runs(d)), "value"] = math.inf
    out = {}
    for m in METHODS:
        g = d[d["method"] == m]
        if len(g):
            out[m] = speedup_table(g, by="workers", target=target, metric="duality_gap", time="time")
    return out


def _stand_in(d: pd.DataFrame, ds: str) -> str:
    return " (stand-in)" if (d["stand_in_for"] == ds).any() else ""


def plot(df: pd.DataFrame):
    d = gaps(df)
    fig, axes = plt.subplots(2, 2, figsize=(4.4 * 2, 3.3 * 2))
    fig.suptitle("thesis fig. 7: ridge regression (lambda = 0.1) under stragglers; time = simulated seconds"
                 + data_note(df), fontsize=10)
    for ax, ds in zip(axes[0], SPEEDUP_DATASETS):
        g = d[d["dataset"] == ds] if len(d) else d
        top = 1.0
        if len(g):
            for m, tab in speedups(g).items():
                ax.plot(tab["workers"].astype(float), tab["time_speedup"], "o-" if m == "Dis-dfSDCA" else "s--",
                        label=m)
                top = max(top, float(tab["workers"].max()))
            ax.set_title(f"{ds}{_stand_in(g, ds)}: time speedup to gap <= {target_of(g):.3g}", fontsize=9)
        else:
            ax.set_title(f"{ds}: no runs", fontsize=9)
        ax.plot([1, top], [1, top], "k:", label="ideal")
        ax.set_xlabel("workers")
        ax.set_ylabel("time speedup T(1)/T(K)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[1][0]
    g = d[d["dataset"] == CONVERGENCE_DATASET] if len(d) else d
    ks = sorted(int(k) for k in g["workers"].unique()) if len(g) else []
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(1, len(ks))))
    for k, c in zip(ks, colours):
        for m, style in (("Dis-dfSDCA", "-"), ("CoCoA+", "--")):
            r = g[(g["workers"] == k) & (g["method"] == m)]
            if len(r):
                r = r.groupby("time", as_index=False)["value"].mean().sort_values("time")
                ax.plot(r["time"], r["value"], style, color=c, label=f"{m}, K={k}")
    ax.set_yscale("log")
    ax.set_xlabel("time (s, simulated)")
    ax.set_ylabel("duality gap")
    ax.set_title(f"{CONVERGENCE_DATASET}{_stand_in(g, CONVERGENCE_DATASET) if len(g) else ': no runs'}", fontsize=9)
    ax.grid(alpha=0.3)
    if ks:
        ax.legend(fontsize=6, ncol=2)
    # Row 2, right: rcv1 time to target per worker count (what the claim compares).
    ax = axes[1][1]
    if len(g):
        target = target_of(g)
        for m, style in (("Dis-dfSDCA", "o-"), ("CoCoA+", "s--")):
            t = [_fig6.time_to(g[(g["workers"] == k) & (g["method"] == m)], target) for k in ks]
            ax.plot(ks, t, style, label=m)
        ax.set_title(f"{CONVERGENCE_DATASET}: time to gap <= {target:.3g}", fontsize=9)
        ax.legend(fontsize=7)
    ax.set_xlabel("workers")
    ax.set_ylabel("time to target (s, simulated)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _fmt(v: float) -> str:
    return f"{v:.2f}" if math.isfinite(v) else "n/a"


def speedup_claim(d: pd.DataFrame, ds: str) -> Claim:
    """Dis-dfSDCA's time speedup above CoCoA+'s at every K > 1 that both ran (NaN = target not reached)."""
    claim = f"{ds}: Dis-dfSDCA's time speedup beats CoCoA+'s at every K > 1 under stragglers (fig. 7, row 1)"
    paper = "Dis-dfSDCA has better speedup property than CoCoA+ when there is straggler problem"
    tabs = speedups(d)
    if set(tabs) != set(METHODS):
        return not_checked(claim, paper, "needs Dis-dfSDCA and CoCoA+ runs")
    a = tabs["Dis-dfSDCA"].set_index("workers")["time_speedup"]
    b = tabs["CoCoA+"].set_index("workers")["time_speedup"]
    ks = sorted(k for k in set(a.index) & set(b.index) if float(k) > 1)
    if not ks or not (tabs["Dis-dfSDCA"]["workers"] == 1).any() or not (tabs["CoCoA+"]["workers"] == 1).any():
        return not_checked(claim, paper, "needs serial (1-worker) and K > 1 runs of both methods")
    measured = "; ".join(f"K={int(k)}: {_fmt(float(a[k]))} vs {_fmt(float(b[k]))}" for k in ks)
    target = float(tabs["CoCoA+"]["target"].iloc[0])
    ok = all(math.isfinite(float(a[k])) and (not math.isfinite(float(b[k])) or float(a[k]) > float(b[k])) for k in ks)
    return Claim(claim + f" (gap <= {target:.3g})", paper, "Dis-dfSDCA vs CoCoA+ speedup: " + measured, bool(ok))


def convergence_claim(d: pd.DataFrame, ds: str) -> Claim:
    """Dis-dfSDCA reaches the common target sooner than CoCoA+ at every worker count both ran."""
    claim = f"{ds}: Dis-dfSDCA reaches the duality-gap target sooner than CoCoA+ at every worker count (fig. 7, row 2)"
    paper = "Dis-dfSDCA always converges faster than CoCoA+ when they have the same number of workers"
    ks = sorted(set(d[d["method"] == "Dis-dfSDCA"]["workers"]) & set(d[d["method"] == "CoCoA+"]["workers"]))
    if not ks:
        return not_checked(claim, paper, "needs Dis-dfSDCA and CoCoA+ runs with the same worker count")
    target = target_of(d)
    t = {k: [_fig6.time_to(d[(d["workers"] == k) & (d["method"] == m)], target) for m in METHODS] for k in ks}
    measured = "; ".join(f"K={int(k)}: {a:.3g} s vs {b:.3g} s" for k, (a, b) in t.items())
    return Claim(claim + f" (gap <= {target:.3g})", paper, "Dis-dfSDCA vs CoCoA+: " + measured,
                 bool(all(a < b for a, b in t.values())))


def check(df: pd.DataFrame) -> list[Claim]:
    d = gaps(df)
    claims = []
    for ds in SPEEDUP_DATASETS:
        g = d[d["dataset"] == ds] if len(d) else d
        claims.append(speedup_claim(g, ds) if len(g) else not_checked(
            f"{ds}: Dis-dfSDCA's time speedup beats CoCoA+'s under stragglers", "Dis-dfSDCA scales better",
            f"no {ds} runs"))
    g = d[d["dataset"] == CONVERGENCE_DATASET] if len(d) else d
    claims.append(convergence_claim(g, CONVERGENCE_DATASET) if len(g) else not_checked(
        f"{CONVERGENCE_DATASET}: Dis-dfSDCA converges faster than CoCoA+ at every worker count",
        "Dis-dfSDCA faster", f"no {CONVERGENCE_DATASET} runs"))
    return claims


def tables(df: pd.DataFrame) -> dict[str, str]:
    d = gaps(df)
    parts = ["**thesis fig. 7**: time speedup T(1)/T(K) to a common duality-gap target per dataset (simulated "
             "seconds; T(1) = the method's serial run, one worker, no straggler). Iteration speedups count each "
             "method's own updates (pushes of H steps for Dis-dfSDCA, rounds for CoCoA+): not comparable across "
             "methods." + data_note(df) + "\n"]
    for ds in datasets_present(d):
        g = d[d["dataset"] == ds]
        for m, tab in speedups(g).items():
            parts.append(f"### {ds}{_stand_in(g, ds)}: {m}\n\n" + to_markdown(tab))
    return {"speedup": "\n".join(parts)}


def datasets_present(d: pd.DataFrame) -> list[str]:
    return _fig6.datasets(d) if len(d) else []
