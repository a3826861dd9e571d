"""Thesis fig. 17 (ch. 5.5.1): loss of ResNet-8 on CIFAR-10, BP vs DNI vs DDG, one split after layer 1/3/5/7.

Two rows of four panels (one per split position): the mini-batch training loss and the test loss against
epochs, BP (unsplit; the same at any cut) in every panel beside DDG and DNI cut there. Fig. 18 draws the
same runs' top-1 accuracy with :func:`draw` and :func:`claims` of this module (``kind="top1"``); fig. 19
reuses them over the number of split points.

Claims (thesis 5.5.1): "DDG performs consistently well when we place the split point at deeper positions
3, 5 or 7" -- at every position DDG's final training loss is within ``LOSS_TOL`` (relative) of BP's;
"the performance of DNI degrades as we vary the positions and it cannot even converge when the split point
is at layer 7" -- DNI's final loss at layer 7 is above its loss at layer 1 and above DDG's at layer 7.
"Final" = the mean of the last 3 logged mini-batch losses (one mini-batch is noisy). ``tables`` lists the
final losses and top-1 per position (the thesis gives curves only: its column says what they show).
"""

from __future__ import annotations

import math

import pandas as pd

from hdist.claims import Claim, curve, not_checked, settle
from hdist.models.resnet import RESNET8_SPLIT_POINTS
from hdist.papers.thesis.pipeline_time import NAMES, accuracy_rows, curve_panel, final, md_table
from hdist.plots import data_note, figure, name_claims, run_as

#: DDG is "close to BP" when its final training loss is within this fraction of BP's. The thesis' curves
#: overlap to within a line width after 300 epochs; 10 % leaves room for short runs' noise.
LOSS_TOL = 0.10
#: The thesis' network and batch (5.5.1): titles and claims name the model and batch run where they differ.
NETWORK, BATCH = "ResNet-8", 128
#: Top-1 accuracy: DDG within this many percentage points of BP (fig. 18).
TOP1_TOL = 3.0
#: Thesis layer after which stage 2 begins, from the cut index (inverse of RESNET8_SPLIT_POINTS).
LAYER_OF_CUT = {v: k for k, v in RESNET8_SPLIT_POINTS.items()}


def _cuts(v) -> tuple[int, ...]:
    """``algo.cuts`` as logged (a list, its string, or null) -> a tuple of ints."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):  # typed frames hold NA
        return ()
    if isinstance(v, str):
        v = [x for x in v.strip("[] ").split(",") if x.strip()]
    return tuple(int(x) for x in v)


def with_split(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``splits``: the thesis layers after which the model is cut (a tuple; () for unsplit BP)."""
    d = df.copy()
    col = d["algo.cuts"] if "algo.cuts" in d.columns else pd.Series([None] * len(d), index=d.index)
    d["splits"] = [tuple(LAYER_OF_CUT.get(c, c) for c in _cuts(v)) for v in col]
    return d


def _metric_rows(df: pd.DataFrame, kind: str) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """(metric, row label) pairs of the figure and the rows to draw them from."""
    if kind == "top1":
        return [("test_top1", "test top-1 (%)")], pd.concat([df, accuracy_rows(df)], ignore_index=True)
    return [("train_loss", "training loss"), ("test_loss", "test loss")], df


def draw(df: pd.DataFrame, kind: str = "loss", title: str = "thesis fig. 17: {net}, one split point"):
    """Panels per split configuration (columns) and metric (rows); BP in every column. ``{net}`` in ``title``:
    the network, with the model and batch run where they differ (:func:`hdist.plots.run_as`)."""
    d = with_split(df)
    rows, d = _metric_rows(d, kind)
    bp = d[d["algo"] == "bp"]
    split = sorted({s for s in d.loc[d["algo"] != "bp", "splits"]}, key=lambda s: (len(s), s)) or [()]
    fig, axes = figure(len(split) * len(rows), width=3.4, title=title.format(net=run_as(df, NETWORK, batch=BATCH))
                       + data_note(df))
    fig.set_size_inches(3.4 * len(split), 3.0 * len(rows))
    # figure() gives one row of panels: lay them out as rows x columns.
    for ax in axes:
        ax.remove()
    grid = fig.subplots(len(rows), len(split), squeeze=False)
    for j, s in enumerate(split):
        part = pd.concat([bp, d[(d["algo"] != "bp") & (d["splits"] == s)]], ignore_index=True)
        for i, (metric, label) in enumerate(rows):
            where = "split after layer " + ", ".join(map(str, s)) if s else "unsplit"
            curve_panel(grid[i][j], part, metric, title=where if i == 0 else None, ylabel=label)
    fig.tight_layout()
    return fig


