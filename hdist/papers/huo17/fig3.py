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
from hdist.plots import name_claims, run_as

#: huo17's mini-batch |I_t| (sections 5.1-5.2): titles and claims name the batch run where it differs.
BATCH = 10


def plot(df: pd.DataFrame):
    net = run_as(df, "MLP 384-50-10", models=(), batch=BATCH)
    return plot_methods(df, f"huo17 fig. 3: CIFAR-10 features (384-dim), {net}")


def check(df: pd.DataFrame) -> list[Claim]:
    claims = check_methods(df, fig="fig. 3", test_errors_comparable=True)
    return name_claims(claims, df, "MLP 384-50-10", models=(), batch=BATCH)
