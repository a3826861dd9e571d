"""Thesis fig. 27 (ch. 6.5.3): memory of BP, DDG and Features Replay against the number of modules K, ResNet-164,
ResNet-101 and ResNet-152.

One panel per model: the pipeline's activation memory (sum over stages of ``peak_mem_bytes/<k>``, MiB) against K,
one line per algorithm. ``tables`` gives figures/thesis-fig27-memory.md (bytes per K and algorithm, ratios to BP).
Claims, per model: FR's memory is close to BP's at every K (at most ``CLOSE`` x BP: the benchmark (b) goal), and
DDG's is more than twice BP's at K = 4 (the thesis' words).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.thesis.pipeline_mem import md_table, memory_model, memory_panel, mib
from hdist.plots import data_note, figure, model_label

#: "Close": FR at most this multiple of BP's memory (issue 8's benchmark (b) goal: FR <= 1.25 x BP at K = 4).
CLOSE = 1.25
#: The thesis: "when K = 4, the memory consumption of DDG is more than two times of ... BP".
DDG_TIMES = 2.0
#: The thesis' networks and batch (6.5.1): titles and claims name the model and batch run where they differ.
PAPER = {"resnet164": "ResNet-164", "resnet101": "ResNet-101", "resnet152": "ResNet-152"}
BATCH = 128


def plot(df: pd.DataFrame):
    mm = memory_model(df)
    models = sorted(mm["model"].unique()) or ["(no runs)"]
    who = model_label(df, None, PAPER, BATCH)
    fig, axes = figure(len(models), title=f"thesis fig. 27: memory vs modules K, {who}" + data_note(df))
    for ax, model in zip(axes, models):
        memory_panel(ax, mm, model)
        ax.set_title(model_label(df, model, PAPER, BATCH), fontsize=9)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    mm = memory_model(df)
    out = []
    if mm.empty:
        who = model_label(df, None, PAPER, BATCH)
        return [not_checked(f"{who}: FR's memory close to BP's; DDG > 2x BP at K = 4", "fig. 27", "no memory rows")]
    for model, g in mm.groupby("model"):
        who = model_label(df, model, PAPER, BATCH)
        fr = g[(g["algo"] == "fr") & (g["K"] > 1)].dropna(subset=["vs_bp"])
        name = f"{who}: FR's memory is close to BP's (<= {CLOSE} x BP at every K)"
        if fr.empty:
            out.append(not_checked(name, "FR and BP very close", "no FR run at K > 1 with a BP run beside it"))
        else:
            worst = fr.loc[fr["vs_bp"].idxmax()]
            out.append(Claim(name, "FR and BP very close", "FR / BP = " + ", ".join(
                f"{v:.3f} (K={int(k)})" for k, v in zip(fr["K"], fr["vs_bp"])), bool(worst["vs_bp"] <= CLOSE)))
        ddg = g[(g["algo"] == "ddg") & (g["K"] == 4)].dropna(subset=["vs_bp"])
        name = f"{who}: DDG's memory is more than {DDG_TIMES:g} x BP's at K = 4"
        if ddg.empty:
            out.append(not_checked(name, "> 2 x BP", "no DDG run at K = 4 with a BP run beside it"))
        else:
            v = float(ddg["vs_bp"].max())
            out.append(Claim(name, "> 2 x BP", f"DDG / BP = {v:.2f} ({mib(float(ddg['measured'].max()))} vs "
                                               f"{mib(float(ddg['measured'].max()) / v)} MiB)", bool(v > DDG_TIMES)))
    return out


def tables(df: pd.DataFrame) -> dict[str, str]:
    mm = memory_model(df)
    rows = [[r["model"], int(r["batch"]), int(r["K"]), r["algo"].upper(), mib(r["measured"]),
             " / ".join(mib(x) for x in r["mem_k"]),
             f"{r['vs_bp']:.3f}" if np.isfinite(r["vs_bp"]) else "-"] for _, r in mm.iterrows()]
    head = ("**Thesis fig. 27**: activation memory of the pipeline (sum over the K stages of the peak bytes each "
            "stored), MiB" + data_note(df) + ". Paper: FR and BP very close; DDG > 2 x BP at K = 4.\n\n")
    return {"memory": head + md_table(rows, ["model", "batch", "K", "algo", "total (MiB)", "per stage (MiB)",
                                             "/ BP"])}
