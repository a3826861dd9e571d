"""kavg18 Figure 3: speedup of K-AVG over Downpour and EAMSGD against P for vgg (time for the same epochs).

Speedup over a baseline at P = the baseline's training time / K-AVG's, both for the same epochs (``train_s``: on
the sim backend simulated seconds of the paper's cluster). Claims (section 4.1): the speedup grows with P; about
2.5 over Downpour and 2.6 over EAMSGD at P = 128; at P = 8 the asynchronous runs are slightly faster. Shared with
fig. 4 (:mod:`hdist.papers.kavg18.common`).
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.kavg18.claims import check_speedup
from hdist.papers.kavg18.common import named, plot_speedup, setting, speedup_markdown


def plot(df: pd.DataFrame):
    return plot_speedup(df, f"kavg18 fig. 3: speedup of K-AVG over ASGD, {setting(df)}")


def check(df: pd.DataFrame) -> list[Claim]:
    return named(check_speedup(df, "fig. 3, vgg"), df, ("vgg",))


def tables(df: pd.DataFrame) -> dict[str, str]:
    return {"speedup": speedup_markdown(df)}
