"""lian15 table "AsySG-con (CIFAR10-FULL)" and poster fig. 3: AsySG-con on 1..8 workers.

Panels: training loss against global updates (fig. 3 left) and against wall time (fig. 3
right), one line per worker count, with the loss target as a dashed line; iteration speedup and
time speedup against workers, with the ideal line and the poster's values; below, the table,
ours vs the poster. ``tables`` gives the same table as markdown (figures/<stem>-speedup.md).

Speedups (hdist.analysis.speedup): time and global updates until the training loss first
reaches a common target, the target being 90 % of the way down the slowest run's loss drop;
time speedup T(1)/T(K), iteration speedup K x U(1)/U(K); medians over seeds.

Time speedup needs a core per worker: on the 2-core machine the small runs are timed on, it
is drawn for every worker count but claimed only up to ``CORES`` workers (the time panel greys
out the rest). Iteration speedup (the cost of staleness) is claimed at every worker count.

``lian15-table-incon`` reuses everything here with its own :data:`SPEC`.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hdist.analysis import speedup_table, to_markdown
from hdist.analysis.speedup import MARGIN
from hdist.claims import Claim, not_checked
from hdist.plots import curves, data_note, name_claims, run_as, speedup

#: Cores of the machine the runs are timed on (the 2-core reference laptop). Time speedup
#: beyond this many workers measures time-slicing, not parallelism: drawn, never claimed.
CORES = 2
#: Iteration speedup claimed at every K > 1: at least this fraction of K. The poster's lowest
#: ratio is 5.96 / 8 = 0.745 (AsySG-con at 8 MPI workers); 0.75 x K is "near-linear" as it shows it.
ITER_RATIO = 0.75
#: Time speedup claimed at 1 < K <= CORES: at least this fraction of K (1.5 at 2 workers; the
#: poster: 1.73 at 2 MPI workers, 4.0 at 4 threads).
TIME_RATIO = 0.75
#: Below this relative drop of the training loss (start to target) there is no progress to
#: time: speedups are drawn but not claimed.
MIN_DROP = 0.05
METRIC = "train_loss_full"

SPEC = {
    "name": "AsySG-con",
    "title": "lian15 fig. 3 + table",
    "unit": "mpi",  # the poster's column label: mpi-K
    "paper": {
        "iteration_speedup": {1: 1.01, 2: 1.93, 3: 2.65, 4: 3.42, 5: 4.27, 6: 4.92, 7: 5.36, 8: 5.96},
        "time_speedup": {1: 1.00, 2: 1.73, 3: 2.28, 4: 2.88, 5: 3.56, 6: 4.07, 7: 4.41, 8: 5.00},
    },
}


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------


def time_axis(df: pd.DataFrame) -> tuple[str, float]:
    """(time column, cores that make time speedup meaningful): on the sim backend time is virtual
    (``sim_s``) and every simulated worker has its own core; elsewhere it is this machine's."""
    if len(df) and "backend" in df.columns and (df["backend"] == "sim").all():
        return "sim_s", math.inf
    return "wall_s", CORES


def analyse(df: pd.DataFrame) -> dict:
    """The speedup table, its target, and how far the loss fell (start -> target)."""
    time_col, cores = time_axis(df)
    tab = speedup_table(df, by="workers", metric=METRIC, margin=MARGIN, time=time_col)
    ev = df[(df["metric"] == METRIC) & (df["kind"] == "eval")]
    start = float(ev.sort_values("updates").groupby("run_id").head(1)["value"].max()) if len(ev) else math.nan
    target = float(tab["target"].iloc[0]) if len(tab) else math.nan
    drop = (start - target) / start if start and math.isfinite(start) and math.isfinite(target) else math.nan
    return {"table": tab, "target": target, "start": start, "drop": drop, "time": time_col, "cores": cores,
            "progress": bool(math.isfinite(drop) and drop >= MIN_DROP),
            "has_base": bool(len(tab) and (tab["workers"].astype(float) == 1).any())}


def _paper_at(spec: dict, key: str, k: int):
    return spec["paper"][key].get(int(k))


def _wide(d: pd.DataFrame) -> bool:
    """Log scale for the loss when it spans more than a factor of 5."""
    v = d.loc[(d["metric"] == METRIC) & (d["value"] > 0), "value"]
    return bool(len(v) and v.max() / v.min() > 5)


def _names(df: pd.DataFrame, col: str) -> str:
    names = sorted({str(b) for b in df[col].dropna().unique()}) if col in df.columns else []
    return "/".join(names) or "?"


