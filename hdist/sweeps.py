"""The runs behind an experiment stem: each arm of its ``sweep``, expanded into override lists."""

from __future__ import annotations


def experiment_runs(stem: str, overrides: list[str]) -> list[list[str]]:
    """Every run (as an override list) behind ``stem``: each arm of its ``sweep``, expanded."""
    from omegaconf import OmegaConf

    from hdist import config as C

    base = C.compose([f"experiment={stem}", *overrides])
    arms = OmegaConf.to_container(base.sweep) or [{}]
    combos: list[list[str]] = []
    for arm in arms:
        arm_ovs = [f"{k}={_override_value(v)}" for k, v in arm.items()]
        combos += C.expand_sweep([f"experiment={stem}", *arm_ovs, *overrides])
    seen, unique = set(), []
    for c in combos:
        key = tuple(c)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def _override_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ",".join(_override_value(x) for x in v) + "]"
    return str(v)
