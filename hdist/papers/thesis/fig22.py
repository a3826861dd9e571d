"""Thesis fig. 22 (ch. 5.5.2): ResNet-56 and ResNet-110 on CIFAR-10, BP vs SGD-DDG in two modules.

One column per network (the ``net`` key of the experiment; at smoke scale both arms run the ResNet-8
stand-in, the column says so), rows: training loss against epochs, test top-1 against epochs, test top-1
against time (real seconds: BP in one 1-thread process, DDG in two 1-thread stage processes).
``thesis-fig23`` (CIFAR-100) draws and checks with this module and its own Table 5 values.

Claims (thesis 5.5.2): "DDG and BP admit similar convergence rates" -- DDG's final training loss within
``LOSS_TOL`` of BP's for each network; "DDG converges faster when we compare the accuracy regarding
computation time" -- DDG's training time for the same epochs is below BP's. ``tables`` lists the best test
top-1 of each run beside the thesis' Table 5.
"""

from __future__ import annotations

import math

import pandas as pd

from hdist.claims import Claim, curve, loads_of, not_checked, settle
from hdist.papers.thesis.pipeline_time import NAMES, final, md_table, nets, network_grid, run_times
from hdist.plots import run_as

#: "Similar convergence rates": DDG's final training loss within 10 % of BP's.
LOSS_TOL = 0.10
#: The thesis' batch (5.5.2): titles and claims name the batch run where it differs.
BATCH = 128
#: Thesis Table 5, best top-1 (%) on the test data: (network, method) -> value, per dataset.
TABLE5 = {"cifar10": {("resnet56", "bp"): 93.12, ("resnet56", "ddg"): 93.11,
                      ("resnet110", "bp"): 93.53, ("resnet110", "ddg"): 93.41},
          "cifar100": {("resnet56", "bp"): 69.79, ("resnet56", "ddg"): 70.17,
                       ("resnet110", "bp"): 71.90, ("resnet110", "ddg"): 71.39}}


def draw(df: pd.DataFrame, title: str):
    return network_grid(df, title, [("train_loss", "epoch", "training loss"), ("test_top1", "epoch", "test top-1 (%)"),
                                    ("test_top1", "wall_s", "test top-1 (%)")], batch=BATCH)


def plot(df: pd.DataFrame):
    return draw(df, "thesis fig. 22: ResNet-56/110 on CIFAR-10, 2 modules")


def per_run(df: pd.DataFrame) -> pd.DataFrame:
    t = run_times(df)
    if t.empty:
        return t
    net = df.groupby("run_id").apply(lambda g: nets(g).iloc[0], include_groups=False)
    err = df[df["metric"] == "test_error"].groupby("run_id")["value"].min()
    loss = final(df, "train_loss")
    t["net"] = [net.get(r) for r in t["run_id"]]
    t["best_top1"] = [100.0 * (1.0 - float(err.get(r, math.nan))) for r in t["run_id"]]
    t["final_loss"] = [float(loss.get(r, math.nan)) for r in t["run_id"]]
    return t


def check(df: pd.DataFrame) -> list[Claim]:
    t = per_run(df)
    out: list[Claim] = []
    for n, g in (t.groupby("net") if len(t) else []):
        bp, ddg = g[g["algo"] == "bp"], g[g["algo"] == "ddg"]
        if bp.empty or ddg.empty:
            out.append(not_checked(f"{n}: DDG and BP converge alike", "similar", "needs a BP and a DDG run"))
            continue
        lb, ld = float(bp["final_loss"].mean()), float(ddg["final_loss"].mean())
        gap = (ld - lb) / lb
        rows = {a: df[df["run_id"].isin(g["run_id"])] for a, g in (("BP", bp), ("DDG", ddg))}
        name = run_as(pd.concat(list(rows.values())), n, batch=BATCH)
        out.append(settle(f"{name}: DDG and BP admit similar convergence rates (per epoch)", "similar",
                          f"final training loss DDG {ld:.4g} vs BP {lb:.4g} (gap {gap:+.1%}, tolerance "
                          f"{LOSS_TOL:.0%})", bool(gap <= LOSS_TOL), relation="similar",
                          arms={a: curve(r, "train_loss") for a, r in rows.items()}))
        tb, td = float(bp["train_s"].median()), float(ddg["train_s"].median())
        # Wall-clock seconds on a shared machine: comparable only under recorded, like load.
        out.append(settle(f"{name}: DDG (2 stage processes) trains the same epochs in less time than BP (1 process)",
                          "DDG converges faster regarding computation time",
                          f"DDG {td:.3g} s vs BP {tb:.3g} s ({tb / td:.2f}x)", bool(td < tb), a=td, b=tb,
                          loads=loads_of(pd.concat(list(rows.values())))))
    return out or [not_checked("DDG and BP converge alike", "similar", "no runs")]


def tables(df: pd.DataFrame, dataset: str = "cifar10") -> dict[str, str]:
    t = per_run(df)
    rows = []
    for (n, algo), g in (t.groupby(["net", "algo"], sort=True) if len(t) else []):
        rows.append([n, ", ".join(sorted(map(str, g["model"].unique()))), NAMES.get(algo, algo),
                     float(g["best_top1"].max()), float(g["final_loss"].mean()), float(g["train_s"].median()),
                     TABLE5[dataset].get((n, algo), math.nan), len(g)])
    return {"top1": md_table(["network", "run as", "method", "best top-1 (%)", "final train loss",
                              "training time (s)", "thesis Table 5 top-1 (%)", "runs"], rows)}
