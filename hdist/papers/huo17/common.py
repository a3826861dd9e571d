"""Plots and claim checks shared by the huo17 figures (Huo & Huang, AAAI 2017 = thesis ch. 2).

Two kinds of figure, each drawn by two stems:

- *methods* (fig. 1 MNIST, fig. 3 CIFAR-10 features): SGD (polynomial lr, tuned) vs SVRG
  (Shared-AsySVRG, one worker) vs SGD_SVRG (SVRG from an SGD-pretrained model); panels: full
  training loss, training error, test error against epochs. :func:`best_runs` picks each
  algorithm's best tuned setting; :func:`plot_methods` / :func:`check_methods` draw and check.
- *speedup* (fig. 2 Shared-AsySVRG on 1..32 threads, fig. 4 Distributed-AsySVRG on 1..10
  workers): training loss and test error against time, one line per worker count, and the
  running-time speedup T(1)/T(K) against K with the ideal line (huo17 eq. 22: "running time
  speedup when they reach similar performance, e.g. similar training loss"). The target loss is
  :func:`hdist.analysis.speedup.choose_target` (90 % of the way down the slowest run's drop).
  On the sim backend time is simulated seconds (``sim_s``), so every simulated worker has its own
  core; elsewhere it is this machine's wall time, and speedup is only claimed up to
  :data:`CORES` workers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hdist.analysis import speedup_table
from hdist.analysis.speedup import MARGIN
from hdist.claims import Claim, curve, not_checked, settle
from hdist.plots import curves, data_note, figure, speedup

# ---------------------------------------------------------------------------------------------
# figs 1 and 3: SGD vs SVRG vs SGD_SVRG against epochs
# ---------------------------------------------------------------------------------------------

PANELS = [("train_loss_full", "training loss"), ("train_error", "training error"), ("test_error", "test error")]
ALGO_LABEL = {"sgd": "SGD", "svrg": "SVRG", "sgd_svrg": "SGD_SVRG"}
#: "Test errors are comparable" (fig. 3c): the final test errors of the three methods lie within
#: this many points of error rate of each other (our reading of "comparable"; the paper gives no number).
COMPARABLE_ERROR = 0.05


def best_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Each algorithm at its best tuned setting (lowest final train loss, averaged over seeds);
    adds a ``method`` column (SGD, SVRG, SGD_SVRG)."""
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


def plot_methods(df: pd.DataFrame, title: str):
    """Three panels (training loss, training error, test error vs epochs), one line per method."""
    d = best_runs(df)
    fig, axes = figure(3, title=title + data_note(df))
    for ax, (metric, label) in zip(axes, PANELS):
        curves(ax, d, metric, x="epoch", by="method", ylabel=label, logy=metric == "train_loss_full")
    fig.tight_layout()
    return fig


def final_value(d: pd.DataFrame, method: str, metric: str) -> float:
    """Mean over the method's runs of the metric's last evaluation."""
    g = d[(d["method"] == method) & (d["metric"] == metric)]
    return float(g.sort_values("step").groupby("run_id").tail(1)["value"].mean())


def value_at_epoch(d: pd.DataFrame, method: str, metric: str, epoch: float) -> float:
    """Mean over the method's runs of the metric at the evaluation nearest to ``epoch``."""
    g = d[(d["method"] == method) & (d["metric"] == metric)]
    g = g.assign(dist=(g["epoch"] - epoch).abs())
    return float(g[g["dist"] == g["dist"].min()]["value"].mean())


