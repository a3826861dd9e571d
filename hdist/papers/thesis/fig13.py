"""Thesis fig. 13: B=8192, 20 epochs, gamma_scale 6.4: LARS with 5/10/20 warmup epochs vs CLARS without warmup.

Panels per model: training loss and test accuracy against epochs. Claim: CLARS beats every LARS warmup "by a large
margin", stated as a factor: CLARS's final training loss at most 1/MARGIN of the best LARS warmup's. The title
names the batch the runs used (smoke and small scale run far below the thesis' B = 8192).
"""

from __future__ import annotations

import math

import pandas as pd

from hdist.claims import Claim, curve, not_checked, settle
from hdist.papers.thesis.large_batch import column, final_loss
from hdist.plots import curves, data_note, figure, run_as

MODELS = ("resnet56", "vgg11_bn")
#: "A large margin": the best LARS warmup's final training loss is at least this many times CLARS's.
MARGIN = 2.0
#: The thesis' batch B (128 x 64 accumulation steps).
BATCH = 8192


def batch_note(df: pd.DataFrame) -> str:
    """"B=8192" as the thesis, or "B=8192 (run as B=8 not 8192)" for the batch the runs actually used
    (micro-batch x accumulation steps x workers: :func:`hdist.plots.batch_of`)."""
    return run_as(df, f"B={BATCH}", models=(), batch=BATCH)


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    d = df.copy()
    warm = column(d, "algo.warmup_epochs", 0)
    d["method"] = ["CLARS (no warmup)" if a == "clars" else f"LARS warmup {float(w):g}"
                   for a, w in zip(d["algo"], warm)]
    te = d["metric"] == "test_error"
    d.loc[te, "value"] = 1 - d.loc[te, "value"]
    d.loc[te, "metric"] = "test_acc"
    return d


def plot(df: pd.DataFrame):
    d = labelled(df)
    models = [m for m in MODELS if (d["model"] == m).any()] or sorted(d["model"].unique())
    fig, axes = figure(2 * len(models), width=3.8, title=f"thesis fig. 13: LARS + warmup vs CLARS, {batch_note(df)}"
                       + data_note(df))
    for i, model in enumerate(models):
        g = d[d["model"] == model]
        curves(axes[2 * i], g, "train_loss_full", by="method", ylabel=f"{model}: training loss", logy=True)
        curves(axes[2 * i + 1], g, "test_acc", by="method", ylabel=f"{model}: test accuracy")
    fig.tight_layout()
    return fig


def compare(df: pd.DataFrame, claim_model: str | None = None) -> list[Claim]:
    """CLARS's final training loss against the best LARS warmup's, per model."""
    d = labelled(df)
    fin = final_loss(d)
    runs = d.drop_duplicates("run_id").set_index("run_id")
    out = []
    for model in sorted(runs["model"].unique()):
        r = runs[runs["model"] == model]
        c, lars = r[r["algo"] == "clars"], r[r["algo"] == "lars"]
        if c.empty or lars.empty:
            out.append(not_checked(f"{model}: CLARS beats LARS with warmup", "CLARS lower loss", "missing runs"))
            continue
        cv, lv = float(fin.reindex(c.index).min()), float(fin.reindex(lars.index).min())
        best = lars.index[int(fin.reindex(lars.index).argmin())] if math.isfinite(lv) else None
        which = r.loc[best, "method"] if best is not None else "all diverged"
        cbest = c.index[int(fin.reindex(c.index).fillna(math.inf).argmin())]
        arms = {"CLARS": curve(d[d["run_id"] == cbest], "train_loss_full")}
        if best is not None:
            arms["LARS"] = curve(d[d["run_id"] == best], "train_loss_full")
        out.append(settle(f"{model} at {batch_note(d[d['model'] == model])}: CLARS without warmup ends with a "
                          f"training loss at most 1/{MARGIN:g} of LARS's with its best warmup (a large margin)",
                          "CLARS wins by a large margin", f"CLARS {cv:.3g} vs {which} {lv:.3g} "
                          f"(ratio {lv / cv if cv > 0 else math.inf:.2f}x)", cv * MARGIN <= lv, arms=arms, a=cv, b=lv))
    return out


def check(df: pd.DataFrame) -> list[Claim]:
    return compare(df)
