"""The runs behind an experiment stem: each arm of its ``sweep``, expanded into override lists."""

from __future__ import annotations

from hdist.types import ConfigError


def experiment_runs(stem: str, overrides: list[str]) -> list[list[str]]:
    """Every run (as an override list) behind ``stem``: each arm of its ``sweep``, expanded."""
    from omegaconf import OmegaConf

    from hdist import config as C

    base = C.compose([f"experiment={stem}", *overrides])
    try:
        arms = OmegaConf.to_container(base.sweep) or [{}]
    except Exception as e:  # an interpolation that does not resolve is a config error
        raise ConfigError(f"sweep of experiment={stem}: cannot be resolved ({C._first_line(e)})") from None
    C.check_sweep(C.CONF_DIR / "experiment" / f"{stem}.yaml", arms)
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
