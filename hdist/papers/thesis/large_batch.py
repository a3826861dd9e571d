"""Helpers of the thesis ch. 4 figures (thesis-fig9 .. thesis-fig14): pure functions of a results frame."""

from __future__ import annotations

import math

import pandas as pd


def column(df: pd.DataFrame, key: str, default=None) -> pd.Series:
    """A config column that exists only when it varies between the runs loaded: ``default`` otherwise."""
    if key in df.columns:
        return df[key]
    return pd.Series([default] * len(df), index=df.index, dtype=object)


def per_run(df: pd.DataFrame, metric: str, how: str = "last") -> pd.Series:
    """One value of ``metric`` per run_id: its ``last`` or ``first`` row by step (NaN for runs without it)."""
    d = df[df["metric"] == metric].sort_values(["step", "wall_s"])
    g = d.groupby("run_id")["value"]
    return g.last() if how == "last" else g.first()


def run_table(df: pd.DataFrame, keys: dict[str, object]) -> pd.DataFrame:
    """One row per run: run_id, status, the base columns and ``keys`` (config key -> default)."""
    cols = ["run_id", "status", "algo", "model", "dataset", "stand_in_for"]
    runs = df.drop_duplicates("run_id")
    out = runs[[c for c in cols if c in runs.columns]].copy()
    for key, default in keys.items():
        out[key] = column(runs, key, default).values
    return out.set_index("run_id")


def final_loss(df: pd.DataFrame) -> pd.Series:
    """Final full training loss per run (inf for diverged runs)."""
    fin = per_run(df, "train_loss_full")
    status = df.drop_duplicates("run_id").set_index("run_id")["status"]
    fin = fin.reindex(status.index)
    fin[status == "diverged"] = math.inf
    return fin


def epochs_to(df: pd.DataFrame, metric: str, target: float) -> pd.Series:
    """Per run: the first epoch at which ``metric`` <= ``target`` (NaN when never)."""
    d = df[(df["metric"] == metric) & (df["value"] <= target)]
    return d.groupby("run_id")["epoch"].min()
