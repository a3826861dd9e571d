"""Thesis fig. 19 (ch. 5.5.1): ResNet-8 on CIFAR-10 with 2 to 4 split points, BP vs DNI vs DDG.

One column per number of split points (2: after layers 3, 5; 3: after 1, 3, 5; 4: after 1, 3, 5, 7), rows
training loss, test loss and test top-1 against epochs, BP (unsplit) in every column -- drawn with
``thesis-fig17``'s helpers.

Claims (thesis 5.5.1): "DDG performs as well as BP, regardless of the number of split points" -- with every
number of points DDG's final training loss is within ``LOSS_TOL`` of BP's (fig. 17's tolerance); "DNI is
very unstable when we place more split points, and cannot even converge sometimes" -- with the most split
points DNI's final training loss is above DDG's and above BP's.
"""

from __future__ import annotations

import math

import pandas as pd

from hdist.claims import Claim, not_checked, settle
from hdist.papers.thesis import fig17 as _f17
from hdist.papers.thesis.pipeline_time import accuracy_rows, curve_panel
from hdist.plots import data_note, figure, name_claims, run_as


def plot(df: pd.DataFrame):
    d = _f17.with_split(df)
    d = pd.concat([d, accuracy_rows(d)], ignore_index=True)
    bp = d[d["algo"] == "bp"]
    split = sorted({s for s in d.loc[d["algo"] != "bp", "splits"]}, key=lambda s: (len(s), s)) or [()]
    rows = [("train_loss", "training loss"), ("test_loss", "test loss"), ("test_top1", "test top-1 (%)")]
    fig, axes = figure(1, title=f"thesis fig. 19: {run_as(df, _f17.NETWORK, batch=_f17.BATCH)}, 2 to 4 split points"
                       + data_note(df))
    axes[0].remove()
    fig.set_size_inches(3.4 * len(split), 2.8 * len(rows))
    grid = fig.subplots(len(rows), len(split), squeeze=False)
    for j, s in enumerate(split):
        part = pd.concat([bp, d[(d["algo"] != "bp") & (d["splits"] == s)]], ignore_index=True)
        for i, (metric, label) in enumerate(rows):
            title = f"{len(s)} split points (after {', '.join(map(str, s))})" if i == 0 and s else None
            curve_panel(grid[i][j], part, metric, title=title, ylabel=label)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    runs = _f17.finals(df)
    bp = _f17._mean(runs, "bp")
    ddg = runs[runs["algo"] == "ddg"]
    if math.isnan(bp) or ddg.empty:
        return name_claims([not_checked("DDG performs as well as BP with 2-4 split points", "curves overlap",
                                        "needs BP and DDG runs")], df, _f17.NETWORK, batch=_f17.BATCH)
    out = []
    for s in sorted(set(ddg["splits"]), key=len):
        v = _f17._mean(runs, "ddg", s)
        gap = (v - bp) / bp
        out.append(settle(f"DDG's training loss is close to BP's with {len(s)} split points", "as good as BP",
                          f"DDG {v:.4g} vs BP {bp:.4g} (gap {gap:+.1%}, tolerance {_f17.LOSS_TOL:.0%})",
                          bool(gap <= _f17.LOSS_TOL), relation="similar",
                          arms={"BP": _f17.arm_curve(df, "bp"), "DDG": _f17.arm_curve(df, "ddg", s)}))
    dni = runs[runs["algo"] == "dni"]
    if len(dni):
        most = max(dni["splits"], key=len)
        a, c = _f17._mean(runs, "dni", most), _f17._mean(runs, "ddg", most)
        out.append(settle(f"DNI is unstable with many split points: with {len(most)} its training loss is above "
                          f"DDG's and BP's", "unstable; sometimes does not converge",
                          f"DNI {a:.4g} vs DDG {c:.4g} vs BP {bp:.4g}", bool(a > c and a > bp),
                          arms={"BP": _f17.arm_curve(df, "bp"), "DDG": _f17.arm_curve(df, "ddg", most)},
                          a=a, b=max(c, bp)))
    return name_claims(out, df, _f17.NETWORK, batch=_f17.BATCH)


def tables(df: pd.DataFrame) -> dict[str, str]:
    return _f17.tables(df)
