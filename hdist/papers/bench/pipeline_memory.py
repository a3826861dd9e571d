"""Benchmark (b) of issue 8: peak activation memory against K = 1..4 for BP, DDG and Features Replay (thesis fig. 27's
measurement on ResNet-20 at batch 128).

Figure: total memory (MiB) against K per algorithm, and memory / BP. ``tables`` gives
figures/bench-pipeline-memory-memory.md. Claims: FR <= ``GOAL`` x BP at K = 4 (the benchmark's goal), DDG above FR
at every K > 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.thesis.pipeline_mem import ALGO_LABEL, ALGO_ORDER, STYLE, md_table, memory_model, memory_panel, mib
from hdist.plots import data_note, figure

#: Issue 8's goal for benchmark (b): FR's peak activation memory at most 1.25 x BP's at K = 4.
GOAL = 1.25


def plot(df: pd.DataFrame):
    mm = memory_model(df)
    fig, (ax, ax2) = figure(2, width=4.6, title="bench (b): pipeline activation memory vs K" + data_note(df))
    for model in sorted(mm["model"].unique()):
        memory_panel(ax, mm, model)
        b = mm["batch"]
        ax.set_title(f"{model}, batch {int(b.max())}", fontsize=9)
    for algo in [a for a in ALGO_ORDER if a in set(mm["algo"])]:
        g = mm[mm["algo"] == algo].sort_values("K")
        ax2.plot(g["K"], g["vs_bp"], "o-", label=ALGO_LABEL[algo], **STYLE.get(algo, {}))
    ax2.axhline(GOAL, color="r", ls=":", lw=1, label=f"goal FR <= {GOAL} x BP")
    ax2.set_xlabel("modules K")
    ax2.set_ylabel("memory / BP")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    mm = memory_model(df)
    name = f"FR's peak activation memory <= {GOAL} x BP's at K = 4"
    fr = mm[(mm["algo"] == "fr") & (mm["K"] == 4)].dropna(subset=["vs_bp"])
    out = []
    if fr.empty:
        out.append(not_checked(name, "FR close to BP (thesis fig. 27)", "no FR and BP runs at K = 4"))
    else:
        v = float(fr["vs_bp"].max())
        out.append(Claim(name, "FR close to BP (thesis fig. 27)",
                         f"FR / BP = {v:.3f} ({mib(float(fr['measured'].max()))} MiB)", bool(v <= GOAL)))
    both = mm[mm["algo"] == "fr"].merge(mm[mm["algo"] == "ddg"][["model", "K", "measured"]], on=["model", "K"],
                                        suffixes=("", "_ddg"))
    both = both[both["K"] > 1]
    if both.empty:
        out.append(not_checked("DDG stores more than FR at every K > 1", "DDG > 2 x BP at K = 4", "no runs"))
    else:
        out.append(Claim("DDG stores more than FR at every K > 1", "DDG > 2 x BP at K = 4 (thesis fig. 27)",
                         ", ".join(f"K={int(r['K'])}: DDG {mib(r['measured_ddg'])} vs FR {mib(r['measured'])} MiB"
                                   for _, r in both.iterrows()),
                         bool((both["measured_ddg"] > both["measured"]).all())))
    return out


def tables(df: pd.DataFrame) -> dict[str, str]:
    mm = memory_model(df)
    rows = [[r["model"], int(r["batch"]), int(r["K"]), ALGO_LABEL.get(r["algo"], r["algo"]), mib(r["measured"]),
             " / ".join(mib(x) for x in r["mem_k"]), f"{r['vs_bp']:.3f}" if np.isfinite(r["vs_bp"]) else "-"]
            for _, r in mm.iterrows()]
    head = ("**Benchmark (b)**: peak activation memory of the pipeline (sum over stages of peak_mem_bytes), MiB"
            + data_note(df) + f". Goal: FR <= {GOAL} x BP at K = 4.\n\n")
    return {"memory": head + md_table(rows, ["model", "batch", "K", "algo", "total (MiB)", "per stage (MiB)",
                                             "/ BP"])}
