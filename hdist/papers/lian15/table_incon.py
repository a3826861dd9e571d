"""lian15 table "AsySG-incon (Synthetic data)" and poster fig. 4: AsySG-incon on 1, 4, ..., 32 threads.

The same panels, table, target rule and claims as ``lian15-table-con`` (whose module does the
work, see there), with the poster's AsySG-incon numbers: training loss against global updates
and against time per worker count, iteration and time speedup against workers with the ideal
line and the poster's values, and the table, ours vs the poster. Time speedup is claimed only up
to the cores of the timing machine (2); iteration speedup at every worker count.
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.lian15 import table_con as _con

SPEC = {
    "name": "AsySG-incon",
    "title": "lian15 fig. 4 + table",
    "unit": "thr",  # the poster's column label: thr-K
    "paper": {
        "iteration_speedup": {1: 1.0, 4: 3.9, 8: 7.8, 12: 11.6, 16: 15.4, 20: 19.9, 24: 24.1, 28: 28.7, 32: 31.6},
        "time_speedup": {1: 1.0, 4: 4.0, 8: 8.1, 12: 11.9, 16: 16.3, 20: 19.2, 24: 22.7, 28: 26.1, 32: 29.2},
    },
}


def plot(df: pd.DataFrame):
    return _con.plot(df, SPEC)


def check(df: pd.DataFrame) -> list[Claim]:
    return _con.check(df, SPEC)


def tables(df: pd.DataFrame) -> dict[str, str]:
    return _con.tables(df, SPEC)
