"""lian15 tables: both stems reproduce at smoke scale (figure, markdown table, claims) in seconds."""

from __future__ import annotations

import json

import pytest

from hdist.metrics import load_results

STEMS = ("lian15-table-con", "lian15-table-incon")


@pytest.mark.parametrize("stem, scale, workers", [
    ("lian15-table-con", "smoke", [1, 2]),
    ("lian15-table-con", "small", [1, 2, 4, 8]),
    ("lian15-table-con", "paper", [1, 2, 3, 4, 5, 6, 7, 8]),
    ("lian15-table-incon", "smoke", [1, 2]),
    ("lian15-table-incon", "paper", [1, 4, 8, 12, 16, 20, 24, 28, 32]),
])
def test_the_worker_counts_follow_the_scale(stem, scale, workers):
    from hdist.sweeps import experiment_runs

    runs = experiment_runs(stem, [f"scale={scale}"])
    assert [int(o.split("=")[1]) for r in runs for o in r if o.startswith("topology.workers=")] == workers
    # The command line can still choose the list.
    runs = experiment_runs(stem, [f"scale={scale}", 'sweep=[{topology.workers:"1,3"}]'])
    assert [o for r in runs for o in r if o.startswith("topology.workers=")] == ["topology.workers=1",
                                                                                 "topology.workers=3"]


@pytest.mark.slow  # ~14 s: both tables' sweeps
def test_both_stems_reproduce_at_smoke_scale(cli, tmp_path):
    for stem in STEMS:
        code, out, err = cli("reproduce", stem, "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
        assert code == 0, err
        assert (tmp_path / "figures" / f"{stem}.png").stat().st_size > 0
        assert (tmp_path / "figures" / f"{stem}.pdf").exists()
        md = (tmp_path / "figures" / f"{stem}-speedup.md").read_text()
        assert "| workers |" in md and "iteration speedup (paper)" in md and "Target: train_loss_full <=" in md
        claims = json.loads((tmp_path / stem / "claims.json").read_text())
        assert claims and all({"claim", "paper", "measured", "passed"} <= set(c) for c in claims)
        df = load_results(tmp_path, [stem])
        assert sorted(df["workers"].unique()) == [1, 2]
        assert set(df["backend"]) == {"process"}
    assert "1.93" in (tmp_path / "figures" / "lian15-table-con-speedup.md").read_text()  # the poster's mpi-2
    assert "thr-K" in (tmp_path / "figures" / "lian15-table-incon-speedup.md").read_text()
    code, _, err = cli("report", f"results_dir={tmp_path}")
    assert code == 0, err
    report = (tmp_path / "REPORT.md").read_text()
    for stem in STEMS:
        assert f"## {stem}" in report
    assert report.count("iteration speedup (paper)") == 2
