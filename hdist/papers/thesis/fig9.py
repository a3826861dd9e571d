"""Thesis fig. 9: the learning-rate upper bound of each layer (mNAG, B=128).

Every layer trains at lr 0.01 but one, probed at 1e1, 1e3, 1e5. A cell gives the epochs the run needs to reach
the target training loss: the thesis' 0.03 (FCN-5), 0.02 (CNN-5) and 1.0 (ResNet-8) on real data; on a
synthetic stand-in (whose loss floor differs) the loss the all-0.01 baseline ends at. ``*`` marks a run
that diverged (NaN/inf, or a final loss above its initial one), ``-`` one that never reached the target.
A layer's upper bound is the largest probed rate that did not diverge.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.thesis.large_batch import epochs_to, final_loss, per_run, run_table
from hdist.plots import data_note, figure, name_claims, run_as

TARGETS = {"fcn5": 0.03, "cnn5": 0.02, "resnet8": 1.0}
#: The thesis' batch (mNAG, B = 128): titles and claims name the batch run where it differs.
BATCH = 128


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: model, probed layer and rate, epochs to target, diverged."""
    runs = run_table(df, {"algo.probe_layer": None, "algo.probe_lr": None})
    fin, first = final_loss(df), per_run(df, "train_loss_full", "first")
    runs["final"] = fin.reindex(runs.index)
    runs["diverged"] = ~np.isfinite(runs["final"]) | (runs["final"] > first.reindex(runs.index))
    runs["target"] = np.nan
    runs["epochs"] = np.nan
    for model, g in runs.groupby("model"):
        base = g[g["algo.probe_layer"].isna()]
        stand_in = bool(g["stand_in_for"].fillna("").astype(bool).any()) if "stand_in_for" in g else False
        if stand_in or model not in TARGETS:
            target = float(base["final"].min()) if len(base) else math.nan
        else:
            target = TARGETS[model]
        sub = df[df["run_id"].isin(g.index)]
        ep = epochs_to(sub, "train_loss_full", target) if math.isfinite(target) else pd.Series(dtype=float)
        runs.loc[g.index, "target"] = target
        runs.loc[g.index, "epochs"] = ep.reindex(g.index).values
    return runs


def bounds(c: pd.DataFrame) -> pd.DataFrame:
    """Upper bound per (model, layer): the largest probed rate that did not diverge (NaN: all did)."""
    p = c[c["algo.probe_layer"].notna()]
    rows = []
    for (model, layer), g in p.groupby(["model", "algo.probe_layer"]):
        ok = g[~g["diverged"]]["algo.probe_lr"].astype(float)
        rows.append({"model": model, "layer": int(layer), "bound": float(ok.max()) if len(ok) else math.nan})
    return pd.DataFrame(rows, columns=["model", "layer", "bound"])


def plot(df: pd.DataFrame):
    c = cells(df)
    models = sorted(c["model"].unique())
    fig, axes = figure(max(1, len(models)), width=4.4, height=3.2,
                       title="thesis fig. 9: epochs to the target loss per probed layer rate (* diverged), "
                       f"{run_as(df, 'mNAG, B=128', models=(), batch=BATCH)}" + data_note(df))
    for ax, model in zip(axes, models):
        g = c[(c["model"] == model) & c["algo.probe_layer"].notna()]
        layers = sorted(g["algo.probe_layer"].astype(int).unique())
        lrs = sorted(g["algo.probe_lr"].astype(float).unique())
        grid = np.full((len(layers), len(lrs)), np.nan)
        for i, layer in enumerate(layers):
            for j, lr in enumerate(lrs):
                r = g[(g["algo.probe_layer"].astype(int) == layer) & (g["algo.probe_lr"].astype(float) == lr)]
                if len(r):
                    row = r.iloc[0]
                    text = "*" if row["diverged"] else ("-" if math.isnan(row["epochs"]) else f"{row['epochs']:.3g}")
                    grid[i, j] = row["epochs"] if not row["diverged"] else np.nan
                    ax.text(j, i, text, ha="center", va="center", fontsize=8)
        ax.imshow(grid, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(lrs)), [f"{v:g}" for v in lrs], fontsize=7)
        ax.set_yticks(range(len(layers)), [f"layer {v + 1}" for v in layers], fontsize=7)
        tgt = g["target"].iloc[0] if len(g) else math.nan
        ax.set_title(f"{run_as(df[df['model'] == model], model, batch=BATCH)} (target loss {tgt:.3g})", fontsize=9)
        ax.set_xlabel("learning rate of the probed layer")
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    c = cells(df)
    b = bounds(c)
    if b.empty:
        return name_claims([not_checked("learning-rate upper bounds differ greatly between layers",
                                        "bounds differ by >= 100x", "no probe runs")], df, "mNAG", models=(),
                           batch=BATCH)
    out = []
    for model, g in b.groupby("model"):
        finite = g["bound"].fillna(0.0)
        lo, hi = float(finite.min()), float(finite.max())
        spread = hi / lo if lo > 0 else math.inf if hi > 0 else 1.0
        desc = ", ".join(f"L{int(r.layer) + 1}: {r.bound:g}" for r in g.itertuples())
        who = run_as(df[df["model"] == model], model, batch=BATCH)
        out.append(Claim(f"{who}: learning-rate upper bounds differ greatly between layers",
                         "bounds differ by >= 100x between layers", f"{desc} (spread {spread:g}x)", spread >= 100))
    return out