def _setting(df: pd.DataFrame, spec: dict) -> str:
    """'AsySG-con, cifar10_full on cifar10, process backend [synthetic stand-in ...]': from the runs, with the
    worker counts run where they are not the poster's (:func:`hdist.plots.run_as`)."""
    return (f"{_label(df, spec)}, {_names(df, 'model')} on {_names(df, 'dataset')}, {_names(df, 'backend')} backend"
            f"{data_note(df)}")


def _label(df: pd.DataFrame, spec: dict) -> str:
    """The algorithm, with " (run as 1/2 workers not 1/4/.../32)" where the runs' worker counts are not among the
    poster's columns (the network and M are our choice: the poster gives none)."""
    return run_as(df, spec["name"], models=(), workers=spec["paper"]["time_speedup"])


# ---------------------------------------------------------------------------------------------
# Figure
# ---------------------------------------------------------------------------------------------


def _speedup_panel(ax, tab: pd.DataFrame, key: str, spec: dict, title: str) -> None:
    pw = sorted(spec["paper"][key])
    speedup(ax, tab["workers"].astype(float), tab[key], label="ours", paper=[spec["paper"][key][k] for k in pw],
            paper_workers=pw)
    top = max([*pw, *tab["workers"].astype(float).tolist(), 1])
    ax.plot([1, top], [1, top], "k:", linewidth=1)  # the ideal line over the paper's range too
    ax.set_title(title, fontsize=9)


def _table_rows(tab: pd.DataFrame, spec: dict) -> list[list[str]]:
    def f(v, spec_):
        return "n/a" if v is None or not np.isfinite(v) else format(v, spec_)

    rows = []
    for _, r in tab.iterrows():
        k = int(r["workers"])
        pi, pt = _paper_at(spec, "iteration_speedup", k), _paper_at(spec, "time_speedup", k)
        rows.append([f"{k}", f"{int(r['reached'])}/{int(r['runs'])}", f(r["updates_to_target"], ".0f"),
                     f(r["time_to_target"], ".3g"), f(r["iteration_speedup"], ".2f"),
                     "-" if pi is None else f"{pi:g}", f(r["time_speedup"], ".2f"),
                     "-" if pt is None else f"{pt:g}"])
    return rows


