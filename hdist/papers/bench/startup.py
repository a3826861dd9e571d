"""bench-startup: start-to-exit seconds of the small verbs, beside the interpreter's own start."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.bench.common import side_medians, sides_panel
from hdist.plots import figure

GOAL_S = 1.0  # --help and ls, median seconds (newcomer issue)
ORDER = ["python", "help", "ls", "data"]


def _table(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["metric"] == "startup_s"]
    return pd.DataFrame({"side": d["role"], "startup_s": d["value"]})


def plot(df: pd.DataFrame):
    fig, (ax,) = figure(1, width=5.0, title="bench-startup: seconds from start to exit")
    sides_panel(ax, _table(df), "startup_s", ORDER, "seconds (dots: repetitions; bar: median)")
    ax.axhline(GOAL_S, color="r", ls="--", lw=0.8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    med = side_medians(_table(df), "startup_s")
    out = []
    for side, verb in (("help", "hdist --help"), ("ls", "hdist ls")):
        if side not in med.index:
            out.append(not_checked(f"{verb} takes < {GOAL_S:g} s", f"< {GOAL_S:g} s", "no rows"))
            continue
        floor = f"; python -c pass {med['python']:.3f} s" if "python" in med.index else ""
        out.append(Claim(f"{verb} takes < {GOAL_S:g} s from start to exit", f"< {GOAL_S:g} s",
                         f"{med[side]:.3f} s (median{floor})", bool(med[side] < GOAL_S)))
    return out
