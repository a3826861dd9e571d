"""Thesis fig. 18 (ch. 5.5.1): test top-1 accuracy of ResNet-8 on CIFAR-10, BP vs DNI vs DDG, one split after
layer 1, 3, 5 or 7 -- the runs of fig. 17 (the same sweep under this stem), drawn as accuracy.

Panels, claims and table come from ``thesis-fig17`` (:func:`draw`, :func:`claims` with ``kind="top1"``):
at every split position DDG's final test top-1 is within ``TOP1_TOL`` percentage points of BP's (the
thesis: the curves overlap). Top-1 = 100 x (1 - test_error) at each evaluation.
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.thesis import fig17 as _f17


def plot(df: pd.DataFrame):
    return _f17.draw(df, "top1", title="thesis fig. 18: {net} top-1, one split point")


def check(df: pd.DataFrame) -> list[Claim]:
    return _f17.claims(df, "top1")


def tables(df: pd.DataFrame) -> dict[str, str]:
    return _f17.tables(df)
