"""kavg18 Figure 1: final test accuracy against P for vgg on CIFAR-10, K-AVG (K = 16) vs Downpour vs EAMSGD.

One line per algorithm; runs that diverged are scored at chance (10 %) and marked with a cross. Claims (section
4.1): K-AVG is better than both baselines at every P; the baselines' accuracy falls as P grows; at the largest P
(the paper's 128) they are near a random guess. The drawing and the claims are shared with fig. 2
(:mod:`hdist.papers.kavg18.common`).
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.kavg18.claims import check_accuracy_vs_p
from hdist.papers.kavg18.common import accuracy_markdown, named, plot_accuracy_vs_p, setting


def plot(df: pd.DataFrame):
    return plot_accuracy_vs_p(df, f"kavg18 fig. 1: scaling with {setting(df)} (CIFAR-10)")


def check(df: pd.DataFrame) -> list[Claim]:
    return named(check_accuracy_vs_p(df, "fig. 1, vgg"), df, ("vgg",))


def tables(df: pd.DataFrame) -> dict[str, str]:
    return {"accuracy": accuracy_markdown(df)}
