"""Runs are reproducible and crash-safe: same seed same metrics; a killed run is redone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from hdist.launch import execute, prepare
from hdist.metrics import load_results, read_run_metrics
from tests.conftest import ROOT


def _metrics(run_dir):
    df = read_run_metrics(run_dir).to_pandas()
    return df.drop(columns=["wall_s"])[df["metric"] != "eval_s"].reset_index(drop=True)


def test_same_seed_gives_identical_metrics(tmp_path):
    ovs = ["scale=smoke", "progress=quiet", "log.train_every=1"]
    a = execute(prepare([*ovs, f"results_dir={tmp_path / 'a'}"]))
    b = execute(prepare([*ovs, f"results_dir={tmp_path / 'b'}"]))
    c = execute(prepare([*ovs, "seed=1", f"results_dir={tmp_path / 'c'}"]))
    assert a.status == b.status == "done"
    ma, mb, mc = _metrics(a.run_dir), _metrics(b.run_dir), _metrics(c.run_dir)
    assert len(ma) > 50
    assert ma.equals(mb)
    assert not ma["value"].equals(mc["value"])


def _start_long_run(results_dir, extra=()):
    args = ["run", "scale=small", "scale.epochs=8", "log.flush_s=0.05", "log.train_every=1", "progress=plain",
            f"results_dir={results_dir}", *extra]
    proc = subprocess.Popen([sys.executable, "-m", "hdist.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        parts = list(results_dir.glob("adhoc/*/metrics-r0.p*.parquet"))
        if parts:
            return proc, parts[0].parent
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no metrics part file appeared")


@pytest.mark.slow  # > 5 s: the default suite stays under 5 minutes
def test_killed_run_leaves_readable_files_and_is_redone(tmp_path):
    proc, run_dir = _start_long_run(tmp_path)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    for part in run_dir.glob("metrics-r0.p*.parquet"):
        pq.read_table(part)  # every file on disk is complete
    assert read_run_metrics(run_dir).num_rows > 0
    assert len(load_results(tmp_path, status=None)) > 0
    # The rerun redoes it (a shorter config would be another run: reuse the same one, in-process).
    cfg = prepare(["scale=small", "scale.epochs=8", "log.flush_s=0.05", "log.train_every=1", "progress=plain",
                   f"results_dir={tmp_path}"])
    cfg.algo.max_steps = None
    res = execute(cfg)
    assert res.run_dir == run_dir and res.status == "done" and not res.skipped
    assert not list(run_dir.glob("metrics-r0.p*.parquet"))
    assert pq.ParquetFile(run_dir / "metrics-r0.parquet").metadata.num_rows > 0


def test_sigterm_marks_the_run_failed_and_flushes(tmp_path):
    proc, run_dir = _start_long_run(tmp_path)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    st = json.loads((run_dir / "status.json").read_text())
    assert st["status"] == "failed" and "interrupted" in st["reason"]
    assert pq.ParquetFile(run_dir / "metrics-r0.parquet").metadata.num_rows > 0
