"""Compose, finalize and validate run configs; the run id.

Hydra composes (``conf/`` groups, ``key=value`` overrides, multirun sweeps); this module adds
what Hydra does not check: unknown group options and keys, value types, ranges, and
combinations that cannot work. Every check raises :class:`~hdist.types.ConfigError` with one
line naming the key, the bad value and what is allowed; the CLI prints it and exits 2 before
anything is written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from hdist.rules import MISSING as _MISSING
from hdist.rules import Rule, check_rules, finite_nonneg, finite_pos, int_at_least, is_num, one_of, opt
from hdist.types import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
GROUPS = ("dataset", "model", "algo", "backend", "topology", "scale", "experiment")

#: Keys that do not change what a run computes: left out of the run id.
NON_IDENTITY_KEYS = ("results_dir", "progress", "log.flush_s")


def group_options(group: str) -> list[str]:
    """The choices of a config group. Files named ``_*.yaml`` are bases the choices inherit (a
    ``defaults`` list in the group), not choices: never listed or accepted."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def load_option(group: str, name: str, conf_dir: Path | None = None,
                _seen: tuple[Path, ...] = ()) -> tuple[list[Path], DictConfig]:
    """The files behind ``<conf_dir>/<group>/<name>.yaml`` (it, then the files its ``defaults`` list names,
    in turn) and the config they compose, as Hydra composes an in-group defaults list; for reading one
    option without a composition (a ``# @package`` header is not applied: topology and sgd have none)."""
    path = (conf_dir or CONF_DIR) / group / f"{name}.yaml"
    if not path.is_file():
        allowed = sorted(p.stem for p in path.parent.glob("*.yaml") if not p.stem.startswith("_"))
        raise ConfigError(f"{group}={name}: no file {path}; allowed: {', '.join(allowed)}")
    if path in _seen:
        raise ConfigError(f"{group}={name}: {path}'s defaults list names itself")
    body = OmegaConf.load(path)
    files, merged = [path], OmegaConf.create()
    for entry in body.pop("defaults", None) or ["_self_"]:
        if entry == "_self_":
            merged = OmegaConf.merge(merged, body)
        else:
            sub_files, sub = load_option(group, str(entry), conf_dir, (*_seen, path))
            files += sub_files
            merged = OmegaConf.merge(merged, sub)
    return files, merged


