"""hdist reproduce STEM --estimate: the runs and their measured time, nothing written into results_dir."""

from __future__ import annotations

import re

import pytest

from hdist.estimate import run_seconds
from hdist.launch import prepare
from hdist.sweeps import experiment_runs

# huo17-fig1 at smoke with a two-point sweep of one arm: one timing run (a child process), ~5 s
TINY = ("scale=smoke", 'sweep=[{algo.lr:"0.01,0.05"}]')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The estimate of TINY (one timing run) and the results_dir it was given."""
    import glob
    import tempfile

    from hdist.estimate import estimate

    results = tmp_path_factory.mktemp("estimate") / "results"
    ovs = [*TINY, f"results_dir={results}"]
    pattern = f"{tempfile.gettempdir()}/hdist-estimate-*"
    before = set(glob.glob(pattern))
    est = estimate("huo17-fig1", ovs)
    assert set(glob.glob(pattern)) <= before  # the timing run's directory is gone
    return est, ovs, results


def test_estimate_counts_the_sweeps_runs_and_writes_nothing(tiny):
    from hdist.estimate import format_md_row, format_table

    est, ovs, results = tiny
    runs = experiment_runs("huo17-fig1", ovs)
    assert est["runs"] == len(runs) == 2
    assert len(est["arms"]) == 1 and len(est["arms"][0].runs) == 2  # the lr points share a timing
    assert est["total_s"] > 0 and not est["missing"]
    table = format_table(est)
    assert "huo17-fig1 at scale=smoke: 2 run(s) in 1 timed arm(s)" in table
    total = re.search(r"total: ([0-9.e+-]+) hours \(([0-9.]+) s\)", table)
    assert total and float(total.group(1)) > 0, table
    cells = [c.strip() for c in format_md_row(est).strip("|").split("|")]
    assert cells[:2] == ["huo17-fig1", "2"] and float(cells[2]) > 0 and cells[3].endswith("GB"), cells
    assert not results.exists()


def test_estimate_from_the_command_line(cli, tmp_path, monkeypatch):
    import hdist.estimate

    # The wiring only (flags, format, exit code): a fixed timing instead of a timing run.
    timing = {"exec_s": 2.0, "cpu_s": 2.0, "timed_s": 0.5, "evals": 2, "eval_s": 0.1, "eval_cpu_s": 0.1,
              "per_epoch_s": 3.0, "timed_cpu_share": 1.0, "epoch_end": 0.1, "peak_rss_bytes": 4e8}
    limits = []
    monkeypatch.setattr(hdist.estimate, "time_arm", lambda arm, **kw: limits.append(kw["limit_s"]) or dict(timing))
    results = tmp_path / "results"
    code, out, err = cli("reproduce", "huo17-fig1", *TINY, f"results_dir={results}", "--estimate", "--format=md")
    assert code == 0, err
    assert out.strip().startswith("| huo17-fig1 | 2 | "), out
    assert out.strip().endswith("| 0.40 GB |"), out
    code, out, err = cli("reproduce", "huo17-fig1", *TINY, f"results_dir={results}", "--estimate")
    assert code == 0, err
    assert "algo.lr=0.01" in out and "algo.lr=0.05" in out and "total: " in out, out
    assert set(limits) == {60.0}
    code, out, err = cli("reproduce", "huo17-fig1", *TINY, f"results_dir={results}", "--estimate", "--timing-limit=300")
    assert code == 0 and limits[-1] == 300.0, err
    assert not results.exists()


@pytest.mark.parametrize("args, names", [
    (("no-such-stem",), "no-such-stem"),
    (("huo17-fig1", "algo.lr=-1"), "algo.lr"),
    (("huo17-fig1", "--format=html"), "--format=html"),
    (("huo17-fig1", "--timing-limit=abc"), "--timing-limit=abc"),
    (("huo17-fig1", "--timing-limit=5"), "--timing-limit=5"),
    (("huo17-fig1", "--estmate"), "--estmate"),
])
def test_estimate_bad_input_is_one_line_exit_2(cli, tmp_path, args, names):
    results = tmp_path / "results"
    code, out, err = cli("reproduce", *args, "scale=smoke", f"results_dir={results}", "--estimate")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert names in err and not out
    assert not results.exists()


def test_run_seconds_adds_start_up_epochs_and_evaluations():
    combo = ["experiment=huo17-fig1", "scale=smoke", "scale.epochs=3", "log.evals_per_epoch=2"]
    cfg = prepare(combo, writes=False)
    # a short run of 5 s: 1 s of timed steps, 2 evaluations of 0.5 s, so 3 s of start-up; 10 s per epoch; a core
    timing = {"exec_s": 5.0, "cpu_s": 5.0, "timed_s": 1.0, "evals": 2, "eval_s": 0.5, "eval_cpu_s": 0.5,
              "per_epoch_s": 10.0, "timed_cpu_share": 1.0, "epoch_end": 0.01}
    assert run_seconds(cfg, combo, timing) == pytest.approx(3.0 + 10.0 * 3 + 0.5 * (2 * 3 + 2))
    # the same on a core another process shared half the time: the CPU share takes the load out
    loaded = {**timing, "exec_s": 10.0, "cpu_s": 5.0, "timed_s": 2.0, "eval_s": 1.0, "per_epoch_s": 20.0,
              "timed_cpu_share": 0.5}
    assert run_seconds(cfg, combo, loaded) == pytest.approx(run_seconds(cfg, combo, timing))
    assert run_seconds(cfg, combo, {"error": "timing run failed"}) is None


def test_cost_table_rewrites_only_the_named_rows_between_its_markers(tmp_path):
    from hdist.cost_table import BEGIN, END, read_rows, write_rows

    doc = tmp_path / "reproduction.md"
    doc.write_text(f"# Title\n\n## Cost table\n\n{BEGIN}\n{END}\n\n## Gallery\nkept\n")
    order = ["huo17-fig1", "huo17-fig2", "thesis-fig8"]
    write_rows(doc, {"thesis-fig8": "| thesis-fig8 | 4 | 1.5 | 2.00 GB |"}, order, "first note")
    rows = read_rows(doc)
    rows["huo17-fig1"] = "| huo17-fig1 | 8 | 0.2 | 0.50 GB |"
    write_rows(doc, rows, order, "second note")
    text = doc.read_text()
    assert read_rows(doc) == rows
    assert text.index("| huo17-fig1 |") < text.index("| thesis-fig8 |")  # in the stems' order
    assert "second note" in text and "first note" not in text
    assert text.startswith("# Title\n\n## Cost table\n\n") and text.endswith(f"{END}\n\n## Gallery\nkept\n")


def test_cost_table_bad_input_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    doc = tmp_path / "no-markers.md"
    doc.write_text("# nothing here\n")
    for args, names in (([str(doc), "no-such-stem"], "no-such-stem"), ([str(doc), "huo17-fig1"], str(doc)),
                        ([str(doc), "huo17-fig1", "--timing-limit=x"], "--timing-limit=x"),
                        ([str(doc), "--fast"], "--fast")):
        r = subprocess.run([sys.executable, "-m", "hdist.cost_table", *args], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and names in r.stderr, r.stderr
    assert doc.read_text() == "# nothing here\n"


def test_rows_time_epochs_after_the_warm_up_step_or_from_the_furthest_row():
    import pandas as pd

    from hdist.estimate import _rows

    def frame(rows):
        return pd.DataFrame(rows, columns=["rank", "role", "kind", "epoch", "wall_s", "metric"])

    # per-step rows: the first step (2 s of warm-up) is left out; then 0.1 epoch per 1 s
    evals = [(0, "worker", "eval", 0.0, 0.0, "train_loss_full"), (0, "worker", "eval", 0.4, 5.0, "train_loss_full")]
    steps = frame([(0, "worker", "train", 0.1 * i, 2.0 + (i - 1), "train_loss") for i in range(1, 5)] + evals)
    got = _rows(steps)
    assert got["per_epoch_s"] == pytest.approx(10.0) and got["timed_s"] == pytest.approx(3.0)
    assert got["epoch_end"] == pytest.approx(0.4) and got["evals"] == 2
    # no per-step rows (a dual method): the server's snapshots and the workers' totals; the furthest row
    dual = frame([(0, "server", "eval", 0.0, 0.0, "suboptimality"), (0, "server", "eval", 0.04, 0.5, "suboptimality"),
                  (0, "server", "eval", 0.08, 1.0, "suboptimality"), (1, "worker", "comm", 0.08, 1.2, "updates_total")])
    got = _rows(dual)
    assert got["per_epoch_s"] == pytest.approx(1.2 / 0.08) and got["evals"] == 3


def test_a_timing_run_over_the_limit_is_timed_on_a_tenth_of_the_data(monkeypatch):
    import hdist.estimate as E

    combos, arms = E.plan("thesis-fig8", ["scale=small"])  # sim, pca with dataset.n_train 20,000
    calls = []

    def child(ovs, limit_s):
        calls.append(ovs)
        if "dataset.n_train=2000" not in ovs:
            return {"error": "timing run took over 60 s", "over_s": 60.0, "peak_rss_bytes": 3e9}
        return {"exec_s": 2.0, "cpu_s": 2.0, "timed_s": 0.5, "evals": 2, "eval_s": 0.1, "eval_cpu_s": 0.1,
                "per_epoch_s": 3.0, "timed_cpu_share": 1.0, "epoch_end": 0.1, "peak_rss_bytes": 1e9}

    monkeypatch.setattr(E, "_child", child)
    too_big: set = set()
    first = E.time_arm(arms[0], too_big=too_big)
    assert len(calls) == 2 and first["n_scale"] == 10.0
    assert first["peak_rss_bytes"] == 3e9 and first["rss_lower_bound"]  # what the stopped run held, at least
    cfg = arms[0].cfg
    whole = run_seconds(cfg, arms[0].combo, first)
    assert whole == pytest.approx(10 * run_seconds(cfg, arms[0].combo, {**first, "n_scale": 1.0}))
    # the other arms on the same data go to a tenth at once
    E.time_arm(arms[1], too_big=too_big)
    assert len(calls) == 3 and "dataset.n_train=2000" in calls[-1]


def test_a_timing_run_past_its_limit_is_stopped_and_its_directory_removed():
    import glob
    import tempfile

    import hdist.estimate as E

    _, arms = E.plan("huo17-fig1", list(TINY))
    pattern = f"{tempfile.gettempdir()}/hdist-estimate-*"
    before = set(glob.glob(pattern))
    t = E.time_arm(arms[0], limit_s=0.2)  # less than the child's start: stopped, too small a set to divide
    assert t["over_s"] == 0.2 and "took over" in t["error"]
    assert set(glob.glob(pattern)) <= before


@pytest.mark.slow
def test_sigterm_while_timing_stops_the_child_and_removes_its_directory(tmp_path):
    """`reproduce --estimate` stopped by SIGTERM: the timing child (in its own session) is stopped with it
    and its temporary directory removed (it used to train on, its directory left behind)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "hdist.cli", "reproduce", "huo17-fig1", "scale=smoke", "--estimate",
                             f"results_dir={tmp_path / 'r'}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("hdist-estimate-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("hdist-estimate-*")), "no timing child started"
    child_pids = subprocess.run(["pgrep", "-f", f"hdist.estimate .*{tmp_path}"], capture_output=True,
                                text=True).stdout.split()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err
    assert not list(tmp_path.glob("hdist-estimate-*"))
    time.sleep(0.5)
    alive = subprocess.run(["pgrep", "-f", f"hdist.estimate .*{tmp_path}"], capture_output=True, text=True).stdout
    assert child_pids and not alive.split()


