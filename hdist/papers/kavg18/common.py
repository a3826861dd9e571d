"""Tables and drawing shared by the kavg18 stems (Zhou & Cong, IJCAI 2018, section 4, figures 1-7).

- figs 1 (vgg), 2 (nin): final test accuracy against the number of learners P, K-AVG against the asynchronous
  baselines Downpour and EAMSGD (:func:`plot_accuracy_vs_p`, :func:`.claims.check_accuracy_vs_p`);
- figs 3 (vgg), 4 (nin): speedup of K-AVG over Downpour and EAMSGD against P: the time an asynchronous run
  needs for the same epochs over K-AVG's (:func:`plot_speedup`, :func:`.claims.check_speedup`);
- figs 5 (vgg), 6 (nin): final test accuracy against K for each P, the measured K_opt, and beside it Theorem
  3.4's bound B(K) (eq. 3.44, :mod:`hdist.analysis.kavg_bound`) with its K_opt (:func:`plot_k_sweep`,
  :func:`.claims.check_k_sweep`);
- fig 7: accuracy gap between sequential SGD and K-AVG against P, vgg and nin, and K-AVG's epoch-time speedup
  over SGD (:func:`plot_gap`, :func:`.claims.check_gap`).

Everything starts from :func:`run_table`: one row per run with its final test accuracy (1 - the last
``test_error``), its time (``train_s`` on the backend's clock, simulated seconds on sim; else the last
``sim_s``), its local steps per learner S (``updates_total``) and its training loss at update 0. A run that
diverged (status ``diverged``, or a non-finite last evaluation) is scored at chance, 10 % for CIFAR-10's ten
classes: the paper's "degrade to around 10 %, i.e. random guess" for runs that "do not converge"; figures
mark such points with a cross.

Accuracies are as the runs evaluated them. For networks with BatchNorm (vgg) each evaluated x (the server's copy,
the learners' average) first gets running statistics re-estimated on ``log.bn_samples`` training samples
(:meth:`hdist.problems.Problem.recalibrate_bn`): no single learner's statistics belong to it.

Theorem 3.4's constants L and M come from the stem's ``algo=kavg_probe`` arm, a probe at w~_1
(:mod:`hdist.algos.kavg_probe`, :func:`hdist.analysis.kavg_bound.probe`), read from the results table like
everything else: without it the bound is not drawn and its claim is not checked. The claim checks are in
:mod:`hdist.papers.kavg18.claims`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hdist.analysis import kavg_bound as kb
from hdist.plots import data_note, figure, legend, name_claims, run_as

#: Accuracy of a random guess on CIFAR-10: the score of a run that diverged.
CHANCE = 0.1
LABEL = {"kavg": "K-AVG", "downpour": "Downpour", "eamsgd": "EAMSGD", "sgd": "SGD"}
ASYNC = ("downpour", "eamsgd")
#: Paper's speedups of K-AVG at P = 128 (section 4.1: "around 2.5 and 2.6 over Downpour and EAMSGD").
PAPER_SPEEDUP_128 = {"downpour": 2.5, "eamsgd": 2.6}
#: The paper's networks (section 4: a VGG-16 with BN, NIN; "vgg" without a depth column is taken as the paper's),
#: its learner counts P and batch B (section 4.1: 16; 4.2, figs 5-6: 32): titles and claims name what ran instead.
NETS = {"vgg": ("VGG-16", ("vgg", "vgg16")), "nin": ("NIN", ("nin",))}
PAPER_P = (8, 16, 32, 64, 128)
PAPER_B = 16


def _trained(df: pd.DataFrame, nets: tuple[str, ...]) -> pd.DataFrame:
    """The training runs of ``nets`` (the kavg_probe arm measures constants; its one learner is no setting)."""
    if df is None or df.empty or "model" not in df.columns:
        return df
    d = df[df["model"].isin(nets)]
    return d[d["algo"] != "kavg_probe"] if "algo" in d.columns else d


def setting(df: pd.DataFrame, nets: tuple[str, ...] = ("vgg",), batch: int = PAPER_B,
            workers: tuple[int, ...] = PAPER_P) -> str:
    """The paper's network(s) ``nets``, with the model, batch and learner counts the runs used where they differ
    (:func:`hdist.plots.run_as`)."""
    name = " and ".join(NETS[n][0] for n in nets)
    return run_as(_trained(df, nets), name, models=[m for n in nets for m in NETS[n][1]], batch=batch,
                  workers=workers)


def named(claims: list, df: pd.DataFrame, nets: tuple[str, ...] = ("vgg",), batch: int = PAPER_B,
          workers: tuple[int, ...] = PAPER_P) -> list:
    """``claims`` with :func:`setting`'s label before each, where the runs differ from the paper's setting."""
    return name_claims(claims, _trained(df, nets), " and ".join(NETS[n][0] for n in nets),
                       models=[m for n in nets for m in NETS[n][1]], batch=batch, workers=workers)


# ---------------------------------------------------------------------------------------------------------------
# One row per run
# ---------------------------------------------------------------------------------------------------------------


def _col(g: pd.DataFrame, name: str):
    if name not in g.columns:
        return None
    v = g[name].dropna()
    return v.iloc[0] if len(v) else None


def run_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: run_id, algo, model, workers, k, batch_size, lr, seed, status, accuracy (final; CHANCE
    when diverged), diverged, time_s, steps (S: local steps per learner), f0 (training loss at update 0)."""
    cols = ["run_id", "algo", "model", "workers", "k", "batch_size", "lr", "seed", "scale", "status", "accuracy",
            "diverged", "time_s", "steps", "f0"]
    if df is None or df.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for rid, g in df.groupby("run_id", sort=True):
        status = _col(g, "status") or "done"
        te = g[(g["metric"] == "test_error") & (g["kind"] == "eval")] if "kind" in g.columns else \
            g[g["metric"] == "test_error"]
        te = te.sort_values(["updates", "epoch"], kind="mergesort")
        last = float(te["value"].iloc[-1]) if len(te) else math.nan
        diverged = status == "diverged" or (len(te) > 0 and not math.isfinite(last))
        acc = CHANCE if diverged else (1.0 - last if math.isfinite(last) else math.nan)
        ts = g[g["metric"] == "train_s"]["value"]
        if len(ts):
            time_s = float(ts.max())
        elif "sim_s" in g.columns and g["sim_s"].notna().any():
            time_s = float(g["sim_s"].max())
        else:
            time_s = float(g["wall_s"].max()) if "wall_s" in g.columns else math.nan
        if diverged:
            time_s = math.nan  # a run stopped early took no comparable time
        steps = g[g["metric"] == "updates_total"]["value"]
        tl = g[(g["metric"] == "train_loss_full") & (g["updates"] == 0)]["value"]
        k = _col(g, "algo.k")
        rows.append({
            "run_id": rid, "algo": _col(g, "algo"), "model": _col(g, "model"), "workers": int(_col(g, "workers") or 1),
            "k": int(k) if k is not None and not pd.isna(k) else math.nan,
            "batch_size": _col(g, "algo.batch_size"), "lr": _col(g, "algo.lr"), "seed": _col(g, "seed"),
            "scale": _col(g, "scale"), "status": status, "accuracy": acc, "diverged": bool(diverged),
            "time_s": time_s, "steps": float(steps.max()) if len(steps) else math.nan,
            "f0": float(tl.iloc[0]) if len(tl) else math.nan,
        })
    return pd.DataFrame(rows, columns=cols)


