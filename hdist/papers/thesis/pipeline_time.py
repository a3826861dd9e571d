"""Shared analysis and plots of the model-parallel stems (thesis ch. 5: figs. 17-23, Table 3, benchmark (a)).

Pure functions of the DataFrame of :func:`hdist.metrics.load_results` for runs of the pipeline executor
(:mod:`hdist.algos._pipeline`): BP, DDG, DNI and FR logging ``train_loss``, ``test_loss``, ``test_error`` and the
cumulative per-stage timers ``forward_s/k``, ``backward_s/k``, ``wait_s/k`` (k = 1..K) plus ``train_s``.

- :func:`arm`: one label per run ("BP, 1 device", "DDG, K=2", with "sim" or "real" when both are present);
- :func:`final`: a run's final value of a metric (the mean of its last ``tail`` logged rows: one
  mini-batch loss is noisy);
- :func:`run_times`: per run, the training time per epoch and its split into forward and backward
  (T_F, T_B: the stages' timers summed), the time model of Table 3 and the forward share;
- :func:`curve_panel`: a metric against epochs or time, one line per arm;
- :func:`network_grid`: a figure of such panels, one column per network (the ``net`` key), one row per
  (metric, x axis);
- :func:`md_table`: a small markdown table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hdist.plots import curves, data_note, figure, run_as

NAMES = {"bp": "BP", "ddg": "DDG", "dni": "DNI", "fr": "FR"}


def _col(df: pd.DataFrame, name: str, default=None) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index)


def stages_of(df: pd.DataFrame) -> pd.Series:
    """K of each row (``stages`` column; 1 where absent)."""
    return pd.to_numeric(_col(df, "stages", 1), errors="coerce").fillna(1).astype(int)


def with_arm(df: pd.DataFrame, real_vs_sim: bool | None = None) -> pd.DataFrame:
    """``df`` with an ``arm`` column: algorithm and devices (K), e.g. "BP, 1 device", "DDG, K=4"; with
    ``real_vs_sim`` (default: when both sim and another backend are present) prefixed "sim" / "real"."""
    d = df.copy()
    k = stages_of(d)
    algo = _col(d, "algo", "?").map(lambda a: NAMES.get(a, str(a)))
    lab = [f"{a}, 1 device" if kk == 1 else f"{a}, K={kk}" for a, kk in zip(algo, k)]
    backends = set(_col(d, "backend", "").dropna().unique())
    if real_vs_sim is None:
        real_vs_sim = "sim" in backends and len(backends) > 1
    if real_vs_sim:
        lab = [("sim " if b == "sim" else "real ") + s for b, s in zip(_col(d, "backend", ""), lab)]
    d["arm"] = lab
    return d


def final(df: pd.DataFrame, metric: str, tail: int = 3, by: str = "run_id") -> pd.Series:
    """Per run: the mean of the last ``tail`` logged values of ``metric`` (in step order)."""
    d = df[df["metric"] == metric]
    if d.empty:
        return pd.Series(dtype=float)
    return d.sort_values("step").groupby(by)["value"].apply(lambda v: float(v.tail(tail).mean()))


def last_value(df: pd.DataFrame, metric: str) -> pd.Series:
    d = df[df["metric"] == metric]
    if d.empty:
        return pd.Series(dtype=float)
    return d.sort_values("step").groupby("run_id")["value"].last()


def train_time(g: pd.DataFrame) -> float:
    """A run's training time: the clock of its last ``train_loss`` row (the last stage's, at the last step):
    ``sim_s`` on the sim backend, else ``wall_s``. Both exclude evaluations and sigma probes (the logger's
    clock pauses for them), which ``train_s`` (end minus start) would include."""
    d = g[g["metric"] == "train_loss"].sort_values("step")
    if d.empty:
        return math.nan
    col = "sim_s" if "sim_s" in d.columns and str(d["backend"].iloc[0]) == "sim" else "wall_s"
    return float(d[col].iloc[-1])


def run_times(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: algo, backend, K, epochs, ``train_s`` (:func:`train_time`), ``epoch_s`` (= train_s /
    epochs), T_F and T_B
    (``forward_s/k`` and ``backward_s/k`` summed over stages: a stage's timers cover its own work), wait,
    the busiest stage's forward + backward (``stage_max``), and ``fwd_share`` = T_F / (T_F + T_B)."""
    rows = []
    for rid, g in df.groupby("run_id"):
        K = int(stages_of(g).iloc[0])
        lv = g.sort_values("step").groupby("metric")["value"].last()
        fw = [float(lv.get(f"forward_s/{k}", math.nan)) for k in range(1, K + 1)]
        bw = [float(lv.get(f"backward_s/{k}", math.nan)) for k in range(1, K + 1)]
        wt = [float(lv.get(f"wait_s/{k}", math.nan)) for k in range(1, K + 1)]
        epochs = float(g["epoch"].max()) if "epoch" in g.columns and g["epoch"].notna().any() else math.nan
        train_s = train_time(g)
        tf, tb = float(np.sum(fw)), float(np.sum(bw))
        first = g.iloc[0]
        rows.append({"run_id": rid, "algo": first.get("algo"), "backend": first.get("backend"), "K": K,
                     "seed": first.get("seed"), "model": first.get("model"), "epochs": epochs,
                     "train_s": train_s, "epoch_s": train_s / epochs if epochs and epochs > 0 else math.nan,
                     "T_F": tf, "T_B": tb, "wait": float(np.nansum(wt)),
                     "stage_max": float(max(f + b for f, b in zip(fw, bw))) if K else math.nan,
                     "fwd_share": tf / (tf + tb) if tf + tb > 0 else math.nan,
                     "steps": int(g["step"].max()), "forward": fw, "backward": bw})
    out = pd.DataFrame(rows)
    if len(out):
        out = with_arm(out.rename(columns={"K": "stages"})).rename(columns={"stages": "K"})
    return out


