"""One home per paper: the figure code of every experiment stem, ``hdist.papers.<paper>.<figure>``.

The stems are exactly the names of ``conf/experiment/*.yaml``. A stem ``<paper>-<rest>`` maps to the module
``hdist.papers.<paper>.<rest, dashes as underscores>`` (:func:`module_for`): ``huo17-fig1`` ->
``hdist.papers.huo17.fig1``, ``lian15-table-con`` -> ``hdist.papers.lian15.table_con``, ``bench-sim-cost`` ->
``hdist.papers.bench.sim_cost``. Each figure module defines ``plot(df) -> Figure`` and ``check(df) -> [Claim]``,
and optionally ``tables(df) -> {name: markdown}`` (pure functions of :func:`hdist.metrics.load_results`'s frame);
what a paper's figures share sits beside them in its package and is imported normally.

Papers: ``huo17`` (Huo & Huang, AAAI 2017), ``lian15`` (Lian et al., NIPS 2015), ``kavg18`` (Zhou & Cong,
IJCAI 2018), ``thesis`` (the thesis' chapters 3-6) and ``bench`` (this project's benchmarks).
"""

from __future__ import annotations

from hdist.config import group_options
from hdist.types import ConfigError

PAPERS = ("huo17", "lian15", "kavg18", "thesis", "bench")


def stems() -> list[str]:
    """Every known stem: the names of ``conf/experiment/*.yaml``."""
    return group_options("experiment")


def module_for(stem: str) -> str:
    """The module name of a known stem's figure code; ConfigError (one line) for any other name, so that a
    name from the command line never selects code outside this package."""
    known = stems()
    if stem not in known:
        raise ConfigError(f"{stem}: unknown stem; allowed: {', '.join(known)}")
    paper, _, rest = stem.partition("-")
    return f"{__name__}.{paper}.{rest.replace('-', '_')}"


def has_figure(stem: str) -> bool:
    """Whether a known stem has figure code here: a user's own experiment (``hydra.searchpath``) has none and is
    drawn by the generic plot."""
    import importlib.util

    try:
        return importlib.util.find_spec(module_for(stem)) is not None
    except ModuleNotFoundError:
        return False