@pytest.mark.slow
def test_cost_table_stopped_while_timing_is_one_line_and_keeps_the_doc(tmp_path):
    """SIGTERM (a timeout, a scheduler) while a stem is timed: one line, exit 130, no traceback, the rows
    written before it kept."""
    import signal
    import subprocess
    import sys
    import time

    from hdist.cost_table import BEGIN, END
    from tests.conftest import ROOT

    doc = tmp_path / "reproduction.md"
    doc.write_text(f"# t\n\n{BEGIN}\n| huo17-fig2 | 6 | 0.27 | 0.51 GB |\n{END}\n")
    before = doc.read_text()
    proc = subprocess.Popen([sys.executable, "-m", "hdist.cost_table", str(doc), "huo17-fig1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # past the start: the stem is being timed
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "hdist: cost table interrupted; the rows written before it are kept", err
    assert doc.read_text() == before


def test_a_stem_none_of_whose_runs_was_timed_says_why_not_zero_hours():
    from hdist.estimate import _total

    est = {"total_s": 0.0, "runs": 2, "missing": 2, "why_missing": ["timing run took over 60 s"]}
    assert _total(est) == "not estimated: timing run took over 60 s"
    est = {"total_s": 7200.0, "runs": 3, "missing": 1, "why_missing": ["timing run took over 60 s"]}
    assert _total(est) == ">= 2 (1 run(s) not estimated: timing run took over 60 s)"
    assert _total({"total_s": 3600.0, "runs": 1, "missing": 0}) == "1"


def test_a_method_without_per_step_rows_is_timed_past_its_start_up_noise(monkeypatch):
    import pandas as pd

    import hdist.calibrate
    from hdist.estimate import measure

    # A dual method's push: 10 local steps of 20 us over 50,000 samples; only its last row is logged, and a run's
    # first pushes cost 0.9 s of allocations in the first run, 0.3 s in the later ones (thesis-fig8's pattern).
    per_push_s, epochs_per_push, runs = 10 * 20e-6, 10 / 50_000, []

    def short_run(overrides, out):
        pushes = int([o for o in overrides if o.startswith("algo.max_steps=")][-1].split("=")[1])
        wall = (0.9 if not runs else 0.3) + pushes * per_push_s
        runs.append(pushes)
        df = pd.DataFrame([{"run_id": "r", "rank": 0, "role": "server", "kind": "comm", "metric": "updates_total",
                            "epoch": pushes * epochs_per_push, "wall_s": wall, "value": float(pushes)}])
        return {"df": df, "exec_s": wall + 4.0, "cpu_s": wall + 4.0, "cfg": None}

    monkeypatch.setattr(hdist.calibrate, "short_run", short_run)
    t = measure(["algo.max_steps=16"], "/nonexistent")
    true_s = per_push_s / epochs_per_push  # 1 s an epoch
    assert t["per_epoch_s"] == pytest.approx(true_s, rel=0.1), (t["per_epoch_s"], runs)
    assert len(runs) <= 1 + 4 and runs[-1] * per_push_s >= 2.0  # grown until the pushes took 2 s
