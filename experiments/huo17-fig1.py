"""huo17 Figure 1: SGD vs SVRG vs SGD_SVRG on MNIST, MLP 784-100-10.

Panels: full training loss, training error and test error against epochs. SGD is drawn at its
best tuned (alpha, beta): the grid point with the lowest final training loss (mean over seeds).
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.plots import curves, data_note, figure

PANELS = [("train_loss_full", "training loss"), ("train_error", "training error"), ("test_error", "test error")]
ALGO_LABEL = {"sgd": "SGD", "svrg": "SVRG", "sgd_svrg": "SGD_SVRG"}


def best_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Each algorithm at its best tuned setting (lowest final train loss, averaged over seeds)."""
    ev = df[df["metric"] == "train_loss_full"]
    tune = [c for c in ("algo.lr", "algo.beta") if c in df.columns]
    keep = []
    for _algo, g in ev.groupby("algo"):
        final = g.sort_values("step").groupby("run_id").tail(1)
        if tune:
            score = final.groupby(tune, dropna=False)["value"].mean()
            best = score.idxmin()
            best = best if isinstance(best, tuple) else (best,)
            mask = pd.Series(True, index=final.index)
            for col, val in zip(tune, best):
                mask &= final[col] == val
            keep += list(final[mask]["run_id"])
        else:
            keep += list(final["run_id"])
    out = df[df["run_id"].isin(keep)].copy()
    out["method"] = out["algo"].map(lambda a: ALGO_LABEL.get(a, a))
    return out


def plot(df: pd.DataFrame):
    d = best_runs(df)
    fig, axes = figure(3, title="huo17 fig. 1: MNIST, MLP 784-100-10" + data_note(df))
    for ax, (metric, label) in zip(axes, PANELS):
        curves(ax, d, metric, x="epoch", by="method", ylabel=label, logy=metric == "train_loss_full")
    fig.tight_layout()
    return fig


def _final(d: pd.DataFrame, method: str, metric: str) -> float:
    g = d[(d["method"] == method) & (d["metric"] == metric)]
    return float(g.sort_values("step").groupby("run_id").tail(1)["value"].mean())


def _at_epoch(d: pd.DataFrame, method: str, metric: str, epoch: float) -> float:
    g = d[(d["method"] == method) & (d["metric"] == metric)]
    g = g.assign(dist=(g["epoch"] - epoch).abs())
    return float(g[g["dist"] == g["dist"].min()]["value"].mean())


def check(df: pd.DataFrame) -> list[Claim]:
    d = best_runs(df)
    methods = set(d["method"])
    claims = []
    if "SGD" in methods:
        first = d[(d["method"] == "SGD") & (d["metric"] == "train_loss_full")].sort_values("step")
        start = float(first.groupby("run_id").head(1)["value"].mean())
        end = _final(d, "SGD", "train_loss_full")
        claims.append(Claim("SGD with the tuned polynomial learning rate decreases the training loss",
                            "decreasing curve (fig. 1a)", f"{start:.4g} -> {end:.4g}", end < start))
    if {"SGD", "SVRG"} <= methods:
        e1 = 1.0
        sgd1, svrg1 = _at_epoch(d, "SGD", "train_loss_full", e1), _at_epoch(d, "SVRG", "train_loss_full", e1)
        claims.append(Claim("SGD leads early: lower training loss than SVRG after the first epoch",
                            "SGD below SVRG early", f"SGD {sgd1:.4g} vs SVRG {svrg1:.4g}", sgd1 < svrg1))
        sgd_f, svrg_f = _final(d, "SGD", "train_loss_full"), _final(d, "SVRG", "train_loss_full")
        claims.append(Claim("SVRG wins later: lower final training loss than SGD", "SVRG below SGD later",
                            f"SVRG {svrg_f:.4g} vs SGD {sgd_f:.4g}", svrg_f < sgd_f))
    else:
        claims.append(not_checked("SGD leads early, SVRG wins later", "SGD faster first, then SVRG",
                                  "no SVRG runs (the svrg algorithm is not implemented yet)"))
    if {"SGD", "SVRG", "SGD_SVRG"} <= methods:
        finals = {m: _final(d, m, "train_loss_full") for m in ("SGD", "SVRG", "SGD_SVRG")}
        claims.append(Claim("SGD_SVRG is best: lowest final training loss", "SGD_SVRG lowest",
                            ", ".join(f"{k} {v:.4g}" for k, v in finals.items()),
                            finals["SGD_SVRG"] <= min(finals.values())))
    else:
        claims.append(not_checked("SGD_SVRG is best", "SGD_SVRG lowest loss and error",
                                  "no SGD_SVRG runs (sgd_svrg is not implemented yet)"))
    return claims