# ---------------------------------------------------------------------------------------------
# Overrides and sweeps (Hydra's own grammar)
# ---------------------------------------------------------------------------------------------


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(overrides: list[str]):
    from hydra.errors import HydraException

    try:
        return _parser().parse_overrides(list(overrides))
    except HydraException as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"bad override: {first}") from None


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """All combinations of a (possibly sweeping) override list, as Hydra's basic sweeper makes them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parsed = parse_overrides(overrides)
    if not any(o.is_sweep_override() for o in parsed):
        return [list(overrides)]
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(combo) for batch in batches for combo in batch]


def has_sweep(overrides: list[str]) -> bool:
    return any(o.is_sweep_override() for o in parse_overrides(overrides))


# ---------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------


# Hydra compositions by (the conf files' state, overrides). One takes ~0.1-0.2 s, a run's config
# takes two (its groups alone, to check keys and types, then all of it) and a sweep's points share
# their groups: thesis-fig9's 45 points composed 90 times. A conf file changed in this process
# (calibrate writes topology files) changes the key, so nothing stale is returned.
_RAW_CACHE: dict[tuple, DictConfig] = {}
_RAW_CACHE_MAX = 256  # compositions kept (a few MB); emptied when full


def _conf_state() -> tuple:
    return tuple((str(p), st.st_mtime_ns, st.st_size) for p in sorted(CONF_DIR.rglob("*.yaml")) for st in [p.stat()])


def _compose_raw(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    key = (_conf_state(), tuple(overrides))
    cfg = _RAW_CACHE.get(key)
    if cfg is None:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
        if len(_RAW_CACHE) >= _RAW_CACHE_MAX:
            _RAW_CACHE.clear()
        _RAW_CACHE[key] = cfg
    # A copy: callers change theirs (finalize sets the scale's values).
    return copy.deepcopy(cfg)


def _check_groups(parsed) -> None:
    for o in parsed:
        key = o.key_or_group.lstrip("+~")
        if key in GROUPS:
            values = o.value()
            vals = values.list if hasattr(values, "list") else [values]
            for v in vals:
                if v is None and key == "experiment":
                    continue
                if str(v) not in group_options(key):
                    raise ConfigError(f"{key}={v}: unknown {key}; allowed: {', '.join(group_options(key))}")


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, ListConfig)):
        return "list"
    if isinstance(v, (dict, DictConfig)):
        return "mapping"
    return type(v).__name__


def _compatible(base: Any, new: Any) -> bool:
    if base is None or new is None:
        return True
    tb, tn = _type_name(base), _type_name(new)
    return tb == tn or (tb == "float" and tn == "int")


def compose(overrides: Iterable[str] = ()) -> DictConfig:
    """Compose one run's config from ``overrides`` (no sweeps), checking groups, keys and types."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    parsed = parse_overrides(overrides)
    for o in parsed:
        if o.is_sweep_override():
            raise ConfigError(f"{o.input_line}: a sweep needs multirun: hdist run -m ...")
    _check_groups(parsed)
    group_ovs = [o.input_line for o in parsed if o.key_or_group.lstrip("+~") in GROUPS]
    value_ovs = [o for o in parsed if o.key_or_group.lstrip("+~") not in GROUPS]
    try:
        base = _compose_raw(group_ovs)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_first_line(e)) from None
    for o in value_ovs:
        key = o.key_or_group
        if key.startswith("hydra."):
            continue
        if key.startswith(("+", "~")):
            raise ConfigError(f"{o.input_line}: adding or deleting keys is not allowed; set existing keys only")
        if OmegaConf.select(base, key, default=_MISSING) is _MISSING:
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            node = OmegaConf.select(base, parent) if parent else base
            known = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else "(none)"
            raise ConfigError(f"{key}={o.value()}: unknown key; keys{' under ' + parent if parent else ''}: {known}")
        old, new = OmegaConf.select(base, key), o.value()
        if not _compatible(old, new):
            raise ConfigError(f"{key}={new!r}: wrong type {_type_name(new)}; expected {_type_name(old)} "
                              f"(default {old!r})")
    if any(o.key_or_group.startswith("hydra.") for o in value_ovs):
        # Hydra's own settings: only a full composition applies (and checks) them.
        try:
            return _compose_raw(overrides)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(_first_line(e)) from None
    # The values on top of the groups' composition, in order, as Hydra applies command-line values
    # after the defaults (OmegaConf.update with merge): the same config as composing all the overrides
    # (test_config checks it on every experiment's points at small and paper scale, the first at smoke), at
    # the cost of one composition, not two.
    try:
        for o in value_ovs:
            OmegaConf.update(base, o.key_or_group, o.value(), merge=True)
    except OmegaConfBaseException as e:
        raise ConfigError(_first_line(e)) from None
    return base


def _first_line(e: Exception) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else type(e).__name__


# ---------------------------------------------------------------------------------------------
# Finalize: per-scale overrides, resolution
# ---------------------------------------------------------------------------------------------


def finalize(cfg: DictConfig, overrides: Iterable[str] = ()) -> DictConfig:
    """Apply ``at_scale[scale.name]`` overrides and resolve interpolations; returns a new config.

    Experiments list what differs at each scale under ``at_scale`` (dotted keys). Precedence:
    defaults < experiment < at_scale < the command line, so keys named in ``overrides`` are
    left as the user set them. The result is what the run id hashes and ``config.yaml`` stores.
    """
    user_keys = {o.key_or_group for o in parse_overrides(list(overrides))}
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(cfg, False)
    at = cfg.get("at_scale") or {}
    scale_name = cfg.scale.name
    for key, value in (at.get(scale_name) or {}).items():
        if key in user_keys:
            continue
        if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise ConfigError(f"at_scale.{scale_name}.{key}: unknown key")
        old = OmegaConf.select(cfg, key)
        if not _compatible(old, value):
            raise ConfigError(f"at_scale.{scale_name}.{key}={value!r}: wrong type {_type_name(value)}; "
                              f"expected {_type_name(old)}")
        OmegaConf.update(cfg, key, value, merge=False)
    cfg.at_scale = {}
    from hdist import demo

    demo.apply(cfg, user_keys)  # the headline command on a CPU: sized to learn in minutes (hdist/demo.py)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # interpolation errors are config errors
        raise ConfigError(f"config: {_first_line(e)}") from None
    out = OmegaConf.create(resolved)
    OmegaConf.set_readonly(out, False)
    return out


