"""Thesis fig. 12: the gradient variance factor M_k of each layer over training (mNAG, lr 0.001, B=128).

One panel per model: M_k of each layer's weight tensor against epochs (log scale), from the ``m_k/<tensor>``
rows that the run logged every epoch. Claim: top layers (near the output) have larger M_k: the top layer's M_k
(geometric mean over epochs) is above every other layer's, not only the bottom one's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdist.claims import Claim, not_checked, settle
from hdist.plots import data_note, figure, legend, run_as

#: The thesis' batch (mNAG, B = 128, as fig. 9): titles and claims name the batch run where it differs.
BATCH = 128


def mk(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of M_k for weight tensors, with ``layer`` (the tensor name) and ``depth`` (its order in the model)."""
    d = df[df["metric"].str.startswith("m_k/") & df["metric"].str.endswith("weight")].copy()
    d["layer"] = d["metric"].str[len("m_k/"):]
    order = {}
    for model, g in d.groupby("model"):
        names = list(dict.fromkeys(g.sort_values(["step"])["layer"]))  # logged in parameter order
        order.update({(model, n): i for i, n in enumerate(names)})
    d["depth"] = [order[(m, n)] for m, n in zip(d["model"], d["layer"])]
    return d


def plot(df: pd.DataFrame):
    d = mk(df)
    models = sorted(d["model"].unique()) or ["(no runs)"]
    fig, axes = figure(len(models), title="thesis fig. 12: variance factor M_k per layer" + data_note(df))
    for ax, model in zip(axes, models):
        g = d[d["model"] == model]
        for (depth, layer), gl in g.groupby(["depth", "layer"]):
            gl = gl.sort_values("epoch")
            ax.plot(gl["epoch"], gl["value"], marker="o", ms=2, label=f"{depth + 1}: {layer}")
        ax.set_yscale("log")
        ax.set_xlabel("epochs")
        ax.set_ylabel("M_k")
        ax.set_title(run_as(df[df["model"] == model], str(model), batch=BATCH), fontsize=9)
        ax.grid(alpha=0.3)
        legend(ax, fontsize=6)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    d = mk(df)
    if d.empty:
        return [not_checked("top layers have larger M_k", "M_k grows towards the output", "no M_k rows")]
    out = []
    for m, g in d.groupby("model"):
        model = run_as(df[df["model"] == m], str(m), batch=BATCH)
        mean = g.groupby("depth")["value"].apply(lambda v: float(np.exp(np.log(v).mean())))  # geometric mean
        if len(mean) < 2:
            out.append(not_checked(f"{model}: the top layer has the largest M_k", "M_k of top layers larger",
                                   "fewer than two layers"))
            continue
        top, rest = float(mean.iloc[-1]), mean.iloc[:-1]
        largest = int(rest.idxmax())
        names = dict(zip(g["depth"], g["layer"]))
        out.append(settle(f"{model}: the top layer has a larger variance factor M_k than every other layer",
                          "M_k of top layers larger",
                          f"top {top:.3g} vs the largest other, layer {largest + 1} ({names[largest]}) "
                          f"{float(rest.max()):.3g}; bottom {float(mean.iloc[0]):.3g} (geometric means over epochs)",
                          top > float(rest.max()), a=top, b=float(rest.max())))
    return out