def summary(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean accuracy and time over seeds per ``by`` group, with run and diverged counts."""
    if runs.empty:
        return pd.DataFrame(columns=[*by, "accuracy", "time_s", "runs", "diverged"])
    g = runs.groupby(by, dropna=False, sort=True)
    return g.agg(accuracy=("accuracy", "mean"), time_s=("time_s", "mean"), runs=("run_id", "size"),
                 diverged=("diverged", "sum")).reset_index()


def pct(v: float) -> str:
    return f"{100 * v:.1f}%" if math.isfinite(v) else "n/a"


def _setting_note(runs: pd.DataFrame, what: str = "") -> str:
    parts = []
    for col, name in (("k", "K"), ("batch_size", "B"), ("lr", "gamma0")):
        vals = sorted({v for v in runs[col].dropna().unique()}) if col in runs.columns else []
        if len(vals) == 1:
            v = vals[0]
            parts.append(f"{name} = {int(v) if float(v).is_integer() and name != 'gamma0' else v:g}")
    return (what + ", " if what else "") + ", ".join(parts)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def _log2_axis(ax, ps) -> None:
    ax.set_xscale("log", base=2)
    ps = sorted({int(p) for p in ps})
    if ps:
        ax.set_xticks(ps)
        ax.set_xticklabels([str(p) for p in ps])
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------------------------------------------------------
# figs 1, 2: accuracy vs P
# ---------------------------------------------------------------------------------------------------------------


def plot_accuracy_vs_p(df: pd.DataFrame, title: str):
    runs = run_table(df)
    fig, (ax,) = figure(1, width=5.2, height=3.8, title=title + data_note(df))
    s = summary(runs, ["algo", "workers"])
    for algo in [a for a in ("kavg", *ASYNC) if a in set(s["algo"])]:
        g = s[s["algo"] == algo].sort_values("workers")
        ax.plot(g["workers"], 100 * g["accuracy"], "o-", label=LABEL.get(algo, algo))
    bad = runs[runs["diverged"]]
    if len(bad):
        ax.plot(bad["workers"], 100 * bad["accuracy"], "kx", ms=9, label="diverged (scored as chance)")
    ax.axhline(100 * CHANCE, color="grey", ls=":", lw=1, label="chance")
    _log2_axis(ax, runs["workers"])
    ax.set_xlabel("learners P")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(_setting_note(runs[runs["algo"] == "kavg"], "final accuracy"), fontsize=8)
    legend(ax)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# figs 3, 4: speedup over the asynchronous baselines
# ---------------------------------------------------------------------------------------------------------------


def speedups(df: pd.DataFrame) -> pd.DataFrame:
    """Per P: time of each asynchronous baseline over K-AVG's for the same epochs (mean time over seeds)."""
    s = summary(run_table(df), ["algo", "workers"])
    t = {(a, int(p)): float(v) for a, p, v in zip(s["algo"], s["workers"], s["time_s"])}
    ps = sorted({p for (a, p) in t if a == "kavg"})
    rows = []
    for p in ps:
        row = {"workers": p, "kavg_s": t[("kavg", p)]}
        for a in ASYNC:
            ta = t.get((a, p), math.nan)
            row[f"{a}_s"] = ta
            row[a] = ta / t[("kavg", p)] if t[("kavg", p)] > 0 else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["workers", "kavg_s", *[c for a in ASYNC for c in (f"{a}_s", a)]])


