"""kavg18 Figure 6: final test accuracy of K-AVG against K for each P, nin on CIFAR-10, with Theorem 3.4 beside it.

Left: accuracy against K, one line per P, the measured K_opt starred. Right: Theorem 3.4's bound B(K) (eq. 3.44,
normalised by B(1)) for each P from the estimated L, M and F(w~_1) - F*, its K_opt dotted, dashed beyond the K
that the step-size condition (3.41) admits (:mod:`hdist.analysis.kavg_bound`). Claims (section 4.2): K_opt = 1 at
almost every P for nin (the exception: P = 8); K matters more at large P; and Theorem 3.4's K_opt > 1 agrees with the
measured one. Shared with fig. 5 (:mod:`hdist.papers.kavg18.common`).
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.kavg18.claims import check_k_sweep
from hdist.papers.kavg18.common import k_sweep_markdown, named, plot_k_sweep, setting


def plot(df: pd.DataFrame):
    return plot_k_sweep(df, f"kavg18 fig. 6: different K for {setting(df, ('nin',), batch=32)} (CIFAR-10)")


def check(df: pd.DataFrame) -> list[Claim]:
    return named(check_k_sweep(df, "fig. 6", expect_above_one=False), df, ("nin",), batch=32)


def tables(df: pd.DataFrame) -> dict[str, str]:
    return {"k": k_sweep_markdown(df)}