def plot(df: pd.DataFrame):
    return draw(df, "loss")


def finals(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: algo, splits, final training loss, final test loss, final test top-1 (%)."""
    d = with_split(df)
    runs = d.groupby("run_id").agg(algo=("algo", "first"), splits=("splits", "first"))
    runs["train_loss"] = final(d, "train_loss")
    runs["test_loss"] = final(d, "test_loss", tail=1)
    runs["top1"] = 100.0 * (1.0 - final(d, "test_error", tail=1))
    return runs.reset_index()


def arm_curve(df: pd.DataFrame, algo: str, splits=None, metric: str = "train_loss") -> list[float]:
    """One arm's ``metric`` curve (its seeds averaged): ``algo`` with ``splits`` (any split for None)."""
    d = with_split(df)
    d = d[d["algo"] == algo]
    if splits is not None:
        d = d[d["splits"] == splits]
    return curve(d, metric)


def _mean(runs: pd.DataFrame, algo: str, splits=None, col: str = "train_loss") -> float:
    r = runs[runs["algo"] == algo]
    if splits is not None:
        r = r[r["splits"] == splits]
    return float(r[col].mean()) if len(r) else math.nan


def claims(df: pd.DataFrame, kind: str = "loss") -> list[Claim]:
    runs = finals(df)
    bp_loss, bp_top1 = _mean(runs, "bp"), _mean(runs, "bp", col="top1")
    ddg = runs[runs["algo"] == "ddg"]
    out: list[Claim] = []
    if math.isnan(bp_loss) or ddg.empty:
        return name_claims([not_checked("DDG stays close to BP at every split", "curves overlap",
                                        "needs BP and DDG runs")], df, NETWORK, batch=BATCH)
    for s in sorted(set(ddg["splits"]), key=lambda s: (len(s), s)):
        where = "after layer " + ", ".join(map(str, s))
        if kind == "top1":
            v = _mean(runs, "ddg", s, "top1")
            arms = {"BP": arm_curve(df, "bp", metric="test_error"), "DDG": arm_curve(df, "ddg", s, "test_error")}
            out.append(settle(f"DDG's test top-1 is close to BP's with the split {where}", "curves overlap",
                              f"DDG {v:.1f}% vs BP {bp_top1:.1f}% (tolerance {TOP1_TOL} points)",
                              bool(abs(v - bp_top1) <= TOP1_TOL), arms=arms, error=True, relation="similar"))
        else:
            v = _mean(runs, "ddg", s)
            gap = (v - bp_loss) / bp_loss
            out.append(settle(f"DDG's training loss is close to BP's with the split {where}", "curves overlap",
                              f"DDG {v:.4g} vs BP {bp_loss:.4g} (gap {gap:+.1%}, tolerance {LOSS_TOL:.0%})",
                              bool(gap <= LOSS_TOL), arms={"BP": arm_curve(df, "bp"), "DDG": arm_curve(df, "ddg", s)},
                              relation="similar"))
    dni = runs[runs["algo"] == "dni"]
    if kind == "loss" and len(dni):
        shallow, deep = min(dni["splits"]), max(dni["splits"])
        a, b, c = _mean(runs, "dni", shallow), _mean(runs, "dni", deep), _mean(runs, "ddg", deep)
        # DNI not training at depth is the claim; DDG there must have trained for "above DDG's" to mean anything.
        out.append(settle(f"DNI degrades as the split deepens: its loss with the split after layer {deep[0]} is "
                          f"above its loss after layer {shallow[0]} and above DDG's there",
                          "DNI cannot converge with the split at layer 7",
                          f"DNI {b:.4g} at {deep[0]} vs {a:.4g} at {shallow[0]}; DDG {c:.4g} at {deep[0]}",
                          bool(b > a and b > c), arms={"DDG": arm_curve(df, "ddg", deep)}, a=b, b=max(a, c)))
    return name_claims(out, df, NETWORK, batch=BATCH)


def check(df: pd.DataFrame) -> list[Claim]:
    return claims(df, "loss")


def tables(df: pd.DataFrame) -> dict[str, str]:
    runs = finals(df)
    rows = []
    for (algo, s), g in runs.groupby(["algo", "splits"], sort=True):
        where = ", ".join(map(str, s)) if s else "none"
        paper = {"bp": "reference", "ddg": "close to BP at every split",
                 "dni": "degrades with depth; fails at 7"}.get(algo, "")
        rows.append([NAMES.get(algo, algo), where, float(g["train_loss"].mean()), float(g["test_loss"].mean()),
                     float(g["top1"].mean()), len(g), paper])
    return {"finals": md_table(["method", "split after layer", "final train loss", "final test loss",
                                "test top-1 (%)", "runs", "thesis (curves)"], rows)}