def check_methods(df: pd.DataFrame, fig: str = "fig. 1", test_errors_comparable: bool = False) -> list[Claim]:
    """The paper's claims on figs 1 and 3: SGD's loss falls; SGD leads early, SVRG wins later;
    SGD_SVRG is best; with ``test_errors_comparable`` (fig. 3c) the final test errors are close."""
    d = best_runs(df)
    methods = set(d["method"])
    claims = []

    def arm(m: str, metric: str = "train_loss_full") -> list[float]:
        return curve(d[d["method"] == m], metric)

    if "SGD" in methods:
        first = d[(d["method"] == "SGD") & (d["metric"] == "train_loss_full")].sort_values("step")
        start = float(first.groupby("run_id").head(1)["value"].mean())
        end = final_value(d, "SGD", "train_loss_full")
        claims.append(Claim("SGD with the tuned polynomial learning rate decreases the training loss",
                            f"decreasing curve ({fig}a)", f"{start:.4g} -> {end:.4g}", end < start,
                            relation="single"))
    if {"SGD", "SVRG"} <= methods:
        e1 = 1.0
        sgd1 = value_at_epoch(d, "SGD", "train_loss_full", e1)
        svrg1 = value_at_epoch(d, "SVRG", "train_loss_full", e1)
        arms = {"SGD": arm("SGD"), "SVRG": arm("SVRG")}
        claims.append(settle("SGD leads early: lower training loss than SVRG after the first epoch",
                             "SGD below SVRG early", f"SGD {sgd1:.4g} vs SVRG {svrg1:.4g}", sgd1 < svrg1,
                             arms=arms, a=sgd1, b=svrg1))
        sgd_f, svrg_f = final_value(d, "SGD", "train_loss_full"), final_value(d, "SVRG", "train_loss_full")
        claims.append(settle("SVRG wins later: lower final training loss than SGD", "SVRG below SGD later",
                             f"SVRG {svrg_f:.4g} vs SGD {sgd_f:.4g}", svrg_f < sgd_f, arms=arms, a=svrg_f, b=sgd_f))
    else:
        claims.append(not_checked("SGD leads early, SVRG wins later", "SGD faster first, then SVRG",
                                  "needs SGD and SVRG runs"))
    three = ("SGD", "SVRG", "SGD_SVRG")
    if set(three) <= methods:
        finals = {m: final_value(d, m, "train_loss_full") for m in three}
        runner_up = min(v for k, v in finals.items() if k != "SGD_SVRG")
        claims.append(settle("SGD_SVRG is best: lowest final training loss", "SGD_SVRG lowest",
                             ", ".join(f"{k} {v:.4g}" for k, v in finals.items()),
                             finals["SGD_SVRG"] <= min(finals.values()), arms={m: arm(m) for m in three},
                             a=finals["SGD_SVRG"], b=runner_up))
    else:
        claims.append(not_checked("SGD_SVRG is best", "SGD_SVRG lowest loss and error",
                                  "needs SGD, SVRG and SGD_SVRG runs"))
    if test_errors_comparable:
        present = [m for m in three if m in methods]
        errs = {m: final_value(d, m, "test_error") for m in present}
        errs = {m: v for m, v in errs.items() if math.isfinite(v)}
        claim = (f"the three methods' final test errors are comparable ({fig}c): within "
                 f"{COMPARABLE_ERROR:.0%} points of each other")
        if len(errs) < 2:
            claims.append(not_checked(claim, "comparable", "needs test errors of at least two methods"))
        else:
            spread = max(errs.values()) - min(errs.values())
            claims.append(settle(claim, "comparable test errors",
                                 ", ".join(f"{k} {v:.4g}" for k, v in errs.items()) + f"; spread {spread:.4g}",
                                 bool(spread <= COMPARABLE_ERROR), arms={m: arm(m) for m in errs},
                                 relation="similar"))
    return claims


# ---------------------------------------------------------------------------------------------
# figs 2 and 4: speedup of AsySVRG against workers
# ---------------------------------------------------------------------------------------------

METRIC = "train_loss_full"
#: Cores of the machine wall time is measured on (the 2-core reference laptop): beyond this many
#: workers wall-time speedup measures time-slicing, so it is drawn but not claimed.
CORES = 2
#: "Near-linear": a time speedup of at least this fraction of K (as the lian15 stems).
NEAR_LINEAR = 0.75
#: "All curves reach a similar training loss" (fig. 2a): each run's lowest training loss is within
#: this fraction of the 1-worker run's loss drop (start - best) above the 1-worker run's best.
SIMILAR_LOSS = 0.1
#: Below this relative drop of the training loss (start to target) there is no progress to time.
MIN_DROP = 0.05


def time_axis(df: pd.DataFrame) -> tuple[str, float]:
    """(time column, workers up to which time speedup is meaningful): ``sim_s`` and no limit on
    the sim backend (every simulated worker has its own core), else ``wall_s`` and :data:`CORES`."""
    if len(df) and "backend" in df.columns and (df["backend"] == "sim").all():
        return "sim_s", math.inf
    return "wall_s", CORES


def analyse_speedup(df: pd.DataFrame) -> dict:
    """The speedup table to a common target, its target, each worker count's start and best loss."""
    time_col, cores = time_axis(df)
    ev = df[(df["metric"] == METRIC) & (df["kind"] == "eval")] if len(df) else df
    tab = speedup_table(ev, by="workers", metric=METRIC, margin=MARGIN, time=time_col) if len(ev) else None
    if tab is None or not len(tab):
        return {"table": pd.DataFrame(), "time": time_col, "cores": cores, "target": math.nan, "start": math.nan,
                "drop": math.nan, "best": {}, "progress": False, "has_base": False}
    runs = ev.sort_values("updates").groupby("run_id")
    start = float(runs.head(1)["value"].max())
    best = ev.groupby("run_id")["value"].min().groupby(ev.groupby("run_id")["workers"].first()).median()
    target = float(tab["target"].iloc[0])
    drop = (start - target) / start if start and math.isfinite(start) and math.isfinite(target) else math.nan
    return {"table": tab, "time": time_col, "cores": cores, "target": target, "start": start, "drop": drop,
            "best": {int(k): float(v) for k, v in best.items()},
            "progress": bool(math.isfinite(drop) and drop >= MIN_DROP),
            "has_base": bool((tab["workers"].astype(float) == 1).any())}