def run_id(cfg: DictConfig) -> str:
    """Stable 12-hex-digit hash of the resolved config, output paths and display keys excluded."""
    d = OmegaConf.to_container(cfg, resolve=True)
    d.pop("hydra", None)
    for key in NON_IDENTITY_KEYS:
        parts = key.split(".")
        node = d
        for p in parts[:-1]:
            node = node.get(p, {})
        node.pop(parts[-1], None)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Validation: ranges and combinations
# ---------------------------------------------------------------------------------------------


#: key -> (predicate, what is allowed). Keys absent from a config are skipped.
RULES: dict[str, Rule] = {
    "seed": (int_at_least(0), "an integer >= 0"),
    "results_dir": (lambda v: isinstance(v, str) and v != "", "a directory path"),
    "progress": (one_of("auto", "bar", "plain", "quiet"), "auto, bar, plain or quiet"),
    "algo.lr": (finite_pos, "a finite number > 0"),
    "algo.batch_size": (int_at_least(1), "an integer >= 1"),
    "algo.k": (int_at_least(1), "an integer >= 1 (steps between communications)"),
    "algo.momentum": (lambda v: is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "algo.beta": (finite_nonneg, "a finite number >= 0 (exponent of the poly schedule)"),
    "algo.schedule": (one_of("constant", "poly", "warmup", "poly_decay", "step"),
                      "constant, poly, warmup, poly_decay or step"),
    "algo.max_steps": (opt(int_at_least(1)), "null or an integer >= 1"),
    "algo.objective": (one_of("auto", "model", "ridge", "pca"), "auto, model, ridge or pca"),
    "algo.pca_mu": (finite_pos, "a finite number > 0 (mu of the PCA objective 3.40)"),
    "algo.layer_params": (one_of("all", "weights"), "all or weights"),
    "algo.subsample": (opt(int_at_least(1)), "null or an integer >= 1 (|J| samples per step)"),
    "algo.warmup_epochs": (finite_nonneg, "a finite number >= 0 (epochs)"),
    "algo.power": (finite_nonneg, "a finite number >= 0 (poly_decay exponent)"),
    "algo.milestones": (lambda v: isinstance(v, (list, ListConfig)) and all(finite_nonneg(m) for m in v),
                        "a list of epochs >= 0"),
    "algo.decay_gamma": (lambda v: is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "log.layer_every": (int_at_least(0), "an integer >= 0 (steps; 0 = never)"),
    "log.m_k_samples": (int_at_least(0), "an integer >= 0 (samples; 0 or 1 = no M_k)"),
    "backend.timeout_s": (finite_pos, "a number of seconds > 0"),
    "backend.spin_s": (finite_nonneg, "a number of seconds >= 0 (0 = sleep on a held lock at once)"),
    "backend.threads_per_rank": (opt(int_at_least(1)), "null or an integer >= 1"),
    "backend.threads": (opt(int_at_least(1)), "null or an integer >= 1 (torch threads)"),
    "backend.ps": (one_of("server", "shared"), "server or shared (how the sim runs a parameter-server algorithm)"),
    "topology.straggler.p": (lambda v: is_num(v) and 0 <= v <= 1, "a probability in [0, 1]"),
    "topology.workers": (int_at_least(1), "an integer >= 1"),
    "topology.stages": (int_at_least(1), "an integer >= 1"),
    "topology.sim.compute.cores": (opt(int_at_least(1)), "null or an integer >= 1 (cores)"),
    "topology.sim.handoff_Bps": (opt(finite_pos), "null or a number > 0 (bytes per second)"),
    "topology.sim.wake_s": (finite_nonneg, "a number of seconds >= 0"),
    "topology.sim.spin_s": (finite_nonneg, "a number of seconds >= 0"),
    "topology.sim.link.desched_s": (finite_nonneg, "a number of seconds >= 0"),
    "scale.epochs": (finite_nonneg, "a finite number >= 0"),
    "scale.n_train": (opt(int_at_least(1)), "null or an integer >= 1"),
    "scale.n_test": (opt(int_at_least(1)), "null or an integer >= 1"),
    "dataset.n_train": (opt(int_at_least(1)), "null or an integer >= 1"),
    "dataset.n_test": (opt(int_at_least(1)), "null or an integer >= 1"),
    "objective.loss": (one_of("auto", "cross_entropy", "squared"), "auto, cross_entropy or squared"),
    "objective.l2": (finite_nonneg, "a finite number >= 0"),
    "log.train_every": (int_at_least(1), "an integer >= 1 (steps)"),
    "log.evals_per_epoch": (finite_nonneg, "a number >= 0"),
    "log.eval_max_samples": (opt(int_at_least(1)), "null or an integer >= 1"),
    "log.bn_samples": (int_at_least(0), "an integer >= 0 (samples)"),
    "log.flush_s": (finite_pos, "a number of seconds > 0"),
    "model.num_classes": (int_at_least(1), "an integer >= 1"),
}


def validate(cfg: DictConfig) -> None:
    """Range and combination checks on a finalized config."""
    check_rules(cfg, RULES)
    stem = cfg.get("stem", "adhoc")
    if stem != "adhoc" and stem not in group_options("experiment"):
        raise ConfigError(f"stem={stem}: no conf/experiment/{stem}.yaml")

    from hdist.algos import get_algo
    from hdist.backends import get_backend
    from hdist.types import World

    algo = get_algo(cfg.algo.name)
    check_rules(cfg, algo.keys)  # the algorithm's own keys, declared next to its code
    backend = get_backend(cfg.backend.name)
    if not set(algo.families) & set(backend.families):
        ok = [b for b in _backend_names() if set(get_backend(b).families) & set(algo.families)]
        raise ConfigError(f"backend={cfg.backend.name}: algo={cfg.algo.name} does not run on it; "
                          f"allowed backends: {', '.join(ok)}")
    backend.validate(cfg)  # the backend's own keys (torchdist: dist_backend, start_method, external)
    World.build(cfg, algo, backend)  # workers, stages and servers: the layout can be run
    n_train = cfg.dataset.get("n_train")
    if isinstance(n_train, int) and cfg.topology.workers > n_train:
        raise ConfigError(f"topology.workers={cfg.topology.workers}: dataset.n_train={n_train} leaves workers "
                          f"without data; allowed: workers <= n_train")
    _check_stages(cfg, algo)
    algo.validate(cfg)
    _check_shapes(cfg)


def _backend_names() -> list[str]:
    return group_options("backend")


def _check_stages(cfg: DictConfig, algo) -> None:
    """topology.stages = K cuts one model into K pipeline stages (one replica, as World.build
    checks): at most one stage per block of the model, K-1 algo.cuts."""
    if not algo.pipeline:
        return
    K = int(cfg.topology.stages)
    n = _model_blocks(cfg)
    if K > n:
        raise ConfigError(f"topology.stages={K}: model={cfg.model.name} has {n} blocks to cut into stages; "
                          f"allowed: 1..{n}")
    cuts = cfg.algo.get("cuts")
    if cuts is not None:
        cuts = [int(c) for c in cuts]
        if len(cuts) != K - 1:
            raise ConfigError(f"algo.cuts={cuts}: {len(cuts)} cut(s) make {len(cuts) + 1} stages but "
                              f"topology.stages={K}; give K-1 cuts")
        if sorted(set(cuts)) != cuts or any(c < 1 or c >= n for c in cuts):
            raise ConfigError(f"algo.cuts={cuts}: not allowed; expected increasing block indices in 1..{n - 1} "
                              f"(model={cfg.model.name} has {n} blocks)")


def _model_blocks(cfg: DictConfig) -> int:
    """Top-level blocks of the configured model, built on the meta device (no memory, no init cost)."""
    import torch

    from hdist import models

    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    name = kwargs.pop("name")
    try:
        with torch.device("meta"):
            return len(models.build_model(name, **kwargs))
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"model={name}: cannot be built: {type(e).__name__}: {_first_line(e)}") from None


def _check_shapes(cfg: DictConfig) -> None:
    """A model given data of the wrong shape: caught from the configs, before loading data."""
    shape = cfg.dataset.get("shape")
    if shape is None:
        return
    want = list(cfg.model.input_shape)
    have = list(shape)
    if want == have or (len(want) == 1 and math.prod(have) == want[0]):
        return
    raise ConfigError(f"model={cfg.model.name}: expects input {want} but dataset={cfg.dataset.name} gives "
                      f"{have}; choose a model whose model.input_shape matches")


def load_run_config(path: Path) -> DictConfig:
    return OmegaConf.load(path)
