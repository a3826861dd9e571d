"""Thesis fig. 28 (ch. 6.5.3): ResNet-164, ResNet-101 and ResNet-152 on CIFAR-10, BP vs DNI vs DDG vs FR, K = 2..4.

One column per network (the ``net`` key of the experiment; at smoke scale every column runs the ResNet-8
stand-in and says so), rows: mini-batch training loss against epochs, test top-1 against epochs, test top-1
against time (simulated seconds: every module on its own device; BP on one device). One line per method and K.

Claims (thesis 6.5.3, "Faster Convergence"), per network:

- "DNI cannot converge for all models": at every K, DNI's final training loss is above BP's by more than
  ``LOSS_TOL`` (relative);
- "DDG cannot converge for the model ResNet152 when we set K = 4" (ResNet-152 column only): the DDG run at
  K = 4 diverged (status ``diverged``, or its final training loss is not below its first);
- "FR can achieve a speedup of up to 2 times compared to BP": the best over K of BP's training time for the
  run's epochs over FR's (time per epoch; both train the same epochs), at least ``SPEEDUP_MIN``, with FR's
  final training loss within ``LOSS_TOL`` of BP's at that K (the same progress per epoch, so time per epoch is
  time to the same loss).

"Final" = the mean of the last 3 logged mini-batch losses (one mini-batch is noisy). ``tables`` lists, per run,
the final training loss, best test top-1, time per epoch and the speedup over BP.
"""

from __future__ import annotations

import math

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.thesis.pipeline_time import NAMES, final, md_table, nets, network_grid, run_times
from hdist.plots import run_as

#: DNI "cannot converge" / FR "converges like BP": final training loss relative to BP's, above / within this.
LOSS_TOL = 0.10
#: "Up to 2 times": the best FR speedup over BP counts as the claim's when it is at least this.
SPEEDUP_MIN = 1.5
#: The thesis' batch (6.5.1): titles and claims name the model and batch run where they differ.
BATCH = 128


def plot(df: pd.DataFrame):
    return network_grid(df, "thesis fig. 28: ResNet-164/101/152 on CIFAR-10, BP / DNI / DDG / FR",
                        [("train_loss", "epoch", "training loss"), ("test_top1", "epoch", "test top-1 (%)"),
                         ("test_top1", "sim_s", "test top-1 (%) vs simulated s")], batch=BATCH)


def per_run(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: net, algo, K, status, first and final training loss, best top-1, time per epoch."""
    t = run_times(df)
    if t.empty:
        return t
    net = df.groupby("run_id").apply(lambda g: nets(g).iloc[0], include_groups=False)
    status = df.groupby("run_id")["status"].first() if "status" in df.columns else pd.Series(dtype=str)
    tl = df[df["metric"] == "train_loss"].sort_values("step")
    first = tl.groupby("run_id")["value"].first()
    last = final(df, "train_loss")
    err = df[df["metric"] == "test_error"].groupby("run_id")["value"].min()
    t["net"] = [net.get(r) for r in t["run_id"]]
    t["status"] = [status.get(r, "done") for r in t["run_id"]]
    t["first_loss"] = [float(first.get(r, math.nan)) for r in t["run_id"]]
    t["final_loss"] = [float(last.get(r, math.nan)) for r in t["run_id"]]
    t["best_top1"] = [100.0 * (1.0 - float(err.get(r, math.nan))) for r in t["run_id"]]
    return t


def _diverged(r) -> bool:
    return (r["status"] == "diverged" or not math.isfinite(r["final_loss"])
            or not r["final_loss"] < r["first_loss"])


def check(df: pd.DataFrame) -> list[Claim]:
    t = per_run(df)
    if t.empty:
        return [not_checked("DNI fails, DDG diverges on ResNet-152 at K = 4, FR up to 2x faster than BP",
                            "fig. 28", "no runs")]
    out: list[Claim] = []
    for net, g in t.groupby("net", sort=True):
        n = run_as(df[df["run_id"].isin(g["run_id"])], str(net), batch=BATCH)
        bp = g[(g["algo"] == "bp") & (g["K"] == 1)]
        if bp.empty:
            out.append(not_checked(f"{n}: DNI, DDG and FR against BP", "fig. 28", "needs a BP run on one device"))
            continue
        lb, eb = float(bp["final_loss"].mean()), float(bp["epoch_s"].median())
        dni = g[g["algo"] == "dni"].groupby("K")["final_loss"].mean()
        if len(dni):
            gaps = {int(k): (v - lb) / lb for k, v in dni.items()}
            out.append(Claim(f"{n}: DNI does not converge (final training loss above BP's by more than "
                             f"{LOSS_TOL:.0%} at every K)", "DNI cannot converge for all models",
                             "; ".join(f"K={k}: DNI {dni[k]:.4g} vs BP {lb:.4g} ({gaps[k]:+.1%})" for k in gaps),
                             bool(all(v > LOSS_TOL for v in gaps.values()))))
        if "152" in str(net):
            d4 = g[(g["algo"] == "ddg") & (g["K"] == 4)]
            if d4.empty:
                out.append(not_checked(f"{n}: DDG diverges at K = 4", "diverges", "no DDG run at K = 4"))
            else:
                r = d4.iloc[0]
                out.append(Claim(f"{n}: DDG diverges at K = 4 (status diverged, or no lower final training loss "
                                 "than its first)", "DDG cannot converge for ResNet-152 at K = 4",
                                 f"status {r['status']}, training loss {r['first_loss']:.4g} -> "
                                 f"{r['final_loss']:.4g}", bool(_diverged(r))))
        fr = g[g["algo"] == "fr"].groupby("K").agg(final_loss=("final_loss", "mean"), epoch_s=("epoch_s", "median"))
        if fr.empty:
            out.append(not_checked(f"{n}: FR up to 2x faster than BP", "up to 2x", "no FR runs"))
            continue
        speed = {int(k): eb / float(r["epoch_s"]) for k, r in fr.iterrows()}
        alike = {int(k): (float(r["final_loss"]) - lb) / lb <= LOSS_TOL for k, r in fr.iterrows()}
        best = max(speed, key=lambda k: speed[k])
        out.append(Claim(f"{n}: FR is up to 2x faster than BP in time (best speedup over K >= {SPEEDUP_MIN}, "
                         f"FR's final training loss within {LOSS_TOL:.0%} of BP's there)", "up to 2x",
                         "; ".join(f"K={k}: {speed[k]:.2f}x, loss {fr.loc[k, 'final_loss']:.4g} vs BP {lb:.4g}"
                                   for k in sorted(speed)),
                         bool(speed[best] >= SPEEDUP_MIN and alike[best])))
    return out


def tables(df: pd.DataFrame) -> dict[str, str]:
    t = per_run(df)
    rows = []
    for _, r in (t.sort_values(["net", "K", "algo"]).iterrows() if len(t) else []):
        bp = t[(t["net"] == r["net"]) & (t["algo"] == "bp") & (t["K"] == 1)]
        eb = float(bp["epoch_s"].median()) if len(bp) else math.nan
        rows.append([r["net"], str(r["model"]), NAMES.get(r["algo"], r["algo"]), int(r["K"]), str(r["status"]),
                     float(r["final_loss"]), float(r["best_top1"]), float(r["epoch_s"]),
                     eb / float(r["epoch_s"]) if r["epoch_s"] else math.nan])
    return {"runs": md_table(["network", "run as", "method", "K", "status", "final train loss", "best top-1 (%)",
                              "simulated s per epoch", "speedup over BP (1 device)"], rows)}