def near_linear_upto(tab: pd.DataFrame, ratio: float = NEAR_LINEAR) -> int:
    """The threshold: the largest K such that every measured count K' <= K has time speedup
    >= ratio x K' (1 when already the smallest count above 1 falls short)."""
    upto = 1
    for _, r in tab.sort_values("workers").iterrows():
        k, v = int(r["workers"]), float(r["time_speedup"])
        if k == 1:
            continue
        if not (math.isfinite(v) and v >= ratio * k):
            break
        upto = k
    return upto


def _wide(d: pd.DataFrame) -> bool:
    v = d.loc[(d["metric"] == METRIC) & (d["value"] > 0), "value"]
    return bool(len(v) and v.max() / v.min() > 5)


def plot_speedup(df: pd.DataFrame, title: str, unit: str = "workers"):
    """Three panels: training loss vs time, test error vs time (one line per K), time speedup vs K
    with the ideal line (and the iteration speedup K U(1)/U(K), dashed, for the cost of staleness)."""
    a = analyse_speedup(df)
    d = df[df["kind"] == "eval"] if len(df) else df
    sim = a["time"] == "sim_s"
    note = f"target {METRIC} <= {a['target']:.4g}" if math.isfinite(a["target"]) else "no target"
    if not a["progress"] and math.isfinite(a["drop"]):
        note += f"; the loss fell only {a['drop']:.2%}: speedups not meaningful"
    where = "time = simulated seconds (sim backend)" if sim else f"wall time ({CORES}-core machine)"
    fig, axes = figure(3, title=f"{title}{data_note(df)}\n{where}; {note}")
    curves(axes[0], d, METRIC, x=a["time"], by="workers", logy=_wide(d), ylabel="training loss")
    if math.isfinite(a["target"]):
        axes[0].axhline(a["target"], color="k", linestyle="--", linewidth=0.8)
    curves(axes[1], d, "test_error", x=a["time"], by="workers", ylabel="test error")
    for ax in axes[:2]:
        if ax.get_legend() is not None:
            ax.legend(fontsize=7, title=unit, title_fontsize=7)
    tab = a["table"]
    if len(tab):
        k = tab["workers"].astype(float)
        speedup(axes[2], k, tab["time_speedup"], label="time speedup T(1)/T(K)")
        axes[2].plot(k, tab["iteration_speedup"], "x--", alpha=0.6, label="iteration speedup K U(1)/U(K)")
        axes[2].legend(fontsize=7)
        if not sim:
            axes[2].axvspan(CORES + 0.5, max(k.max(), CORES + 1) + 0.5, color="0.85", alpha=0.6, linewidth=0)
    axes[2].set_xlabel(unit)
    axes[2].set_title("running-time speedup to the target loss", fontsize=9)
    fig.tight_layout()
    return fig


