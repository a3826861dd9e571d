"""Thesis fig. 23 (ch. 5.5.2): ResNet-56 and ResNet-110 on CIFAR-100, BP vs SGD-DDG in two modules.

The panels, claims and table of ``thesis-fig22`` (see there) on CIFAR-100, with the CIFAR-100 column of
the thesis' Table 5 beside our best top-1.
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.thesis import fig22 as _f22


def plot(df: pd.DataFrame):
    return _f22.draw(df, "thesis fig. 23: ResNet-56/110 on CIFAR-100, 2 modules")


def check(df: pd.DataFrame) -> list[Claim]:
    return _f22.check(df)


def tables(df: pd.DataFrame) -> dict[str, str]:
    return _f22.tables(df, "cifar100")