def plot_speedup(df: pd.DataFrame, title: str):
    sp = speedups(df)
    fig, (ax,) = figure(1, width=5.2, height=3.8, title=title + data_note(df))
    for a in ASYNC:
        if a in sp.columns and sp[a].notna().any():
            ax.plot(sp["workers"], sp[a], "o-", label=f"over {LABEL[a]}")
    if len(sp) and sp["workers"].max() >= 64:
        for a, v in PAPER_SPEEDUP_128.items():
            ax.plot([128], [v], "*", ms=11, label=f"paper, over {LABEL[a]} (P = 128)")
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    _log2_axis(ax, sp["workers"] if len(sp) else [])
    ax.set_xlabel("learners P")
    ax.set_ylabel("speedup of K-AVG (time for equal epochs)")
    runs = run_table(df)
    ax.set_title(_setting_note(runs[runs["algo"] == "kavg"], "simulated seconds" if "sim_s" in df.columns
                               and df["sim_s"].notna().any() else "wall seconds"), fontsize=8)
    legend(ax)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# figs 5, 6: accuracy vs K, Theorem 3.4
# ---------------------------------------------------------------------------------------------------------------


def k_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean final accuracy of the K-AVG runs per (P, K), with steps S, batch B, lr, F(w~_1) and diverged counts."""
    runs = run_table(df)
    runs = runs[(runs["algo"] == "kavg") & runs["k"].notna()]
    if runs.empty:
        return pd.DataFrame(columns=["workers", "k", "accuracy", "runs", "diverged", "steps", "batch_size", "lr"])
    g = runs.groupby(["workers", "k"], sort=True)
    return g.agg(accuracy=("accuracy", "mean"), runs=("run_id", "size"), diverged=("diverged", "sum"),
                 steps=("steps", "median"), batch_size=("batch_size", "first"), lr=("lr", "first"),
                 f0=("f0", "mean")).reset_index()


def measured_k_opt(kt: pd.DataFrame) -> dict[int, int]:
    """P -> the K of highest mean accuracy (the smallest such K on ties)."""
    out = {}
    for p, g in kt.groupby("workers", sort=True):
        g = g.sort_values("k")
        out[int(p)] = int(g["k"].iloc[int(np.argmax(g["accuracy"].to_numpy()))])
    return out


def probe_estimates(df: pd.DataFrame) -> dict[str, float] | None:
    """L, M (and F1, grad_norm_sq) for Theorem 3.4 from the table's ``probe/*`` rows (the stem's ``kavg_probe``
    arm; the mean over seeds); None when the table has no probe run."""
    if df is None or df.empty:
        return None
    rows = df[df["metric"].astype(str).str.startswith("probe/")]
    if not {"probe/L", "probe/M"} <= set(rows["metric"]):
        return None
    return {m.split("/", 1)[1]: float(g["value"].mean()) for m, g in rows.groupby("metric")}


def bound_table(df: pd.DataFrame, est: dict[str, float] | None, f_star: float | None = None) -> pd.DataFrame:
    """Per P: the Setting of Theorem 3.4 (L, M from ``est``; gap from the runs; B, S from the K-AVG runs; gamma =
    the runs' gamma_0 or, where (3.41) fails there for some swept K, the largest gamma at which it holds for all of
    them), with ``gamma_run``, delta, K_max of (3.41), the predicted K_opt over the swept K and whether (3.47)
    holds."""
    kt = k_table(df)
    cols = ["workers", "L", "M", "gap", "gamma", "B", "P", "S", "gamma_run", "delta", "delta_star", "k_max",
            "k_opt_pred", "sufficient", "setting"]
    if kt.empty or not est:
        return pd.DataFrame(columns=cols)
    f1, fs = kb.gap_from_runs(df[df["algo"] == "kavg"], f_star)
    ks = sorted(int(k) for k in kt["k"].unique())
    L, M = float(est["L"]), float(est["M"])
    rows = []
    for p, g in kt.groupby("workers", sort=True):
        gamma_run = float(g["lr"].iloc[0])
        gamma = min(gamma_run, kb.gamma_admissible(L, ks))
        s = kb.Setting(L=L, M=M, gap=max(f1 - fs, 0.0), gamma=gamma, B=int(g["batch_size"].iloc[0]), P=int(p),
                       S=int(round(float(g["steps"].median()))))
        rows.append({"workers": int(p), **s.as_dict(), "gamma_run": gamma_run, "delta": kb.delta_of(s),
                     "delta_star": kb.delta_star(s),
                     "k_max": kb.k_max(s.L, s.gamma), "k_opt_pred": kb.k_opt(s, ks),
                     "sufficient": kb.k_opt_above_one(s), "setting": s})
    return pd.DataFrame(rows, columns=cols)


def bound_note(r) -> str:
    note = (f"L = {r['L']:.3g}, M = {r['M']:.3g}, F(w1) - F* = {r['gap']:.3g}, gamma = {r['gamma']:.3g}, "
            f"delta = {r['delta']:.3g} (K_opt > 1 needs delta < {r['delta_star']:.3g} at P = {int(r['workers'])})")
    if r["gamma"] < r["gamma_run"]:
        note += (f"; the runs' gamma = {r['gamma_run']:g} violates (3.41) (L gamma = {r['L'] * r['gamma_run']:.3g}): "
                 f"evaluated at the largest gamma it admits for every swept K")
    return note


def plot_k_sweep(df: pd.DataFrame, title: str):
    kt = k_table(df)
    fig, (ax, bx) = figure(2, width=4.6, height=3.6, title=title + data_note(df))
    kopt = measured_k_opt(kt) if len(kt) else {}
    for p, g in kt.groupby("workers", sort=True):
        g = g.sort_values("k")
        line, = ax.plot(g["k"], 100 * g["accuracy"], "o-", label=f"P = {int(p)}")
        best = g[g["k"] == kopt[int(p)]]
        ax.plot(best["k"], 100 * best["accuracy"], "*", ms=12, color=line.get_color())
        bad = g[g["diverged"] > 0]
        if len(bad):
            ax.plot(bad["k"], 100 * bad["accuracy"], "kx", ms=8)
    _log2_axis(ax, kt["k"] if len(kt) else [])
    ax.set_xlabel("K (local steps between averages)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("measured (star: K_opt)", fontsize=8)
    legend(ax)
    est = probe_estimates(df) if len(kt) else None
    bt = bound_table(df, est)
    _log2_axis(bx, kt["k"] if len(kt) else [])
    bx.set_xlabel("K")
    if bt.empty:
        bx.set_title("Theorem 3.4: no K-AVG runs", fontsize=8)
    else:
        ks = sorted(int(k) for k in kt["k"].unique())
        grid = np.unique(np.concatenate([np.arange(1, max(ks) + 1), ks])).astype(int)
        for _, r in bt.iterrows():
            s = r["setting"]
            vals = np.asarray(kb.bound(grid, s), dtype=float) / kb.bound(1, s)
            line, = bx.plot(grid, vals, "-", label=f"P = {int(r['workers'])}")
            kp = int(r["k_opt_pred"])
            bx.plot([kp], [kb.bound(kp, s) / kb.bound(1, s)], "o", color=line.get_color(), ms=7)
        r0 = bt.iloc[0]
        lo, hi = bx.get_ylim()
        if lo > 0 and hi / lo > 20:
            bx.set_yscale("log")  # a wide range of bounds; a narrow one reads better on a linear axis
        bx.set_ylabel("B(K) / B(1)")
        bx.set_title("Theorem 3.4, eq. (3.44) (dot: K_opt)", fontsize=8)
        bx.text(0.02, 0.98, "\n".join(_wrap(bound_note(r0), 48)), transform=bx.transAxes, va="top", fontsize=6)
        bx.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def k_sweep_markdown(df: pd.DataFrame) -> str:
    """Accuracy per (P, K) with the measured and predicted K_opt, as markdown."""
    kt = k_table(df)
    if kt.empty:
        return "no K-AVG runs\n"
    ks = sorted(int(k) for k in kt["k"].unique())
    kopt = measured_k_opt(kt)
    bt = bound_table(df, probe_estimates(df))
    pred = {int(r["workers"]): r["k_opt_pred"] for _, r in bt.iterrows()} if len(bt) else {}
    head = ["P", *[f"K={k}" for k in ks], "K_opt measured", "K_opt Theorem 3.4"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for p, g in kt.groupby("workers", sort=True):
        a = {int(k): v for k, v in zip(g["k"], g["accuracy"])}
        kp = pred.get(int(p), math.nan)
        lines.append("| " + " | ".join([str(int(p)), *[pct(a.get(k, math.nan)) for k in ks], str(kopt[int(p)]),
                                        str(int(kp)) if isinstance(kp, (int, float)) and math.isfinite(kp) else "n/a"])
                     + " |")
    if len(bt):
        lines += ["", "Theorem 3.4: " + bound_note(bt.iloc[0]) + "."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# fig 7: gap to sequential SGD
# ---------------------------------------------------------------------------------------------------------------


def gap_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, P): SGD's accuracy minus K-AVG's (positive: K-AVG worse), and K-AVG's epoch-time speedup over
    SGD (time of the SGD run over the K-AVG run's, the same epochs)."""
    runs = run_table(df)
    cols = ["model", "workers", "kavg", "sgd", "gap", "time_speedup"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for model, g in runs.groupby("model", sort=True):
        sgd = g[g["algo"] == "sgd"]
        if sgd.empty:
            continue
        a_sgd, t_sgd = float(sgd["accuracy"].mean()), float(sgd["time_s"].mean())
        s = summary(g[g["algo"] == "kavg"], ["workers"])
        for _, r in s.iterrows():
            rows.append({"model": model, "workers": int(r["workers"]), "kavg": float(r["accuracy"]), "sgd": a_sgd,
                         "gap": a_sgd - float(r["accuracy"]),
                         "time_speedup": t_sgd / float(r["time_s"]) if r["time_s"] and r["time_s"] > 0 else math.nan})
    return pd.DataFrame(rows, columns=cols)


def plot_gap(df: pd.DataFrame, title: str):
    gt = gap_table(df)
    fig, (ax, bx) = figure(2, width=4.6, height=3.6, title=title + data_note(df))
    for model, g in gt.groupby("model", sort=True):
        g = g.sort_values("workers")
        ax.plot(g["workers"], 100 * g["gap"], "o-", label=str(model))
        bx.plot(g["workers"], g["time_speedup"], "o-", label=str(model))
    ax.axhline(0.0, color="grey", ls=":", lw=1)
    ps = gt["workers"] if len(gt) else []
    _log2_axis(ax, ps)
    _log2_axis(bx, ps)
    if len(gt):
        top = float(gt["workers"].max())
        bx.plot([1, top], [1, top], "k:", label="ideal")
    ax.set_xlabel("learners P")
    ax.set_ylabel("SGD accuracy - K-AVG accuracy (points)")
    ax.set_title("accuracy gap (> 0: K-AVG worse)", fontsize=8)
    bx.set_xlabel("learners P")
    bx.set_ylabel("epoch-time speedup over SGD")
    bx.set_title("time of sequential SGD / K-AVG, same epochs", fontsize=8)
    for a in (ax, bx):
        legend(a)
    fig.tight_layout()
    return fig


def gap_markdown(df: pd.DataFrame) -> str:
    gt = gap_table(df)
    if gt.empty:
        return "no SGD and K-AVG runs\n"
    lines = ["| model | P | SGD | K-AVG | gap (points) | epoch-time speedup |", "|---|---:|---:|---:|---:|---:|"]
    for _, r in gt.iterrows():
        lines.append(f"| {r['model']} | {int(r['workers'])} | {pct(r['sgd'])} | {pct(r['kavg'])} | "
                     f"{100 * r['gap']:+.1f} | {r['time_speedup']:.2f} |")
    return "\n".join(lines) + "\n"


def accuracy_markdown(df: pd.DataFrame) -> str:
    s = summary(run_table(df), ["algo", "workers"])
    if s.empty:
        return "no runs\n"
    algos = [a for a in ("kavg", *ASYNC) if a in set(s["algo"])]
    ps = sorted(int(p) for p in s["workers"].unique())
    lines = ["| P | " + " | ".join(LABEL[a] for a in algos) + " |", "|---:|" + "---:|" * len(algos)]
    for p in ps:
        cells = []
        for a in algos:
            r = s[(s["algo"] == a) & (s["workers"] == p)]
            cells.append(pct(float(r["accuracy"].iloc[0])) + (" (diverged)" if len(r) and r["diverged"].iloc[0]
                                                               else "") if len(r) else "-")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def speedup_markdown(df: pd.DataFrame) -> str:
    sp = speedups(df)
    if sp.empty:
        return "no runs\n"
    lines = ["| P | K-AVG (s) | Downpour (s) | EAMSGD (s) | over Downpour | over EAMSGD |",
             "|---:|---:|---:|---:|---:|---:|"]
    for _, r in sp.iterrows():
        lines.append(f"| {int(r['workers'])} | {r['kavg_s']:.4g} | {r['downpour_s']:.4g} | {r['eamsgd_s']:.4g} | "
                     f"{r['downpour']:.2f} | {r['eamsgd']:.2f} |")
    lines += ["", "Paper (section 4.1): around 2.5 over Downpour and 2.6 over EAMSGD at P = 128; "
                  "below 1 at P = 8 (vgg)."]
    return "\n".join(lines) + "\n"
