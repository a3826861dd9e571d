"""Analyses over the metrics table (pure pandas functions of :func:`hdist.metrics.load_results`).

- :mod:`hdist.analysis.speedup`: time / updates to a loss target, the target rule, the speedup
  table (time and iteration speedup as ``../shared/DESIGN.md`` defines them) and its markdown.
"""

from hdist.analysis.speedup import (
    choose_target,
    speedup_table,
    time_to_target,
    to_markdown,
    updates_to_target,
)

__all__ = ["choose_target", "speedup_table", "time_to_target", "to_markdown", "updates_to_target"]
