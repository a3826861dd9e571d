"""hdist.analysis.speedup on small hand-made metrics tables: exact values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hdist.analysis import choose_target, speedup_table, time_to_target, to_markdown, updates_to_target
from hdist.analysis.speedup import crossing


def _run(run_id: str, workers: int, updates, wall, values, metric: str = "train_loss_full") -> list[dict]:
    return [{"run_id": run_id, "workers": workers, "kind": "eval", "metric": metric, "updates": u, "wall_s": w,
             "value": v} for u, w, v in zip(updates, wall, values)]


def _frame(*runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for run in runs for row in run])


# Three runs: 1 worker, 2 workers, 4 workers; evaluation every 100 global updates.
U = [0, 100, 200, 300]
ONE = _run("a", 1, U, [0.0, 1.0, 2.0, 3.0], [2.0, 1.5, 1.0, 0.5])
TWO = _run("b", 2, U, [0.0, 0.5, 1.0, 1.5], [2.0, 1.6, 1.2, 0.8])
FOUR = _run("c", 4, U, [0.0, 0.25, 0.5, 0.75], [2.0, 1.8, 1.6, 1.0])


def test_crossing_interpolates_between_the_last_point_above_and_the_first_at_or_below():
    xs, vs = [0, 10, 20], [2.0, 1.0, 0.5]
    assert crossing(xs, vs, 0.75) == 15.0
    assert crossing(xs, vs, 0.75, interpolate=False) == 20.0
    assert crossing(xs, vs, 1.0) == 10.0  # exactly on a point
    assert crossing(xs, vs, 3.0) == 0.0  # already there at the first point
    assert math.isnan(crossing(xs, vs, 0.1))  # never reached


def test_time_and_updates_to_target_per_run():
    df = _frame(ONE, TWO)
    t = time_to_target(df, 1.0)
    u = updates_to_target(df, 1.0)
    assert t.to_dict() == {"a": 2.0, "b": 1.25}  # b: 1.0 + (1.2 - 1.0) / (1.2 - 0.8) * 0.5
    assert u.to_dict() == {"a": 200.0, "b": 250.0}
    assert time_to_target(df, 1.0, interpolate=False).to_dict() == {"a": 2.0, "b": 1.5}
    assert math.isnan(time_to_target(df, 0.1)["a"])


def test_only_eval_rows_of_the_metric_count_and_order_is_by_x():
    train = [{"run_id": "a", "workers": 1, "kind": "train", "metric": "train_loss_full", "updates": 50,
              "wall_s": 0.5, "value": 0.0}]
    other = _run("a", 1, [150], [1.5], [0.0], metric="test_error")
    shuffled = _frame(list(reversed(ONE)), train, other)
    assert time_to_target(shuffled, 1.0).to_dict() == {"a": 2.0}


def test_choose_target_is_a_loss_every_run_reaches():
    df = _frame(ONE, TWO, FOUR)
    # Best losses 0.5, 0.8, 1.0: the worst is 1.0; every run starts at 2.0.
    assert choose_target(df, margin=0.0) == 1.0
    assert choose_target(df) == pytest.approx(1.1)  # 1.0 + 0.1 * (2.0 - 1.0)
    assert (updates_to_target(df, choose_target(df)).notna()).all()
    assert math.isnan(choose_target(df, metric="test_error"))


def test_speedup_table_exact():
    tab = speedup_table(_frame(ONE, TWO, FOUR), target=1.0)
    assert list(tab.columns) == ["workers", "runs", "reached", "time_to_target", "updates_to_target",
                                 "time_speedup", "iteration_speedup", "metric", "target"]
    assert tab["workers"].tolist() == [1, 2, 4]
    assert tab["updates_to_target"].tolist() == [200.0, 250.0, 300.0]
    assert tab["time_to_target"].tolist() == [2.0, 1.25, 0.75]
    assert tab["time_speedup"].tolist() == pytest.approx([1.0, 1.6, 2.0 / 0.75])
    # K x U(1) / U(K): 1, 2 * 200 / 250, 4 * 200 / 300
    assert tab["iteration_speedup"].tolist() == pytest.approx([1.0, 1.6, 8.0 / 3.0])
    assert tab["target"].tolist() == [1.0, 1.0, 1.0]
    assert tab["metric"].tolist() == ["train_loss_full"] * 3


def test_speedup_table_takes_the_median_over_seeds_of_the_runs_that_reached():
    seeds = [_run("b0", 2, U, [0, 1, 2, 3], [2.0, 1.0, 0.9, 0.8]),  # U = 100, T = 1
             _run("b1", 2, U, [0, 1, 2, 3], [2.0, 1.5, 1.0, 0.8]),  # U = 200, T = 2
             _run("b2", 2, U, [0, 1, 2, 3], [2.0, 1.5, 1.2, 1.0]),  # U = 300, T = 3
             _run("b3", 2, U, [0, 1, 2, 3], [2.0, 1.9, 1.8, 1.7])]  # never
    tab = speedup_table(_frame(ONE, *seeds), target=1.0)
    row = tab[tab["workers"] == 2].iloc[0]
    assert (row["runs"], row["reached"]) == (4, 3)
    assert row["updates_to_target"] == 200.0 and row["time_to_target"] == 2.0
    assert row["iteration_speedup"] == 2.0 and row["time_speedup"] == 1.0


def test_speedup_table_chooses_the_target_and_needs_a_one_worker_run_for_speedups():
    tab = speedup_table(_frame(ONE, TWO, FOUR))
    assert tab["target"].iloc[0] == pytest.approx(1.1)
    no_base = speedup_table(_frame(TWO, FOUR), target=1.0)
    assert no_base["time_speedup"].isna().all() and no_base["iteration_speedup"].isna().all()
    assert no_base["updates_to_target"].tolist() == [250.0, 300.0]
    assert speedup_table(_frame(ONE), metric="test_error").empty


def test_to_markdown_with_the_papers_numbers_side_by_side():
    tab = speedup_table(_frame(ONE, TWO, FOUR), target=1.0)
    paper = {"iteration_speedup": {1: 1.01, 2: 1.93, 3: 2.65}, "time_speedup": {1: 1.0, 2: 1.73, 3: 2.28}}
    assert to_markdown(tab, paper) == (
        "| workers | runs reaching target | updates to target | time to target (s) | iteration speedup "
        "| iteration speedup (paper) | time speedup | time speedup (paper) |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        "| 1 | 1/1 | 200 | 2 | 1.00 | 1.01 | 1.00 | 1 |\n"
        "| 2 | 1/1 | 250 | 1.25 | 1.60 | 1.93 | 1.60 | 1.73 |\n"
        "| 4 | 1/1 | 300 | 0.75 | 2.67 | - | 2.67 | - |\n"
        "\n"
        "Target: train_loss_full <= 1\n")
    plain = to_markdown(speedup_table(_frame(TWO), target=0.1))
    assert plain.splitlines()[0] == ("| workers | runs reaching target | updates to target | time to target (s) "
                                     "| iteration speedup | time speedup |")
    assert plain.splitlines()[2] == "| 2 | 0/1 | n/a | n/a | n/a | n/a |"