def table3_model(tf: float, tb: float, K: int) -> dict[str, float]:
    """Thesis Table 3: BP takes T_F + T_B per iteration, DDG T_F + T_B / K; the bound on DDG's speedup is
    their ratio."""
    bp, ddg = tf + tb, tf + tb / K
    return {"bp": bp, "ddg": ddg, "bound": bp / ddg if ddg > 0 else math.nan}


def curve_panel(ax, df: pd.DataFrame, metric: str, x: str = "epoch", title: str | None = None,
                ylabel: str | None = None, logy: bool = False) -> None:
    """``metric`` against ``x``, one line per arm (seeds: mean and min-max band)."""
    d = with_arm(df) if "arm" not in df.columns else df
    d = d[d["metric"] == metric]
    if d.empty:
        ax.text(0.5, 0.5, f"no {metric} rows", ha="center", va="center", transform=ax.transAxes)
    else:
        curves(ax, d, metric, x=x, by="arm", logy=logy, ylabel=ylabel or metric)
    if title:
        ax.set_title(title, fontsize=9)


def nets(df: pd.DataFrame) -> pd.Series:
    """The network each row stands for: the experiment's ``net`` key (the model column can be a smoke
    stand-in), else the model."""
    return df["net"] if "net" in df.columns else df["model"]


def network_grid(df: pd.DataFrame, title: str, rows: list[tuple[str, str, str]], batch: int | None = None):
    """One column per network, one row per (metric, x, label) of ``rows``; ``test_top1`` is made from
    ``test_error``. A column whose runs used a stand-in model, or a batch other than the paper's ``batch``,
    says so (:func:`hdist.plots.run_as`)."""
    d = with_arm(pd.concat([df, accuracy_rows(df)], ignore_index=True), real_vs_sim=False)
    d = d.assign(net=nets(d))
    names = sorted(d["net"].dropna().unique()) or ["(no runs)"]
    fig, axes = figure(1, title=title + data_note(df))
    axes[0].remove()
    fig.set_size_inches(4.2 * len(names), 3.0 * len(rows))
    grid = fig.subplots(len(rows), len(names), squeeze=False)
    for j, n in enumerate(names):
        part = d[d["net"] == n]
        head = run_as(part, n, batch=batch)
        for i, (metric, x, label) in enumerate(rows):
            curve_panel(grid[i][j], part, metric, x=x, title=head if i == 0 else None, ylabel=label)
    fig.tight_layout()
    return fig


def accuracy_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of top-1 test accuracy in percent (``test_top1``) made from ``test_error``."""
    d = df[df["metric"] == "test_error"].copy()
    d["value"] = 100.0 * (1.0 - d["value"])
    d["metric"] = "test_top1"
    return d


def md_table(columns: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "n/a" if not math.isfinite(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
