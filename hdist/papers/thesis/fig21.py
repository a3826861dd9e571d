"""Thesis fig. 21 (ch. 5.5.3): computation time per epoch and best top-1 of ResNet-110 on CIFAR-10 over K devices.

The runs of fig. 20. Left: the training time per epoch of BP on one device, BP on K devices and DDG on K
devices, each bar split into forward and backward in proportion to the stages' ``forward_s`` and
``backward_s`` timers (summed over stages), for real processes (K = 2) and the sim (K = 2, 3, 4); a cross
marks Table 3's DDG time T_F + T_B / K from the one-device BP run's T_F and T_B. Right: the best test top-1
of every arm. Time = the last stage's clock at the last step (sim: virtual), evaluations excluded.

Claims (thesis 5.5.3):
- "forward time only accounts for about 32% of the total computation time for backpropagation": the
  forward share T_F / (T_F + T_B) of BP on one real device is in ``FWD_BAND`` (the sim's share is its cost
  model's 1/3 by construction and is not claimed);
- "when we increase the number of GPUs from 2 to 4, our method reduces about 30% to 50% of the total
  computation time": DDG's time per epoch is at least ``MIN_CUT`` below BP's on one device at every K;
- "DDG achieves a speedup of about 2 times ... across 4 GPUs": speedup at K = 4 at least ``SPEEDUP_4``;
- "the computation time is worse when we run backpropagation algorithm on multiple GPUs": BP on K devices
  takes at least as long as on one (within 2 %).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.thesis.pipeline_time import md_table, run_times, table3_model
from hdist.plots import data_note, figure, name_claims, run_as

#: Forward share of BP's time: the thesis' 32 %, within a band (2 x forward FLOPs for a backward = 1/3).
FWD_BAND = (0.20, 0.45)
#: DDG's cut of the time per epoch vs BP on one device at every K (the thesis: about 30 % at K = 2).
MIN_CUT = 0.25
#: DDG's speedup over BP on one device at K = 4 (the thesis: about 2x).
SPEEDUP_4 = 1.8
PAPER_CUT = {2: "~30%", 3: "30-50%", 4: "~50% (2x)"}
#: The thesis' batch (5.5.2): titles and claims name the model and batch run where they differ.
BATCH = 128


def times(df: pd.DataFrame) -> pd.DataFrame:
    t = run_times(df)
    if t.empty:
        return t
    err = df[df["metric"] == "test_error"].groupby("run_id")["value"].min()
    t["best_top1"] = [100.0 * (1.0 - float(err.get(r, math.nan))) for r in t["run_id"]]
    return t


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Medians over seeds per (backend, algo, K): epoch_s, T_F and T_B per epoch, forward share, best top-1."""
    t = times(df)
    if t.empty:
        return t
    t = t.assign(tf_epoch=t["T_F"] / t["epochs"], tb_epoch=t["T_B"] / t["epochs"])
    g = t.groupby(["backend", "algo", "K"], sort=True)
    return g.agg(epoch_s=("epoch_s", "median"), tf=("tf_epoch", "median"), tb=("tb_epoch", "median"),
                 fwd_share=("fwd_share", "median"), best_top1=("best_top1", "max"), runs=("run_id", "count"),
                 arm=("arm", "first")).reset_index()


