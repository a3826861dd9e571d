"""Thesis fig. 10: LARS (20-epoch warmup + polynomial decay, linear scaling) for B = 128..8192 vs mNAG at 8192.

Panels per model: training loss and test accuracy (1 - test error) against epochs, one line per method and B.
B = micro-batch x accumulation steps (the smaller scales shrink the micro-batch, so B reads 4, 32, 256 at smoke).
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, curve, not_checked, settle
from hdist.papers.thesis.large_batch import final_loss
from hdist.plots import batch_of, curves, data_note, figure, run_as

MODELS = ("resnet56", "vgg11_bn")
#: "Similar curves across B": every LARS B's final training loss within this factor of the lowest.
SIMILAR = 1.25
#: "mNAG much worse": its final training loss at least this many times LARS's at the largest B (or diverged).
MUCH_WORSE = 2.0
#: The thesis' batches B (128 x 1, 8, 64 accumulation steps): claims name the batches run where they differ.
BATCHES = (128, 1024, 8192)


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    d = df.copy()
    d["B"] = [int(v) if v == v else None for v in batch_of(d)]
    d["method"] = [f"{str(al).upper() if al == 'lars' else 'mNAG'} B={bb}" for al, bb in zip(d["algo"], d["B"])]
    d.loc[d["metric"] == "test_error", "value"] = 1 - d.loc[d["metric"] == "test_error", "value"]
    d.loc[d["metric"] == "test_error", "metric"] = "test_acc"
    return d


def plot(df: pd.DataFrame):
    d = labelled(df)
    models = [m for m in MODELS if (d["model"] == m).any()] or sorted(d["model"].unique())
    fig, axes = figure(2 * len(models), width=3.8, title="thesis fig. 10: LARS with warmup + poly decay across B "
                       "vs mNAG at the largest B" + data_note(df))
    for i, model in enumerate(models):
        g = d[d["model"] == model]
        model = run_as(g, model, batch=BATCHES)
        curves(axes[2 * i], g, "train_loss_full", by="method", ylabel=f"{model}: training loss", logy=True)
        curves(axes[2 * i + 1], g, "test_acc", by="method", ylabel=f"{model}: test accuracy")
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    d = labelled(df)
    fin = final_loss(d)
    runs = d.drop_duplicates("run_id").set_index("run_id")
    out = []
    for m in sorted(runs["model"].unique()):
        r = runs[runs["model"] == m]
        model = run_as(df[df["model"] == m], m, batch=BATCHES)
        lars = r[r["algo"] == "lars"]
        mnag = r[r["algo"] == "mnag"]
        if lars.empty:
            out.append(not_checked(f"{model}: LARS curves similar across B", "similar", "no LARS runs"))
            continue
        lf = fin.reindex(lars.index)
        spread = float(lf.max() / lf.min()) if lf.min() > 0 else float("inf")
        desc = ", ".join(f"B={int(b)}: {v:.3g}" for b, v in zip(lars["B"], lf))
        arms = {f"LARS B={int(b)}": curve(d[d["run_id"] == rid], "train_loss_full") for rid, b in lars["B"].items()}
        out.append(settle(f"{model}: LARS reaches similar final training loss for every B (linear scaling; "
                          f"max/min within {SIMILAR:g}x)", "similar curves across B=128..8192",
                          f"{desc} (max/min {spread:.3g})", spread <= SIMILAR, arms=arms, relation="similar"))
        if mnag.empty:
            out.append(not_checked(f"{model}: mNAG at the largest B is much worse than LARS", "much worse",
                                   "no mNAG runs"))
            continue
        big = lars[lars["B"] == lars["B"].max()]
        lv, mv = float(fin.reindex(big.index).min()), float(fin.reindex(mnag.index).min())
        lbest = big.index[int(fin.reindex(big.index).fillna(float("inf")).argmin())]
        out.append(settle(f"{model}: mNAG at the largest B ends with a much higher training loss than LARS "
                          f"(at least {MUCH_WORSE:g}x, or diverges)", "mNAG much worse at B=8192 (diverges on VGG-11)",
                          f"mNAG {mv:.3g} vs LARS {lv:.3g}", mv >= MUCH_WORSE * lv,
                          arms={"LARS": curve(d[d["run_id"] == lbest], "train_loss_full")}, a=mv, b=lv))
    return out
