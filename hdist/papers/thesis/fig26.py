"""Thesis fig. 26 (ch. 6.5.2): sufficient-direction constant sigma per module over epochs, Features Replay, K = 4.

One panel per model: ``sigma/<k>`` against epochs, one line per module. Claims per model: sigma > 0 at every
measurement; the lowest module's mean sigma is smaller in the first half of the epochs than in the second; in the
second half it is near 1 (at least ``NEAR_ONE``). The last module's sigma is 1 by construction (its gradient is exact).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.thesis.pipeline_mem import stage_rows
from hdist.plots import data_note, figure, legend, model_label

#: "Close to 1" for the second half's mean sigma of the lowest module (the figure shows about 0.8-1 late).
NEAR_ONE = 0.8
#: The thesis' networks and batch (6.5.1-6.5.2): titles and claims name the model and batch run where they differ.
PAPER = {"resnet164": "ResNet-164", "resnet101": "ResNet-101"}
BATCH = 128


def sigma(df: pd.DataFrame) -> pd.DataFrame:
    return stage_rows(df, "sigma")


def plot(df: pd.DataFrame):
    s = sigma(df)
    models = sorted(s["model"].unique()) or ["(no runs)"]
    who = model_label(df, None, PAPER, BATCH)
    fig, axes = figure(len(models), title=f"thesis fig. 26: sufficient-direction constant sigma (FR), {who}"
                       + data_note(df))
    for ax, model in zip(axes, models):
        g = s[s["model"] == model]
        for k, gk in g.groupby("stage"):
            gk = gk.sort_values("epoch")
            ax.plot(gk["epoch"], gk["value"], marker="o", ms=2, label=f"module {k}")
        ax.axhline(0, color="k", lw=0.6)
        ax.axhline(1, color="k", lw=0.6, ls=":")
        ax.set_xlabel("epochs")
        ax.set_ylabel("sigma")
        ax.set_title(model_label(df, model, PAPER, BATCH), fontsize=9)
        ax.grid(alpha=0.3)
        legend(ax)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    s = sigma(df)
    if s.empty:
        who = model_label(df, None, PAPER, BATCH)
        return [not_checked(f"{who}: sigma > 0 throughout", "sigma > 0", "no sigma rows")]
    out = []
    for model, g in s.groupby("model"):
        name = model_label(df, model, PAPER, BATCH)
        lo = float(g["value"].min())
        out.append(Claim(f"{name}: sigma > 0 for every module at every measurement", "sigma > 0 all the time",
                         f"min {lo:.3g} over {len(g)} measurements", bool(lo > 0)))
        low = g[g["stage"] == 1].sort_values("epoch")
        half = float(g["epoch"].max()) / 2
        early, late = low[low["epoch"] <= half]["value"], low[low["epoch"] > half]["value"]
        what = f"{name}: the lowest module's sigma is smaller in the first half of training than in the second"
        if early.empty or late.empty:
            out.append(not_checked(what, "small early, near 1 later", "needs measurements in both halves"))
            continue
        e, lt = float(early.mean()), float(late.mean())
        out.append(Claim(what, "small early, near 1 later", f"mean {e:.3f} (first half) vs {lt:.3f} (second half)",
                         bool(e < lt)))
        out.append(Claim(f"{name}: the lowest module's sigma is near 1 in the second half (>= {NEAR_ONE})",
                         "close to 1", f"mean {lt:.3f}", bool(lt >= NEAR_ONE and np.isfinite(lt))))
    return out
