"""bench-clars: CLARS's step time over LARS's (same model, batch and data), medians over repetitions."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.plots import figure

GOAL = 1.5  # maximum median ratio CLARS / LARS, from the large-batch issue


def medians(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["metric"] == "step_s"]
    per_rep = d.pivot_table(index=["run_id", "step"], columns="role", values="value")
    per_rep["ratio"] = per_rep["clars"] / per_rep["lars"]
    return per_rep


def plot(df: pd.DataFrame):
    per_rep = medians(df)
    models = ", ".join(sorted(df["model"].dropna().unique()))
    fig, (ax1, ax2) = figure(2, title=f"bench-clars: step time of CLARS vs LARS, {models}")
    med = per_rep[["lars", "clars"]].median()
    ax1.bar(["LARS", "CLARS"], [med["lars"] * 1e3, med["clars"] * 1e3], color=["tab:blue", "tab:orange"])
    ax1.set_ylabel("ms per step (median)")
    ax2.plot(range(len(per_rep)), per_rep["ratio"], "o-")
    ax2.axhline(GOAL, color="r", ls="--", label=f"goal {GOAL}")
    ax2.set_xlabel("repetition")
    ax2.set_ylabel("CLARS / LARS")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    per_rep = medians(df)
    if per_rep.empty:
        return [not_checked(f"CLARS step <= {GOAL}x LARS's", f"<= {GOAL}", "no rows")]
    lars, clars = float(per_rep["lars"].median()), float(per_rep["clars"].median())
    ratio = clars / lars
    return [Claim(f"CLARS's step (per-sample norm estimate) costs <= {GOAL}x LARS's at B=128 on ResNet-20",
                  f"<= {GOAL}", f"{ratio:.3f} ({clars * 1e3:.1f} vs {lars * 1e3:.1f} ms; per-rep "
                  f"{per_rep['ratio'].min():.2f}..{per_rep['ratio'].max():.2f})", bool(ratio <= GOAL))]