def plot(df: pd.DataFrame, spec: dict = SPEC):
    a = analyse(df)
    tab = a["table"]
    d = df[df["kind"] == "eval"]
    fig = plt.figure(figsize=(4.2 * 4, 3.4 + 0.45 + 0.25 * (len(tab) + 1)))
    gs = fig.add_gridspec(2, 4, height_ratios=[3.4, 0.45 + 0.25 * (len(tab) + 1)])
    axes = [fig.add_subplot(gs[0, i]) for i in range(4)]
    note = (f"target {METRIC} <= {a['target']:.4g}" if math.isfinite(a["target"]) else "no target")
    if not a["progress"] and math.isfinite(a["drop"]):
        note += f"; the loss fell only {a['drop']:.2%}: speedups not meaningful"
    sim = a["time"] == "sim_s"
    where = ("simulated cluster (virtual time)" if sim else
             f"time speedup meaningful only up to {CORES} workers ({CORES}-core machine)")
    fig.suptitle(f"{spec['title']}: {_setting(df, spec)}\n{note}; {where}", fontsize=10)
    for ax, x in zip(axes[:2], ("updates", a["time"])):
        curves(ax, d, METRIC, x=x, by="workers", logy=_wide(d), ylabel="training loss")
        if math.isfinite(a["target"]):
            ax.axhline(a["target"], color="k", linestyle="--", linewidth=0.8)
        ax.legend(fontsize=7, title="workers", title_fontsize=7)
    axes[0].set_xlabel("global updates of x")
    _speedup_panel(axes[2], tab, "iteration_speedup", spec, "iteration speedup K·U(1)/U(K)")
    _speedup_panel(axes[3], tab, "time_speedup", spec, "time speedup T(1)/T(K)")
    if not sim:
        top = max([*spec["paper"]["time_speedup"], *tab["workers"].astype(float).tolist(), CORES + 1])
        axes[3].axvspan(CORES + 0.5, top + 0.5, color="0.85", alpha=0.6, linewidth=0)
        axes[3].text(CORES + 0.7, 0.55, f"> {CORES} workers on {CORES} cores:\nnot meaningful", fontsize=7,
                     va="bottom", transform=axes[3].get_xaxis_transform())
    tax = fig.add_subplot(gs[1, :])
    tax.axis("off")
    u = spec["unit"]
    cols = ["workers", "runs reaching target", "updates to target", "time to target (s)", "iteration speedup",
            f"paper ({u}-K)", "time speedup", f"paper ({u}-K)"]
    rows = _table_rows(tab, spec) or [["" for _ in cols]]
    t = tax.table(cellText=rows, colLabels=cols, loc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------


def check(df: pd.DataFrame, spec: dict = SPEC) -> list[Claim]:
    a = analyse(df)
    tab = a["table"]
    name = spec["name"]
    lin = f"near-linear iteration speedup of {name}: >= {ITER_RATIO} x K"
    upto = "2" if CORES == 2 else f"2..{CORES}"
    tim = f"time speedup of {name} at {upto} workers: >= {TIME_RATIO} x K (only up to the {CORES} cores timed)"
    why = None
    if not len(tab):
        why = f"no {METRIC} evaluations in the runs"
    elif not a["has_base"]:
        why = "no 1-worker run: speedups need T(1) and U(1)"
    elif not a["progress"]:
        why = (f"the training loss fell only {a['drop']:.2%} (from {a['start']:.4g} to the target "
               f"{a['target']:.4g}; at least {MIN_DROP:.0%} needed): there is no progress to time")
    if why:
        return name_claims([not_checked(lin, "0.75-1.0 x K in the poster's tables", why),
                            not_checked(tim, "near K", why)], df, spec["name"], models=(),
                           workers=spec["paper"]["time_speedup"])
    claims = []
    for _, r in tab.iterrows():
        k = int(r["workers"])
        if k == 1:
            continue
        v = float(r["iteration_speedup"])
        paper = _paper_at(spec, "iteration_speedup", k)
        claims.append(Claim(
            f"{lin} at {k} workers (>= {ITER_RATIO * k:.2f}; the poster's lowest ratio is 5.96/8 = 0.745)",
            paper if paper is not None else f"{ITER_RATIO} x K",
            f"{v:.2f} = {v / k:.2f} x K" if math.isfinite(v) else "n/a: the target was not reached",
            bool(v >= ITER_RATIO * k) if math.isfinite(v) else None))
    timed = tab[(tab["workers"] > 1) & (tab["workers"] <= a["cores"])]
    if timed.empty:
        claims.append(not_checked(tim, "near K", f"no run with {upto} workers"))
    for _, r in timed.iterrows():
        k = int(r["workers"])
        v = float(r["time_speedup"])
        paper = _paper_at(spec, "time_speedup", k)
        claims.append(Claim(
            f"time speedup of {name} at {k} workers: >= {TIME_RATIO * k:.2f} ({TIME_RATIO} x K; "
            + ("virtual time on the simulated cluster)" if a["time"] == "sim_s" else
               f"only worker counts up to the {CORES} cores are timed)"),
            paper if paper is not None else "near K (4.0 at 4 threads)",
            f"{v:.2f} (T(1) {float(tab.loc[tab['workers'] == 1, 'time_to_target'].iloc[0]):.3g} s, "
            f"T({k}) {float(r['time_to_target']):.3g} s)" if math.isfinite(v) else "n/a: the target was not reached",
            bool(v >= TIME_RATIO * k) if math.isfinite(v) else None,
            # Wall-clock speedups flip with the shared machine's load: hdist.claims.finalize checks it.
            timed=a["time"] != "sim_s"))
    return name_claims(claims, df, spec["name"], models=(), workers=spec["paper"]["time_speedup"])


# ---------------------------------------------------------------------------------------------
# Tables (written as <results_dir>/figures/<stem>-<name>.md)
# ---------------------------------------------------------------------------------------------


def tables(df: pd.DataFrame, spec: dict = SPEC) -> dict[str, str]:
    a = analyse(df)
    head = (f"**{spec['title']}**: speedup to a common training-loss target, ours ({_setting(df, spec)}) vs the "
            f"poster ({spec['unit']}-K columns).\n\n")
    where = ("Time is virtual: the simulated cluster's (its topology's cost model)." if a["time"] == "sim_s" else
             f"Time speedup is meaningful only up to {CORES} workers ({CORES}-core machine).")
    notes = [f"Target rule: 90 % of the way down the slowest run's loss drop (hdist.analysis.speedup.choose_target, "
             f"margin {MARGIN}). Medians over seeds. {where}"]
    if not a["progress"] and math.isfinite(a["drop"]):
        head += (f"**The training loss fell only {a['drop']:.2%} (at least {MIN_DROP:.0%} needed): the speedups "
                 f"below are not meaningful.**\n\n")
    return {"speedup": head + to_markdown(a["table"], spec["paper"]) + "\n" + "\n".join(notes) + "\n"}