def check_speedup(df: pd.DataFrame, name: str, fig: str, unit: str = "workers", linear_upto: int | None = None,
                  degrades_after: bool = False, sim_note: str = "") -> list[Claim]:
    """The speedup claims of figs 2 and 4.

    - all worker counts reach a similar training loss ({fig}a);
    - more workers need less time to reach the target;
    - near-linear time speedup (>= :data:`NEAR_LINEAR` x K) at every K <= ``linear_upto`` (None:
      at every K measured), the measured threshold (:func:`near_linear_upto`) stated beside;
    - with ``degrades_after``: past that threshold the speedup degrades (efficiency at the largest
      K below :data:`NEAR_LINEAR`), the paper's "when the number of threads exceeds a threshold,
      performance will degrade"; ``sim_note`` (what the sim's cost model leaves out) is added to
      its measured text when time is simulated.
    """
    a = analyse_speedup(df)
    tab = a["table"]
    one = unit[:-1] if unit.endswith("s") else unit  # "thread", "worker"
    similar = f"every {one} count reaches a similar training loss ({fig}a)"
    faster = f"more {unit}, less time to reach the target training loss ({fig}a)"
    scope = f"K <= {linear_upto}" if linear_upto else "every K"
    linear = f"near-linear time speedup of {name}: >= {NEAR_LINEAR} x K at {scope} ({fig}c)"
    why = None
    if not len(tab):
        why = f"no {METRIC} evaluations in the runs"
    elif not a["has_base"]:
        why = f"no 1-{one} run: speedups need T(1)"
    elif not a["progress"]:
        why = (f"the training loss fell only {a['drop']:.2%} (from {a['start']:.4g} to the target "
               f"{a['target']:.4g}; at least {MIN_DROP:.0%} needed): there is no progress to time")
    if why:
        out = [not_checked(similar, "similar loss", why), not_checked(faster, "less time", why),
               not_checked(linear, "near-linear", why)]
        if degrades_after:
            out.append(not_checked(f"past a threshold the speedup of {name} degrades", "degrades", why))
        return out
    claims = []
    best = a["best"]
    b1 = best.get(1, math.nan)
    drop1 = a["start"] - b1
    worst_k = max(best, key=lambda k: best[k])
    gap = (best[worst_k] - b1) / drop1 if drop1 > 0 else math.nan
    claims.append(Claim(
        f"{similar}: each run's lowest loss within {SIMILAR_LOSS:.0%} of the 1-{one} loss drop",
        "all curves reach a similar training loss",
        ", ".join(f"K={k}: {v:.4g}" for k, v in sorted(best.items())) + f"; largest gap {gap:.1%} of the drop "
        f"(K={worst_k})", bool(math.isfinite(gap) and gap <= SIMILAR_LOSS)))
    timed = tab[tab["workers"] <= a["cores"]].sort_values("workers")
    t = timed["time_to_target"].astype(float).to_numpy()
    claims.append(Claim(
        f"{faster}" + ("" if math.isinf(a["cores"]) else f" (timed up to {CORES} {unit})"),
        "time to a similar loss falls as K grows",
        ", ".join(f"K={int(k)}: {v:.3g} s" for k, v in zip(timed["workers"], t)),
        bool(len(t) > 1 and np.all(np.isfinite(t)) and np.all(np.diff(t) < 0))))
    threshold = near_linear_upto(tab[tab["workers"] <= a["cores"]])
    scope_tab = tab[(tab["workers"] > 1) & (tab["workers"] <= min(linear_upto or math.inf, a["cores"]))]
    speeds = ", ".join(f"K={int(r['workers'])}: {float(r['time_speedup']):.2f}" for _, r in
                       tab[tab["workers"] > 1].iterrows())
    if scope_tab.empty:
        claims.append(not_checked(linear, "near K", f"no run with 1 < K <= {min(linear_upto or 99, a['cores'])}"))
    else:
        ok = all(math.isfinite(float(r["time_speedup"])) and float(r["time_speedup"]) >= NEAR_LINEAR * r["workers"]
                 for _, r in scope_tab.iterrows())
        claims.append(Claim(linear, "near-linear, close to the ideal line",
                            f"time speedup {speeds}; near-linear up to K = {threshold}", bool(ok)))
    if degrades_after:
        kmax = int(tab["workers"].max())
        row = tab[tab["workers"] == kmax].iloc[0]
        eff = float(row["time_speedup"]) / kmax
        within = kmax <= a["cores"]
        msg = (f"at K = {kmax}: speedup {float(row['time_speedup']):.2f} = {eff:.2f} x K; near-linear up to "
               f"K = {threshold}; iteration speedup {float(row['iteration_speedup']):.2f}")
        if sim_note and a["time"] == "sim_s":
            msg += f" ({sim_note})"
        if not within:
            claims.append(not_checked(f"past a threshold the speedup of {name} degrades ({fig}c)", "degrades",
                                      f"K = {kmax} is beyond the {CORES} cores timed"))
        else:
            claims.append(Claim(
                f"past a threshold the speedup of {name} degrades ({fig}c): below {NEAR_LINEAR} x K at the "
                f"largest count", "degrades past a threshold", msg,
                bool(math.isfinite(eff) and eff < NEAR_LINEAR)))
    return claims


def speedup_markdown(df: pd.DataFrame, title: str) -> str:
    """The speedup table as markdown (figures/<stem>-speedup.md)."""
    from hdist.analysis import to_markdown

    a = analyse_speedup(df)
    where = "simulated seconds (sim backend)" if a["time"] == "sim_s" else f"wall seconds ({CORES}-core machine)"
    return (f"**{title}**: running-time speedup to a common training-loss target; time = {where}{data_note(df)}."
            f"\n\n" + (to_markdown(a["table"]) if len(a["table"]) else "no runs\n"))
