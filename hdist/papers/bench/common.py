"""Helpers of the two-sided benchmarks (one side against another, several repetitions each):
pure functions of a per-run table with a ``side`` column and one value column."""

from __future__ import annotations

import textwrap

import pandas as pd


def side_medians(t: pd.DataFrame, value: str) -> pd.Series:
    """Median of ``value`` per side (over repetitions)."""
    return t.groupby("side")[value].median()


def sides_panel(ax, t: pd.DataFrame, value: str, order: list[str], ylabel: str, scale: float = 1.0) -> None:
    """Every repetition as a dot and the median as a bar, one column per side in ``order``."""
    med = side_medians(t, value)
    sides = [s for s in order if s in med.index]
    for i, side in enumerate(sides):
        v = t.loc[t["side"] == side, value] * scale
        ax.scatter([i] * len(v), v, alpha=0.6)
        ax.hlines(med[side] * scale, i - 0.25, i + 0.25, color="k")
    # Wrapped: a panel may hold several sides with long names.
    ax.set_xticks(range(len(sides)), [textwrap.fill(s, 14) for s in sides], fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.6, len(sides) - 0.4)


def ratio_text(t: pd.DataFrame, value: str, num: str, den: str, unit_scale: float = 1.0, unit: str = "") -> tuple:
    """(ratio of the medians num / den, a text giving it with both medians); ratio None if a side is missing."""
    med = side_medians(t, value)
    if num not in med.index or den not in med.index:
        return None, f"missing side: {num if num not in med.index else den}"
    r = float(med[num] / med[den])
    reps = int((t["side"] == num).sum()), int((t["side"] == den).sum())
    return r, (f"{r:.3f} (medians {med[num] * unit_scale:.4g} vs {med[den] * unit_scale:.4g}{unit}; "
               f"{reps[0]} and {reps[1]} reps)")


def ratio_panel(ax, t: pd.DataFrame, value: str, order: list[str], num: str, den: str, ylabel: str, label: str,
                goal: float, scale: float = 1.0) -> None:
    """:func:`sides_panel`, titled ``label = ratio (goal <= goal)`` with the ratio of the medians num / den."""
    sides_panel(ax, t, value, order, ylabel, scale=scale)
    r, _ = ratio_text(t, value, num, den)
    if r is not None:
        ax.set_title(f"{label} = {r:.3f} (goal <= {goal})", fontsize=8)
