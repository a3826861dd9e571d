"""hdist.papers: one module per experiment stem, found through the registry of known stems only."""

from __future__ import annotations

import ast

import pytest

from hdist import papers
from hdist.config import CONF_DIR
from hdist.figures import load_experiment
from hdist.types import ConfigError
from tests.conftest import ROOT


def test_every_stem_has_its_module_and_every_module_a_stem():
    stems = papers.stems()
    assert stems == sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    assert papers.module_for("huo17-fig1") == "hdist.papers.huo17.fig1"
    assert papers.module_for("lian15-table-con") == "hdist.papers.lian15.table_con"
    assert papers.module_for("thesis-table2") == "hdist.papers.thesis.table2"
    assert papers.module_for("bench-sim-cost") == "hdist.papers.bench.sim_cost"
    for stem in stems:
        mod = load_experiment(stem)
        assert mod.__name__ == papers.module_for(stem)
        assert callable(mod.plot) and callable(mod.check), stem
    # Every module of a paper package is a stem's figure module or that paper's shared code.
    shared = {"common", "claims", "pipeline_time", "pipeline_mem", "large_batch"}
    for paper in papers.PAPERS:
        for f in (ROOT / "hdist" / "papers" / paper).glob("*.py"):
            if f.stem in ("__init__", *shared):
                continue
            assert f"{paper}-{f.stem.replace('_', '-')}" in stems, f


@pytest.mark.parametrize("stem", ["../../tests/conftest", "huo17-fig1/../x", "..", "huo17-fig99", "adhoc", ""])
def test_unknown_stems_load_nothing(stem):
    with pytest.raises(ConfigError, match="unknown stem; allowed: bench-clars"):
        load_experiment(stem)


def test_no_figure_module_loads_a_sibling_by_path():
    """Siblings are imported normally (a module of hdist.papers), never through load_experiment or a file path."""
    for f in (ROOT / "hdist" / "papers").rglob("*.py"):
        tree = ast.parse(f.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not names & {"load_experiment", "spec_from_file_location", "import_module"}, f
