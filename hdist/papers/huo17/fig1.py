"""huo17 Figure 1: SGD vs SVRG vs SGD_SVRG on MNIST, MLP 784-100-10.

Panels: full training loss, training error and test error against epochs. SGD is drawn at its
best tuned (alpha, beta): the grid point with the lowest final training loss (mean over seeds).
The drawing and the claims are shared with fig. 3 (:mod:`hdist.papers.huo17.common`).
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.huo17.common import ALGO_LABEL, PANELS, best_runs, check_methods, plot_methods
from hdist.plots import name_claims, run_as

#: huo17's mini-batch |I_t| (sections 5.1-5.2): titles and claims name the batch run where it differs.
BATCH = 10

__all__ = ["ALGO_LABEL", "PANELS", "best_runs", "check", "plot"]


def plot(df: pd.DataFrame):
    return plot_methods(df, f"huo17 fig. 1: MNIST, {run_as(df, 'MLP 784-100-10', models=(), batch=BATCH)}")


def check(df: pd.DataFrame) -> list[Claim]:
    return name_claims(check_methods(df, fig="fig. 1"), df, "MLP 784-100-10", models=(), batch=BATCH)
