"""The metrics schema, the crash-safe writer and load_results."""

from __future__ import annotations

import pyarrow.parquet as pq

from hdist.metrics import COLUMNS, METRICS, SCHEMA, MetricsLogger, finalize_rank, load_results, read_run_metrics


def test_schema_is_the_documented_one():
    assert COLUMNS == ["run_id", "rank", "role", "kind", "step", "updates", "epoch", "samples", "wall_s", "sim_s",
                       "metric", "value"]
    assert SCHEMA.names == COLUMNS
    for m in ("train_loss", "test_error", "staleness", "bytes", "compute_s", "comm_s", "peak_mem_bytes"):
        assert m in METRICS


def test_writer_flushes_parts_then_merges_into_row_groups(tmp_path):
    log = MetricsLogger(tmp_path, "abc", rank=1, flush_s=1e9)
    for i in range(10):
        log.step = i
        log.log("train", "train_loss", float(i))
    log.flush()
    log.log("eval", "test_error", 0.5)
    log.flush()
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == ["metrics-r1.p00001.parquet", "metrics-r1.p00002.parquet"]
    # Parts are complete parquet files: readable while the run is still going.
    assert read_run_metrics(tmp_path).num_rows == 11
    log.close()
    final = tmp_path / "metrics-r1.parquet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics-r1.parquet"]
    f = pq.ParquetFile(final)
    assert f.metadata.num_row_groups == 2 and f.metadata.num_rows == 11
    t = pq.read_table(final).to_pandas()
    assert list(t.columns) == COLUMNS
    assert (t["run_id"] == "abc").all() and (t["rank"] == 1).all()
    assert t[t["metric"] == "train_loss"]["value"].tolist() == [float(i) for i in range(10)]


def test_leftover_parts_after_merge_are_ignored(tmp_path):
    log = MetricsLogger(tmp_path, "r", flush_s=1e9)
    log.log("train", "train_loss", 1.0)
    log.close()
    # A crash between the merge's rename and the parts' deletion leaves a stale part behind.
    log2 = MetricsLogger(tmp_path, "r", flush_s=1e9)
    log2._parts = 7
    log2.log("train", "train_loss", 2.0)
    log2.flush()
    assert read_run_metrics(tmp_path).num_rows == 1  # the final file wins
    finalize_rank(tmp_path, 0)
    assert read_run_metrics(tmp_path).num_rows == 2


def test_load_results_joins_config_columns_and_swept_keys(cli, tmp_path):
    code, _, err = cli("run", "-m", "scale=smoke", "scale.epochs=1", "seed=0,1", "algo.lr=0.1,0.01",
                       f"results_dir={tmp_path}", "progress=quiet")
    assert code == 0, err
    df = load_results(tmp_path)
    for col in ("algo", "model", "dataset", "backend", "workers", "stages", "seed", "status", "algo.lr"):
        assert col in df.columns, col
    assert df["run_id"].nunique() == 4
    assert set(df["algo.lr"]) == {0.1, 0.01}
    assert set(df["seed"]) == {0, 1}
    assert (df["status"] == "done").all()
    assert "results_dir" not in df.columns
