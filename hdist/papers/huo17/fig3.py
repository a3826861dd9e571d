"""huo17 Figure 3: SGD vs SVRG vs SGD_SVRG on CIFAR-10 as 384-dim features, MLP 384-50-10.

Panels (as fig. 1): full training loss, training error and test error against epochs, each
method at its best tuned setting (:func:`hdist.papers.huo17.common.best_runs`). Claims (huo17, "Curves
in Figure 3a show that SGD is the fastest method in the first few iterations, after that,
SVRG-based method will outperform it ... SGD_SVRG has better convergence rate than SVRG ... the
test error performance of three compared methods are comparable"): fig. 1's claims plus the
test errors' spread (:data:`hdist.papers.huo17.common.COMPARABLE_ERROR`).
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.huo17.common import check_methods, plot_methods


def plot(df: pd.DataFrame):
    return plot_methods(df, "huo17 fig. 3: CIFAR-10 features (384-dim), MLP 384-50-10")


def check(df: pd.DataFrame) -> list[Claim]:
    return check_methods(df, fig="fig. 3", test_errors_comparable=True)
