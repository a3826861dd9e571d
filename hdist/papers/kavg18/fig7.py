"""kavg18 Figure 7: the accuracy gap between sequential SGD and K-AVG against P, vgg and nin on CIFAR-10.

Left: SGD's final test accuracy minus K-AVG's (points; > 0: K-AVG worse), one line per network. Right: K-AVG's
speedup over SGD in epoch time (SGD's time over K-AVG's for the same epochs; simulated seconds on sim) with the
ideal line. Claims (section 4.3): vgg's gap grows with P (to 8.8 points at 64 and 128); nin stays within 1.3
points; the epoch-time speedup is almost linear. Drawing and claims in :mod:`hdist.papers.kavg18.common`.
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.kavg18.claims import check_gap
from hdist.papers.kavg18.common import NETS, PAPER_P, gap_markdown, named, plot_gap, setting


def plot(df: pd.DataFrame):
    who = setting(df, tuple(NETS), workers=(1, *PAPER_P))  # sequential SGD: one learner in the paper too
    return plot_gap(df, f"kavg18 fig. 7: accuracy gap between K-AVG and sequential SGD, {who}")


def check(df: pd.DataFrame) -> list[Claim]:
    return named(check_gap(df), df, tuple(NETS), workers=(1, *PAPER_P))


def tables(df: pd.DataFrame) -> dict[str, str]:
    return {"gap": gap_markdown(df)}
