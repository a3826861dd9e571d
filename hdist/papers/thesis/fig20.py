"""Thesis fig. 20 (ch. 5.5.3): training and test loss of ResNet-110 on CIFAR-10 split over K = 2..4 devices.

One column per device setting -- real processes with K = 2 (this 2-core machine), the sim with K = 2, 3, 4 --
rows training loss and test loss against epochs: BP on 1 device, BP on K devices and DDG on K devices
(SGD-DDG, Alg. 9). Fig. 21 (``thesis-fig21``) draws the same runs' time.

Claims (thesis 5.5.3: "training networks in multiple GPUs does not affect the convergence rate"):
- for every K, DDG's final training loss is within ``LOSS_TOL`` (relative) of BP's on one device;
- BP on K devices computes what BP on one device does (the pipeline only moves the layers): final
  training losses equal to ``SAME_TOL`` (floating-point reduction order may differ between worlds).
"""

from __future__ import annotations

import math

import pandas as pd

from hdist.claims import Claim, curve, not_checked, sanity, settle
from hdist.papers.thesis.pipeline_time import curve_panel, final, stages_of, with_arm
from hdist.plots import data_note, figure, name_claims, run_as

#: DDG "does not affect the convergence rate": its final training loss within 10 % of BP's.
LOSS_TOL = 0.10
#: The thesis' network and batch (5.5.2): titles and claims name what ran where it differs.
BATCH = 128
#: BP on K devices vs on 1: the same arithmetic up to reduction order.
SAME_TOL = 0.01


def settings(df: pd.DataFrame) -> list[tuple[str, int]]:
    """(backend, K) of every multi-device setting present, real first."""
    d = df.assign(K=stages_of(df))
    pairs = {(b, int(k)) for b, k in zip(d["backend"], d["K"]) if k > 1}
    return sorted(pairs, key=lambda p: (p[0] == "sim", p[1]))


def column(df: pd.DataFrame, backend: str, K: int) -> pd.DataFrame:
    """The runs of one panel: BP on one device and every K-device run, on ``backend``."""
    d = df[df["backend"] == backend]
    k = stages_of(d)
    return d[(k == 1) | (k == K)]


def _where(backend: str, K: int) -> str:
    return f"{'sim' if backend == 'sim' else 'real processes'}, K={K}"


def plot(df: pd.DataFrame):
    cols = settings(df) or [("sim", 2)]
    rows = [("train_loss", "training loss"), ("test_loss", "test loss")]
    fig, axes = figure(1, title=f"thesis fig. 20: {run_as(df, 'ResNet-110', batch=BATCH)} over K devices, BP vs DDG"
                       + data_note(df))
    axes[0].remove()
    fig.set_size_inches(3.6 * len(cols), 3.0 * len(rows))
    grid = fig.subplots(len(rows), len(cols), squeeze=False)
    for j, (b, K) in enumerate(cols):
        part = with_arm(column(df, b, K), real_vs_sim=False)
        for i, (metric, label) in enumerate(rows):
            curve_panel(grid[i][j], part, metric, title=_where(b, K) if i == 0 else None, ylabel=label)
    fig.tight_layout()
    return fig


def _loss(df: pd.DataFrame, algo: str, K: int) -> float:
    d = df[(df["algo"] == algo) & (stages_of(df) == K)]
    v = final(d, "train_loss")
    return float(v.mean()) if len(v) else math.nan


def check(df: pd.DataFrame) -> list[Claim]:
    out: list[Claim] = []
    for b, K in settings(df):
        d = df[df["backend"] == b]
        base, ddg, bpk = _loss(d, "bp", 1), _loss(d, "ddg", K), _loss(d, "bp", K)
        if math.isnan(base):
            out.append(not_checked(f"DDG converges as BP ({_where(b, K)})", "same convergence",
                                   "no BP run on one device"))
            continue
        if not math.isnan(ddg):
            gap = (ddg - base) / base
            arms = {"BP": curve(d[(d["algo"] == "bp") & (stages_of(d) == 1)], "train_loss"),
                    "DDG": curve(d[(d["algo"] == "ddg") & (stages_of(d) == K)], "train_loss")}
            out.append(settle(f"DDG on K devices converges as BP on one ({_where(b, K)})",
                              "multiple GPUs do not affect the convergence rate",
                              f"final training loss DDG {ddg:.4g} vs BP {base:.4g} (gap {gap:+.1%}, tolerance "
                              f"{LOSS_TOL:.0%})", bool(gap <= LOSS_TOL), arms=arms, relation="similar"))
        if not math.isnan(bpk):
            rel = abs(bpk - base) / base
            # BP split over K devices is the same computation as BP on one: determinism of hdist, not a result.
            out.append(sanity(f"BP on K devices computes BP on one ({_where(b, K)})", "the same training",
                             f"final training loss {bpk:.6g} vs {base:.6g} (relative difference {rel:.2g}, "
                             f"tolerance {SAME_TOL})", bool(rel <= SAME_TOL)))
    out = out or [not_checked("DDG converges as BP on K devices", "same convergence", "no multi-device runs")]
    return name_claims(out, df, "ResNet-110", batch=BATCH)
