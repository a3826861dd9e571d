"""Time and iteration speedup to a loss target, as the asynchronous-SGD papers measure them.

Pure functions of the metrics table (:func:`hdist.metrics.load_results`): they read the
evaluation rows (``kind == "eval"``) of one metric, by default ``train_loss_full`` (the
objective on the training set, evaluated on snapshots of the shared x), with their ``updates``
(global updates of x when the snapshot was taken) and ``wall_s`` (training seconds on rank 0's
clock, which every rank starts together).

Definitions (``../shared/DESIGN.md``; lian15's tables):

- time to target T(K): training seconds until the loss of a K-worker run first reaches the
  target; updates to target U(K): the global update count at that point;
- time speedup(K) = T(1) / T(K);
- iteration speedup(K) = K x U(1) / U(K). Updates are global updates of the shared x, so
  U(K) is the total number of updates the K workers together needed; U(1) / (U(K) / K) is how
  many times fewer updates per worker K workers needed than one. Without staleness U(K) = U(1)
  and the iteration speedup is exactly K; it isolates the cost of staleness from that of time.

"Reaches the target" is the first evaluation point at or below it; between the last point
above and the first point at or below, the crossing is interpolated linearly (in time and in
updates alike), so that coarse evaluation grids do not round every run up to its next point.
A run that never reaches the target has NaN. Several runs of one worker count (seeds) are
summarised by their median, over the runs that reached the target.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

#: Default target margin: the fraction of the worst run's loss drop left above its best loss.
MARGIN = 0.1


def _eval_rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    d = df[df["metric"] == metric]
    if "kind" in d.columns:
        d = d[d["kind"] == "eval"]
    return d[d["value"].notna()]


def _ordered(g: pd.DataFrame, x: str) -> pd.DataFrame:
    keys = [x] + (["updates"] if "updates" in g.columns and x != "updates" else [])
    return g[g[x].notna()].sort_values(keys, kind="mergesort")


def crossing(xs, vs, target: float, interpolate: bool = True) -> float:
    """First x at which the sequence ``vs`` (ordered by ``xs``) is at or below ``target``.

    Linear interpolation between the last point above and the first point at or below the
    target when ``interpolate``; NaN if no point reaches it.
    """
    xs, vs = list(xs), list(vs)
    for i, (x, v) in enumerate(zip(xs, vs)):
        if v <= target:
            if i == 0 or not interpolate:
                return float(x)
            x0, v0 = xs[i - 1], vs[i - 1]
            return float(x0 + (v0 - target) / (v0 - v) * (x - x0))
    return math.nan


def _to_target(df: pd.DataFrame, target: float, metric: str, x: str, interpolate: bool, name: str) -> pd.Series:
    d = _eval_rows(df, metric)
    out = {}
    for run_id, g in d.groupby("run_id", sort=True):
        g = _ordered(g, x)
        out[run_id] = crossing(g[x], g["value"], target, interpolate)
    s = pd.Series(out, name=name, dtype=float)
    s.index.name = "run_id"
    return s


def time_to_target(df: pd.DataFrame, target: float, metric: str = "train_loss_full", x: str = "wall_s",
                   interpolate: bool = True) -> pd.Series:
    """Per run (indexed by ``run_id``): the ``x`` (default training seconds) at which ``metric``
    first reaches ``target`` (at or below it); NaN for a run that never does."""
    return _to_target(df, target, metric, x, interpolate, "time_to_target")


def updates_to_target(df: pd.DataFrame, target: float, metric: str = "train_loss_full", x: str = "updates",
                      interpolate: bool = True) -> pd.Series:
    """Per run: the global update count at which ``metric`` first reaches ``target``; NaN if never."""
    return _to_target(df, target, metric, x, interpolate, "updates_to_target")


def choose_target(df: pd.DataFrame, metric: str = "train_loss_full", margin: float = MARGIN) -> float:
    """The loss target, chosen as the papers do: a loss that every run reaches.

    Rule: let ``worst`` be the largest, over runs, of each run's lowest ``metric`` (the best
    loss of the run that got least far) and ``start`` the largest first value (the loss at x0,
    the same for every run started from the same point). Then

        target = worst + margin * (start - worst).

    With ``margin = 0`` this is "the max over runs of the min loss": the slowest run reaches it
    only at its best point. The default ``margin`` (0.1) puts the target 90 % of the way down
    the slowest run's drop, so every run reaches it strictly before its best point and the
    crossing lies on a descending part of the curves rather than in the flat tail, where the
    time at which a nearly flat curve crosses a line is mostly noise. The margin is a fraction
    of the drop, not of the loss, so it works alike for losses near 0 and far from 0.
    NaN without evaluation rows.
    """
    d = _eval_rows(df, metric)
    if d.empty:
        return math.nan
    firsts, bests = [], []
    for _, g in d.groupby("run_id", sort=True):
        g = _ordered(g, "updates" if "updates" in g.columns else "wall_s")
        firsts.append(float(g["value"].iloc[0]))
        bests.append(float(g["value"].min()))
    worst, start = max(bests), max(firsts)
    return float(worst + margin * (start - worst))


def _ratio(num: float, den: pd.Series) -> pd.Series:
    den = den.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return out.where(den > 0)


def speedup_table(df: pd.DataFrame, by: str = "workers", target: float | None = None,
                  metric: str = "train_loss_full", time: str = "wall_s", margin: float = MARGIN,
                  interpolate: bool = True) -> pd.DataFrame:
    """Speedup per worker count: one row per value of ``by``, sorted.

    Columns: ``by``; ``runs`` and ``reached`` (runs, and runs that reached the target);
    ``time_to_target`` and ``updates_to_target`` (medians over the runs that reached it);
    ``time_speedup`` = T(1) / T(K); ``iteration_speedup`` = K x U(1) / U(K), with K the value
    of ``by`` (NaN both when there is no 1-worker row); ``metric`` and ``target`` (the target
    used: ``target`` if given, else :func:`choose_target` with ``margin``).
    """
    cols = [by, "runs", "reached", "time_to_target", "updates_to_target", "time_speedup", "iteration_speedup",
            "metric", "target"]
    if target is None:
        target = choose_target(df, metric, margin)
    d = _eval_rows(df, metric)
    if d.empty:
        return pd.DataFrame(columns=cols)
    k_of = d.groupby("run_id", sort=True)[by].first()
    runs = pd.DataFrame({by: k_of,
                         "t": time_to_target(d, target, metric, time, interpolate),
                         "u": updates_to_target(d, target, metric, "updates", interpolate)})
    g = runs.groupby(by, sort=True)
    tab = pd.DataFrame({"runs": g.size(), "reached": g["t"].count(),
                        "time_to_target": g["t"].median(), "updates_to_target": g["u"].median()})
    tab.index.name = by
    tab = tab.reset_index()
    k = tab[by].astype(float)
    base = tab[k == 1]
    t1 = float(base["time_to_target"].iloc[0]) if len(base) else math.nan
    u1 = float(base["updates_to_target"].iloc[0]) if len(base) else math.nan
    tab["time_speedup"] = _ratio(t1, tab["time_to_target"]) if t1 > 0 else math.nan
    tab["iteration_speedup"] = k * _ratio(u1, tab["updates_to_target"]) if u1 > 0 else math.nan
    tab["metric"] = metric
    tab["target"] = float(target)
    return tab[cols]


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def _paper_values(paper, key: str) -> dict:
    if paper is None:
        return {}
    if isinstance(paper, pd.DataFrame):
        return paper[key].dropna().to_dict() if key in paper.columns else {}
    return dict(paper.get(key) or {})


def to_markdown(table: pd.DataFrame, paper: Mapping[str, Mapping[int, float]] | pd.DataFrame | None = None,
                by: str = "workers") -> str:
    """The speedup table as markdown, with the paper's numbers side by side when given.

    ``paper`` maps ``"iteration_speedup"`` and ``"time_speedup"`` to {workers: value} (or is a
    DataFrame indexed by workers with those columns); a worker count the paper does not have
    shows ``-``. Missing measurements show ``n/a``. A last line names the target.
    """
    has_paper = paper is not None
    pi, pt = _paper_values(paper, "iteration_speedup"), _paper_values(paper, "time_speedup")
    head = [by, "runs reaching target", "updates to target", "time to target (s)", "iteration speedup"]
    head += ["iteration speedup (paper)"] if has_paper else []
    head += ["time speedup"] + (["time speedup (paper)"] if has_paper else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for _, r in table.iterrows():
        k = r[by]
        k_key = int(k) if float(k).is_integer() else k
        cells = [str(k_key), f"{int(r['reached'])}/{int(r['runs'])}", _fmt(r["updates_to_target"], ".0f"),
                 _fmt(r["time_to_target"], ".3g"), _fmt(r["iteration_speedup"], ".2f")]
        if has_paper:
            cells.append(_fmt(pi[k_key], "g") if k_key in pi else "-")
        cells.append(_fmt(r["time_speedup"], ".2f"))
        if has_paper:
            cells.append(_fmt(pt[k_key], "g") if k_key in pt else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if len(table) and "target" in table.columns:
        lines += ["", f"Target: {table['metric'].iloc[0]} <= {_fmt(float(table['target'].iloc[0]), '.4g')}"]
    return "\n".join(lines) + "\n"
