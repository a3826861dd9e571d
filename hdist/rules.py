"""Value rules for config keys: ``key -> (predicate, what is allowed)``.

Generic keys have their rules in :data:`hdist.config.RULES`; an algorithm declares the rules of its
own keys in its :class:`~hdist.types.AlgoSpec` (``keys``), next to its code. Either way a bad value
is one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from omegaconf import ListConfig, OmegaConf

from hdist.types import ConfigError

#: (predicate on the value, what is allowed, in words)
Rule = tuple[Callable[[Any], bool], str]


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_finite(v) -> bool:
    """A number that is not inf or NaN (an int of any size is finite: math.isfinite would overflow)."""
    return is_num(v) and (isinstance(v, int) or math.isfinite(v))


def finite_pos(v) -> bool:
    return is_finite(v) and v > 0


def finite_nonneg(v) -> bool:
    return is_finite(v) and v >= 0


def int_at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= n


def one_of(*opts) -> Callable[[Any], bool]:
    return lambda v: v in opts


def opt(pred) -> Callable[[Any], bool]:
    return lambda v: v is None or pred(v)


def is_list(v) -> bool:
    return isinstance(v, (list, ListConfig))


class _Missing:
    pass


MISSING = _Missing()


def check_rules(cfg, rules: dict[str, Rule]) -> None:
    """Every key of ``rules`` that ``cfg`` holds must satisfy its predicate (keys it lacks are skipped)."""
    for key, (pred, allowed) in rules.items():
        v = OmegaConf.select(cfg, key, default=MISSING)
        if v is MISSING:
            continue
        if not pred(v):
            raise ConfigError(f"{key}={v!r}: not allowed; expected {allowed}")