def plot(df: pd.DataFrame):
    s = summary(df)
    backends = sorted(s["backend"].unique(), key=lambda b: b == "sim") if len(s) else []
    fig, axes = figure(len(backends) + 1, width=4.6,
                       title=f"thesis fig. 21: {run_as(df, 'ResNet-110', batch=BATCH)} time per epoch over K devices"
                       + data_note(df))
    if s.empty:
        axes[0].text(0.5, 0.5, "no runs", ha="center", transform=axes[0].transAxes)
        return fig
    s = s.sort_values(["K", "algo"])
    for ax, b in zip(axes, backends):
        part = s[s["backend"] == b]
        base = part[(part["algo"] == "bp") & (part["K"] == 1)]
        labels, marked = [], False
        for i, (_, r) in enumerate(part.iterrows()):
            fw = r["epoch_s"] * r["fwd_share"] if math.isfinite(r["fwd_share"]) else 0.0
            ax.bar(i, fw, color="tab:blue", label="forward" if i == 0 else None)
            ax.bar(i, r["epoch_s"] - fw, bottom=fw, color="tab:orange", label="backward" if i == 0 else None)
            labels.append(r["arm"].replace("sim ", "").replace("real ", ""))
            if r["algo"] == "ddg" and len(base):
                m = table3_model(float(base["tf"].iloc[0]), float(base["tb"].iloc[0]), int(r["K"]))
                ax.plot(i, m["ddg"], "kx", ms=8, label=None if marked else "Table 3: T_F + T_B/K")
                marked = True
        ax.set_xticks(np.arange(len(part)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("virtual s per epoch" if b == "sim" else "s per epoch")
        ax.set_title("sim (virtual time)" if b == "sim" else f"real ({b})", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    ax2 = axes[-1]
    s = s.sort_values(["backend", "K", "algo"])
    x = np.arange(len(s))
    ax2.bar(x, s["best_top1"], color="tab:green")
    ax2.set_xticks(x, s["arm"], rotation=45, ha="right", fontsize=7)
    ax2.set_ylabel("best test top-1 (%)")
    ax2.set_title("best test top-1", fontsize=9)
    ax2.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def _get(s: pd.DataFrame, backend: str, algo: str, K: int, col: str) -> float:
    r = s[(s["backend"] == backend) & (s["algo"] == algo) & (s["K"] == K)]
    return float(r[col].iloc[0]) if len(r) else math.nan


def check(df: pd.DataFrame) -> list[Claim]:
    s = summary(df)
    if s.empty:
        return name_claims([not_checked("DDG cuts 30-50% of the time", "30-50%", "no runs")], df, "ResNet-110",
                           batch=BATCH)
    out: list[Claim] = []
    real = [b for b in s["backend"].unique() if b != "sim"]
    for b in real:
        share = _get(s, b, "bp", 1, "fwd_share")
        if math.isfinite(share):
            out.append(Claim(f"forward is about a third of BP's time on one device ({b})", "about 32%",
                             f"{share:.1%} (band {FWD_BAND[0]:.0%}-{FWD_BAND[1]:.0%})",
                             bool(FWD_BAND[0] <= share <= FWD_BAND[1]), timed=True))
    for b in sorted(s["backend"].unique(), key=lambda v: v == "sim"):
        base = _get(s, b, "bp", 1, "epoch_s")
        where = "sim" if b == "sim" else f"real, {b}"
        if not math.isfinite(base):
            continue
        for K in sorted(int(k) for k in s[(s["backend"] == b) & (s["K"] > 1)]["K"].unique()):
            ddg, bpk = _get(s, b, "ddg", K, "epoch_s"), _get(s, b, "bp", K, "epoch_s")
            if math.isfinite(ddg):
                cut = 1.0 - ddg / base
                out.append(Claim(f"DDG on K={K} devices cuts the time per epoch of BP on one ({where})",
                                 PAPER_CUT.get(K, "30-50%"), f"{cut:.1%} less ({ddg:.4g} s vs {base:.4g} s; "
                                 f"speedup {base / ddg:.2f}x; at least {MIN_CUT:.0%} claimed)", bool(cut >= MIN_CUT),
                                 timed=b != "sim"))
                if K == 4:
                    out.append(Claim(f"DDG is about 2x faster than BP at K=4 ({where})", "about 2x",
                                     f"{base / ddg:.2f}x (at least {SPEEDUP_4} claimed)",
                                     bool(base / ddg >= SPEEDUP_4), timed=b != "sim"))
            if math.isfinite(bpk):
                out.append(Claim(f"BP on K={K} devices is no faster than on one ({where})",
                                 "worse: communication overhead", f"{bpk:.4g} s vs {base:.4g} s per epoch",
                                 bool(bpk >= 0.98 * base), timed=b != "sim"))
    return name_claims(out, df, "ResNet-110", batch=BATCH)


def tables(df: pd.DataFrame) -> dict[str, str]:
    s = summary(df)
    rows = []
    for _, r in s.iterrows():
        base = s[(s["backend"] == r["backend"]) & (s["algo"] == "bp") & (s["K"] == 1)]
        b = float(base["epoch_s"].iloc[0]) if len(base) else math.nan
        model = (table3_model(float(base["tf"].iloc[0]), float(base["tb"].iloc[0]), int(r["K"]))
                 if len(base) else {"bp": math.nan, "ddg": math.nan})
        pred = model["ddg"] if r["algo"] == "ddg" else model["bp"]
        paper = PAPER_CUT.get(int(r["K"]), "") if r["algo"] == "ddg" else ("slower than 1 device" if r["K"] > 1
                                                                           else "forward ~32%")
        rows.append([r["backend"], r["arm"], int(r["K"]), float(r["epoch_s"]), float(r["fwd_share"]),
                     pred, 1.0 - float(r["epoch_s"]) / b if b else math.nan, float(r["best_top1"]),
                     int(r["runs"]), paper])
    return {"time": md_table(["backend", "arm", "K", "time per epoch (s)", "forward share", "Table 3 model (s)",
                              "cut vs BP 1 device", "best top-1 (%)", "runs", "thesis"], rows)}
