"""Thesis Table 6 (ch. 6.5.3): activation memory model, BP O(L), DNI O(L + K L_s), DDG O(LK + K^2), FR O(L + K^2),
against the measured ``peak_mem_bytes`` of each algorithm's stages.

The model's terms are made concrete per (network, K, batch) by :func:`hdist.papers.thesis.pipeline_mem.predicted` (from
BP's per-stage peaks and the stages' input and saved-weight bytes). Figure: measured and predicted memory against K
per algorithm (left), measured / BP (right). ``tables`` gives figures/thesis-table6-memory.md.
Claims: every algorithm's measured memory is within ``TOL`` of its Table 6 prediction; DDG's memory relative to BP
grows with K (the LK term) while FR stays close to BP (L + K^2 with K << L); DNI's stored bytes are BP's (its K L_s
lives in the synthesizers, outside the pipeline's stored tensors: not measured).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdist.claims import Claim, not_checked, sanity
from hdist.papers.thesis.pipeline_mem import ALGO_LABEL, ALGO_ORDER, STYLE, md_table, memory_model, mib
from hdist.plots import data_note, figure, legend, name_claims, run_as

#: Largest relative deviation of measured from predicted memory accepted (the model leaves out small buffers:
#: BatchNorm's saved statistics, the last stage's play input that FR keeps beside a graph that does not save it).
TOL = 0.10
PAPER = {"bp": "O(L)", "dni": "O(L + K L_s)", "ddg": "O(LK + K^2)", "fr": "O(L + K^2)"}
#: The network and batch the table is made concrete for (the thesis' ResNet-164 at 6.5.1's batch): titles and
#: claims name the model and batch run where they differ.
NETWORK, BATCH = "ResNet-164", 128


def plot(df: pd.DataFrame):
    mm = memory_model(df)
    fig, (ax, ax2) = figure(2, width=4.6, title="thesis table 6: activation memory, measured (o) vs model (x), "
                            f"{run_as(df, NETWORK, batch=BATCH)}" + data_note(df))
    for algo in [a for a in ALGO_ORDER if a in set(mm["algo"])]:
        g = mm[mm["algo"] == algo].sort_values("K")
        st = STYLE.get(algo, {})
        ax.plot(g["K"], g["measured"] / 2 ** 20, "o-", label=f"{ALGO_LABEL[algo]} {PAPER[algo]}", **st)
        ax.plot(g["K"], g["predicted"] / 2 ** 20, "x--", alpha=0.7, **st)
        ax2.plot(g["K"], g["vs_bp"], "o-", label=ALGO_LABEL[algo], **st)
    for a in (ax, ax2):
        a.set_xlabel("modules K")
        a.grid(alpha=0.3)
        legend(a)
    models = ", ".join(run_as(df[df["model"] == m], NETWORK, batch=BATCH) for m in sorted(mm["model"].unique()))
    ax.set_ylabel("activation memory (MiB)")
    ax.set_title(models, fontsize=9)
    ax2.set_ylabel("measured / BP")
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    mm = memory_model(df).dropna(subset=["predicted"])
    if mm.empty:
        return name_claims([not_checked("memory follows Table 6", PAPER, "no memory rows with a BP run beside them")],
                           df, NETWORK, batch=BATCH)
    out = []
    for algo in [a for a in ALGO_ORDER if a in set(mm["algo"])]:
        g = mm[mm["algo"] == algo]
        dev = (g["ratio"] - 1).abs()
        worst = g.loc[dev.idxmax()]
        # Measured and predicted come from the same byte accounting (hdist/algos/_pipeline.py): a check of
        # hdist's bookkeeping, not of the thesis' table.
        out.append(sanity(f"{ALGO_LABEL[algo]}: measured memory within {TOL:.0%} of the Table 6 model {PAPER[algo]}",
                         PAPER[algo], f"measured / predicted from {g['ratio'].min():.3f} to {g['ratio'].max():.3f} "
                         f"(worst K={int(worst['K'])}: {mib(worst['measured'])} vs {mib(worst['predicted'])} MiB)",
                         bool(dev.max() <= TOL)))
    out = name_claims(out, df, NETWORK, batch=BATCH)
    for model, g in mm.groupby("model"):
        who = run_as(df[df["model"] == model], NETWORK, batch=BATCH)
        ddg = g[g["algo"] == "ddg"].sort_values("K")
        fr = g[g["algo"] == "fr"].sort_values("K")
        if len(ddg) >= 2:
            v = ddg["vs_bp"].to_numpy()
            out.append(Claim(f"{who}: DDG's memory relative to BP grows with K (the LK term)", "O(LK + K^2)",
                             ", ".join(f"K={int(k)}: {x:.2f}" for k, x in zip(ddg["K"], v)),
                             bool(np.all(np.diff(v) > 0))))
        else:
            out.append(not_checked(f"{who}: DDG's memory grows with K", "O(LK + K^2)", "fewer than 2 K values"))
        both = fr.merge(ddg[["K", "vs_bp"]], on="K", suffixes=("", "_ddg"))
        both = both[both["K"] > 1]
        if len(both):
            out.append(Claim(f"{who}: FR stores less than DDG at every K > 1 (L + K^2 vs LK + K^2)",
                             "FR < DDG", ", ".join(f"K={int(r['K'])}: FR {r['vs_bp']:.2f} vs DDG {r['vs_bp_ddg']:.2f}"
                                                   f" x BP" for _, r in both.iterrows()),
                             bool((both["vs_bp"] < both["vs_bp_ddg"]).all())))
    return out


def tables(df: pd.DataFrame) -> dict[str, str]:
    mm = memory_model(df)
    rows = [[r["model"], int(r["batch"]), int(r["K"]), ALGO_LABEL.get(r["algo"], r["algo"]), PAPER.get(r["algo"], "?"),
             mib(r["predicted"]), mib(r["measured"]),
             f"{r['ratio']:.3f}" if np.isfinite(r["ratio"]) else "-",
             f"{r['vs_bp']:.3f}" if np.isfinite(r["vs_bp"]) else "-"] for _, r in mm.iterrows()]
    head = ("**Thesis Table 6**: activation memory, the paper's order of growth made concrete (predicted from BP's "
            "per-stage peaks and the stages' sizes: hdist/papers/thesis/pipeline_mem.py `predicted`) vs the bytes the "
            "stages stored (MiB)" + data_note(df) + ". DNI's K L_s (its synthesizers' activations) is not among the "
            "pipeline's stored bytes, so its prediction and measurement are its O(L) part.\n\n")
    return {"memory": head + md_table(rows, ["model", "batch", "K", "algo", "paper", "predicted (MiB)",
                                             "measured (MiB)", "measured / predicted", "measured / BP"])}
