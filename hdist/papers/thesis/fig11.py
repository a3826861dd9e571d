"""Thesis fig. 11: the learning-rate schedule: linear warmup over 20 epochs, then polynomial decay to 0.

Drawn from :mod:`hdist.schedules` with the thesis' setting (gamma_base 0.1 at B_base 128, 200 epochs, power
2) for B = 128..8192 (left), and, right, the rate the experiment's one cheap run logged at every step against
the same function evaluated at its own B: the schedule the figure draws is the one training uses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from hdist.claims import Claim, not_checked, sanity
from hdist.plots import figure
from hdist.schedules import lr_at

THESIS = {"lr": 0.1, "base_batch": 128, "schedule": "poly_decay", "warmup_epochs": 20.0, "power": 2.0}
EPOCHS = 200.0
BATCHES = (128, 512, 2048, 8192)


def schedule(B: int, epochs: np.ndarray, cfg: dict = THESIS, total: float = EPOCHS) -> np.ndarray:
    c = OmegaConf.create(cfg)
    return np.array([lr_at(c, float(e), total) * B / float(cfg["base_batch"]) for e in epochs])


def logged(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["metric"] == "lr"].sort_values("step")


def expected(run: pd.DataFrame) -> np.ndarray:
    """The rate hdist.schedules gives at each logged step of the cheap run (B = 32, 1 step per epoch)."""
    cfg = dict(THESIS)
    total = float(run["epoch"].max())
    # a row logged after step s carries epoch s / spe; the rate was set at the start of that step
    starts = run["epoch"].to_numpy() - 1.0
    c = OmegaConf.create(cfg)
    return np.array([lr_at(c, float(e), total) * 32 / 128 for e in starts])


def plot(df: pd.DataFrame):
    fig, (ax1, ax2) = figure(2, title="thesis fig. 11: warmup (20 epochs) then polynomial decay")
    e = np.linspace(0, EPOCHS, 801)
    for B in BATCHES:
        ax1.plot(e, schedule(B, e), label=f"B={B}")
    ax1.set_xlabel("epochs")
    ax1.set_ylabel("gamma_scale x schedule")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    run = logged(df)
    if len(run):
        ax2.plot(run["epoch"] - 1.0, run["value"], "o", ms=2, label="logged by the run (B=32)")
        ax2.plot(run["epoch"] - 1.0, expected(run), "-", lw=1, label="hdist.schedules")
        ax2.legend(fontsize=7)
    ax2.set_xlabel("epochs")
    ax2.set_ylabel("learning rate")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    e = np.linspace(0, EPOCHS, 2001)
    s = schedule(8192, e)
    peak = float(e[int(np.argmax(s))])
    # Both checks compare hdist's schedule code with itself: sanity checks of hdist, not the thesis' result.
    out = [sanity("the rate rises linearly during warmup, peaks at its end (epoch 20) and decays to 0 at epoch 200",
                 "peak at 20, 0 at 200", f"peak at {peak:.3g} ({s.max():.3g}), end {s[-1]:.3g}",
                 abs(peak - 20.0) < 0.2 and s[-1] < 1e-9 and abs(s.max() - 6.4) < 1e-6)]
    run = logged(df)
    if run.empty:
        out.append(not_checked("training uses the drawn schedule", "identical", "no run", kind="sanity"))
    else:
        err = float(np.max(np.abs(run["value"].to_numpy() - expected(run))))
        out.append(sanity("training uses exactly the drawn schedule (logged rate vs hdist.schedules)", "identical",
                         f"max abs difference {err:.3g} over {len(run)} steps", err < 1e-9))
    return out
