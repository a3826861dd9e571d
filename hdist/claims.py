"""A claim check: one sentence of a paper, the paper's value, ours, and whether it held."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Claim:
    claim: str  # the paper's statement, in words
    paper: Any  # the paper's value or qualitative result
    measured: Any  # what our runs show
    passed: bool | None  # None: cannot be checked with the runs present (says why in measured)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("paper", "measured"):
            if isinstance(d[k], float):
                d[k] = float(f"{d[k]:.6g}")
        return d


def not_checked(claim: str, paper: Any, why: str) -> Claim:
    return Claim(claim, paper, f"not checked: {why}", None)
