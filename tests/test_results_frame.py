"""Results are pleasant to query: typed columns, an ad-hoc legend by the swept keys, a server's time split."""

from __future__ import annotations

import pandas as pd
import pytest

from hdist.figures import generic_plot, swept_keys
from hdist.metrics import load_results, typed_column

SMALL = ["scale=smoke", "scale.n_train=256", "scale.n_test=64", "progress=quiet"]


def test_config_columns_get_their_yaml_types():
    assert str(typed_column(pd.Series([1, None, 3], dtype=object)).dtype) == "Int64"
    assert str(typed_column(pd.Series([0.1, None, 2], dtype=object)).dtype) == "float64"
    assert str(typed_column(pd.Series([True, None], dtype=object)).dtype) == "boolean"
    mixed = typed_column(pd.Series(["auto", 3, None], dtype=object))
    assert list(mixed[:2]) == ["auto", "3"] and pd.isna(mixed[2])


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from hdist.cli import main

    d = tmp_path_factory.mktemp("results")
    for ovs in (["algo.lr=0.1"], ["algo.lr=0.05", "model=linear"]):
        with pytest.raises(SystemExit) as e:
            main(["run", *SMALL, *ovs, f"results_dir={d}"])
        assert e.value.code == 0
    return d


def test_load_results_has_no_object_columns(two_models):
    df = load_results(two_models)
    assert not [c for c in df.columns if pd.api.types.is_object_dtype(df[c])], df.dtypes
    assert df["algo.lr"].dtype == "float64" and str(df["model.hidden"].dtype) in ("str", "string")


def test_the_adhoc_legend_names_the_swept_keys(two_models):
    df = load_results(two_models)
    assert set(swept_keys(df)) >= {"model", "algo.lr"} and "run_id" not in swept_keys(df)
    fig = generic_plot(df)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert len(labels) == 2 and all("algo.lr=" in lab and "run_id" not in lab for lab in labels)


def test_a_parameter_server_rank_logs_its_time_split(cli, tmp_path):
    code, _, err = cli("run", "algo=asysg_con", "backend=sim", "topology.workers=2", *SMALL, f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path)
    server = df[(df["role"] == "server") & (df["kind"] == "comm")].set_index("metric")["value"]
    assert {"serve_s", "wait_s", "apply_s", "updates_applied"} <= set(server.index)
    assert server["updates_applied"] > 0 and server["serve_s"] >= server["wait_s"] >= 0
    assert server["serve_s"] == pytest.approx(server["wait_s"] + server["apply_s"])
