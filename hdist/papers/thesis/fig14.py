"""Thesis fig. 14: ResNet-50, DenseNet-121, MobileNetV2 on ImageNet (here an ImageNet-shaped synthetic stand-in
without files), B = 16384 by accumulation: LARS (eta 1e-3, 5-epoch warmup, poly decay) vs CLARS (eta 1e-2, no
warmup). Panels per model: training loss and test error against epochs.
"""

from __future__ import annotations

import math

import pandas as pd

from hdist.claims import Claim, curve, not_checked, settle
from hdist.papers.thesis.large_batch import final_loss, per_run
from hdist.plots import curves, data_note, figure, run_as

MODELS = ("resnet50", "densenet121", "mobilenetv2")
#: The thesis' batch B (512 x 32 accumulation steps): claims name the batch run where it differs.
BATCH = 16384


def plot(df: pd.DataFrame):
    d = df.assign(method=df["algo"].str.upper())
    models = [m for m in MODELS if (d["model"] == m).any()] or sorted(d["model"].unique())
    fig, axes = figure(2 * len(models), width=3.6, title="thesis fig. 14: LARS (warmup) vs CLARS (none), "
                       "ImageNet models" + data_note(df))
    for i, model in enumerate(models):
        g = d[d["model"] == model]
        model = run_as(g, model, batch=BATCH)
        curves(axes[2 * i], g, "train_loss_full", by="method", ylabel=f"{model}: training loss")
        curves(axes[2 * i + 1], g, "test_error", by="method", ylabel=f"{model}: test error")
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    fin = final_loss(df)
    err = per_run(df, "test_error")
    runs = df.drop_duplicates("run_id").set_index("run_id")
    out = []
    for m in sorted(runs["model"].unique()):
        r = runs[runs["model"] == m]
        model = run_as(df[df["model"] == m], m, batch=BATCH)
        c, lars = r[r["algo"] == "clars"].index, r[r["algo"] == "lars"].index
        if c.empty or lars.empty:
            out.append(not_checked(f"{model}: CLARS converges faster than LARS", "CLARS faster", "missing runs"))
            continue
        cv, lv = float(fin.reindex(c).min()), float(fin.reindex(lars).min())
        # The compared arms: each algorithm's best run (lowest final loss), which must have trained.
        best = {name: df[df["run_id"] == fin.reindex(ids).fillna(math.inf).idxmin()] for name, ids in
                (("CLARS", c), ("LARS", lars))}
        loss = {k: curve(v, "train_loss_full") for k, v in best.items()}
        out.append(settle(f"{model}: CLARS converges faster (lower final training loss) than LARS",
                          "CLARS faster", f"CLARS {cv:.4g} vs LARS {lv:.4g}", cv < lv, arms=loss, a=cv, b=lv))
        ce, le = float(err.reindex(c).min()), float(err.reindex(lars).min())
        name = f"{model}: CLARS generalises at least as well (test error)"
        if not (math.isfinite(ce) and math.isfinite(le)):
            out.append(not_checked(name, "CLARS lower test error", "no test error of both"))
            continue
        out.append(settle(name, "CLARS lower test error", f"CLARS {ce:.4g} vs LARS {le:.4g}", ce <= le,
                          arms={k: curve(v, "test_error") for k, v in best.items()}, error=True, a=ce, b=le))
    return out
