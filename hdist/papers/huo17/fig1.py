"""huo17 Figure 1: SGD vs SVRG vs SGD_SVRG on MNIST, MLP 784-100-10.

Panels: full training loss, training error and test error against epochs. SGD is drawn at its
best tuned (alpha, beta): the grid point with the lowest final training loss (mean over seeds).
The drawing and the claims are shared with fig. 3 (:mod:`hdist.papers.huo17.common`).
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.huo17.common import ALGO_LABEL, PANELS, best_runs, check_methods, plot_methods

__all__ = ["ALGO_LABEL", "PANELS", "best_runs", "check", "plot"]


def plot(df: pd.DataFrame):
    return plot_methods(df, "huo17 fig. 1: MNIST, MLP 784-100-10")


def check(df: pd.DataFrame) -> list[Claim]:
    return check_methods(df, fig="fig. 1")
