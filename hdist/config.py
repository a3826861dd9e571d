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
# The configs are package data: hdist/conf is a link to the repository's conf/ in a checkout (plain or editable
# install) and a copy of it in a wheel.
CONF_DIR = (Path(__file__).parent / "conf").resolve()
GROUPS = ("dataset", "model", "algo", "backend", "topology", "scale", "experiment")

#: Directories a ``hydra.searchpath=[...]`` override added (a user's own configs): group options are read
#: from them too. Set by :func:`compose` and by the multirun sweeper from the command line they were given.
SEARCH_DIRS: list[Path] = []

#: Keys that do not change what a run computes: left out of the run id.
NON_IDENTITY_KEYS = ("results_dir", "progress", "log.flush_s")

#: Keys added after runs existed, left out of the run id while they hold the value every earlier run had
#: (key -> that value): a run finished before the key existed is still found; any other value is another run.
IDENTITY_DEFAULTS = {"algo.precision": "fp32"}


def group_options(group: str) -> list[str]:
    """The choices of a config group. Files named ``_*.yaml`` are bases the choices inherit (a
    ``defaults`` list in the group), not choices: never listed or accepted."""
    dirs = [CONF_DIR, *SEARCH_DIRS]
    return sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml") if not p.stem.startswith("_")})


def search_dirs(overrides: Iterable[str]) -> list[Path]:
    """The directories named by a ``hydra.searchpath=[...]`` override (``file://`` or plain paths; ``pkg://``
    entries name packages, not directories, and are left to Hydra)."""
    dirs: list[Path] = []
    for o in parse_overrides([s for s in overrides if s.lstrip("+").startswith("hydra.searchpath=")]):
        value = o.value()
        for entry in value if isinstance(value, list) else [value]:
            entry = str(entry)
            if entry.startswith("pkg://"):
                continue
            dirs.append(Path(entry.removeprefix("file://")).expanduser())
    return dirs


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
    import yaml

    try:
        body = OmegaConf.load(path)
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
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
    """All combinations of a (possibly sweeping) override list as Hydra's basic sweeper makes them (a key
    given twice keeps its first place and its last value; the cartesian product, the last key varying
    fastest), from Hydra's public override API."""
    import itertools

    parsed = parse_overrides(overrides)
    if not any(o.is_sweep_override() for o in parsed):
        return [list(overrides)]
    choices: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise ConfigError(f"{o.input_line}: an interval sweep needs a sweeper that samples it; allowed: "
                              f"a,b,c, choice(...), range(...)")
    return [list(combo) for combo in itertools.product(*choices.values())]


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
    files = sorted(p for d in (CONF_DIR, *SEARCH_DIRS) for p in d.rglob("*.yaml"))
    return tuple((str(p), st.st_mtime_ns, st.st_size) for p in files for st in [p.stat()])


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
    # A copy: callers change theirs (launch sets dataset.stand_in).
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
                if key == "experiment":
                    # The first file Hydra would take: the package's, else a hydra.searchpath directory's.
                    for d in (CONF_DIR, *SEARCH_DIRS):
                        if (d / "experiment" / f"{v}.yaml").is_file():
                            check_experiment_file(d / "experiment" / f"{v}.yaml")
                            break


def yaml_error(path: Path, e: Exception) -> ConfigError:
    """One line for a file that is not YAML: the file, the line and column, what the parser met."""
    mark = getattr(e, "problem_mark", None)
    where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or _first_line(e)
    return ConfigError(f"{path}:{where}: not valid YAML ({problem}); allowed: YAML indented with spaces")


def check_experiment_file(path: Path) -> None:
    """An experiment file parses as YAML, is a mapping, and its ``sweep`` is a list of arms (mappings):
    found here in one line, not as a parser's or Hydra's merge error."""
    import yaml

    try:
        body = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: holds a {type(body).__name__}; expected a mapping of config keys")
    sweep = body.get("sweep", [])
    if sweep is None or (isinstance(sweep, str) and sweep.startswith("${")):
        return  # an interpolation: experiment_runs checks what it resolves to
    check_sweep(path, sweep)


def check_sweep(path: Path | str, sweep: Any) -> None:
    if not isinstance(sweep, list) or not all(isinstance(arm, dict) for arm in sweep):
        raise ConfigError(f"{path}: sweep={_short(sweep)}: not allowed; expected a list of arms, each a mapping "
                          f"{{key: values}} (- {{algo.lr: 0.1,0.01}})")


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


#: Keys whose default is an integer but whose rule allows any finite number (``scale.epochs=0.5``).
NUMBER_KEYS = ("scale.epochs",)

#: Hydra settings that would name an output directory hdist never writes.
REFUSED_HYDRA = ("hydra.run.", "hydra.sweep.", "hydra.output_subdir")


def _compatible(base: Any, new: Any, key: str = "") -> bool:
    if base is None or new is None:
        return True
    tb, tn = _type_name(base), _type_name(new)
    if key in NUMBER_KEYS and {tb, tn} <= {"int", "float"}:
        return True
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
    SEARCH_DIRS[:] = search_dirs(overrides)
    _check_groups(parsed)
    # Groups and Hydra's own settings (hydra.searchpath, hydra/launcher=...) are composed by Hydra; the values
    # on top are checked here, key by key, against what that composition holds.
    hydra_own = [o for o in parsed if o.key_or_group.lstrip("+~").startswith("hydra")]
    for o in hydra_own:
        if o.key_or_group.lstrip("+~").startswith(REFUSED_HYDRA):
            # hdist writes its runs under results_dir and Hydra writes no files (conf/config.yaml's hydra
            # section): a Hydra output directory would be ignored, so it is refused rather than dropped.
            raise ConfigError(f"{o.input_line}: not allowed; hdist writes runs to <results_dir>/<stem>/<run_id>/ "
                              f"(set results_dir=DIR instead)")
    group_ovs = [o.input_line for o in parsed if o.key_or_group.lstrip("+~") in GROUPS or o in hydra_own]
    value_ovs = [o for o in parsed if o.key_or_group.lstrip("+~") not in GROUPS and o not in hydra_own]
    try:
        base = _compose_raw(group_ovs)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_first_line(e)) from None
    for o in value_ovs:
        key = o.key_or_group
        if key.startswith(("+", "~")):
            raise ConfigError(f"{o.input_line}: adding or deleting keys is not allowed; set existing keys only")
        if OmegaConf.select(base, key, default=_MISSING) is _MISSING:
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            node = OmegaConf.select(base, parent) if parent else base
            known = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else "(none)"
            raise ConfigError(f"{key}={o.value()}: unknown key; keys{' under ' + parent if parent else ''}: {known}")
        old, new = OmegaConf.select(base, key), o.value()
        if not _compatible(old, new, key):
            raise ConfigError(f"{key}={new!r}: wrong type {_type_name(new)}; expected {_type_name(old)} "
                              f"(default {old!r})")
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
# Finalize: resolution
# ---------------------------------------------------------------------------------------------


def finalize(cfg: DictConfig, overrides: Iterable[str] = ()) -> DictConfig:
    """Resolve interpolations; returns a new config: what the run id hashes and ``config.yaml`` stores.

    Hydra has composed everything, the per-scale settings included (``conf/at_scale/<stem>/<scale>.yaml``,
    after the experiment, before the command line). An ``at_scale`` block inside an experiment file is the
    older layout, which nothing applies any more: refused rather than silently ignored. ``overrides``: the
    command line's, whose keys the CPU sizing of the headline command leaves alone.
    """
    if cfg.get("at_scale"):
        raise ConfigError(f"at_scale={OmegaConf.to_container(cfg.at_scale)}: per-scale settings are no longer "
                          f"read from an at_scale block; allowed: at_scale: {{}} and files "
                          f"at_scale/<stem>/<scale>.yaml (# @package _global_) beside experiment/")
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(cfg, False)
    for key in NUMBER_KEYS:
        v = OmegaConf.select(cfg, key, default=None)
        if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
            # 1.0 epochs is the run 1 epoch always was: the same run id.
            OmegaConf.update(cfg, key, int(v), merge=False)
    from hdist import demo, devices

    if isinstance(OmegaConf.select(cfg, "topology.devices", default=None), str):
        # auto settles here, before the demo sizing and the run id: the stored config names the device the
        # run computes on (a CPU run of auto is the run cpu always was)
        OmegaConf.update(cfg, "topology.devices", devices.resolve(cfg.topology.devices), merge=False)
    # the headline command on a CPU: sized to learn in minutes (hdist/demo.py); keys the user set win
    demo.apply(cfg, {o.key_or_group for o in parse_overrides(list(overrides))})
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # interpolation errors are config errors
        raise ConfigError(_interpolation_error(cfg, e)) from None
    resolved.pop("hydra", None)
    if isinstance(resolved.get("topology"), dict):
        # an interpolated value, now resolved, is settled as a plain one was above
        resolved["topology"]["devices"] = devices.resolve(resolved["topology"].get("devices", "cpu"))
    out = OmegaConf.create(resolved)
    OmegaConf.set_readonly(out, False)
    return out


def _interpolation_error(cfg: DictConfig, e: Exception) -> str:
    """One line naming the key whose ``${...}`` cannot be resolved, its value and what is allowed."""
    key = getattr(e, "full_key", None)
    if not key:
        return f"config: {_first_line(e)}"
    why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"{key}={_raw_value(cfg, key)}: cannot be resolved ({why}); "
            f"allowed: a value, or an interpolation that resolves")


def _raw_value(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        try:
            node = node._get_node(part)
        except Exception:
            return "?"
        if node is None:
            return "?"
    return node._value()


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
    for key, default in IDENTITY_DEFAULTS.items():
        *parents, last = key.split(".")
        node = d
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(last, default) == default:
            node.pop(last, None)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Validation: ranges and combinations
# ---------------------------------------------------------------------------------------------


#: The largest run seed: rank seeds (seed_for) and numpy's seeds stay within 64 and 32 bits.
SEED_MAX = 2**32 - 1

#: key -> (predicate, what is allowed). Keys absent from a config are skipped.
RULES: dict[str, Rule] = {
    "seed": (lambda v: int_at_least(0)(v) and v <= SEED_MAX, f"an integer in 0..{SEED_MAX}"),
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
    "topology.devices": (one_of("auto", "cpu", "cuda"), "auto, cpu or cuda"),
    "algo.precision": (one_of("fp32", "bf16", "fp16"), "fp32, bf16 or fp16"),
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


def validate(cfg: DictConfig, *, writes: bool = True) -> None:
    """Range and combination checks on a finalized config. ``writes``: the verb writes under
    ``results_dir`` (``hdist ls`` only reads), so the directory must be one that can be written."""
    from hdist.algos import get_algo

    algo = get_algo(cfg.algo.name) if isinstance(cfg.get("algo"), DictConfig) and "name" in cfg.algo else None
    _check_int64(cfg, {**RULES, **(algo.keys if algo else {})})
    check_rules(cfg, RULES)
    check_results_dir(str(cfg.results_dir), writes=writes)
    _check_memory(cfg)
    stem = cfg.get("stem", "adhoc")
    if stem != "adhoc" and stem not in group_options("experiment"):
        raise ConfigError(f"stem={stem}: no conf/experiment/{stem}.yaml")

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
    _check_precision(cfg, algo)
    algo.validate(cfg)
    _check_shapes(cfg)


def _check_precision(cfg: DictConfig, algo) -> None:
    """``algo.precision`` is one the algorithm declares (:attr:`hdist.types.AlgoSpec.precisions`)."""
    precision = str(cfg.algo.get("precision") or "fp32")
    if precision in algo.precisions:
        return
    why = ("its gradients do not all go through the fp16 loss scale (hdist.algos._ps.FlatModel.grad)"
           if precision == "fp16" else "its forward passes have not been run in it")
    raise ConfigError(f"algo.precision={precision}: algo={cfg.algo.name} does not support it ({why}); "
                      f"allowed: {', '.join(algo.precisions)}")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _check_int64(cfg: DictConfig, rules: dict[str, Rule]) -> None:
    """Every integer in the config fits in 64 bits: torch, numpy and parquet hold no larger one
    (``seed=99999999999999999999999`` would overflow in a rank, ``algo.lr=111...1`` in a float)."""
    def walk(node: Any, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            key = f"{prefix}{k}" if isinstance(k, str) else f"{prefix[:-1]}[{k}]"
            if isinstance(v, (dict, list)):
                walk(v, f"{key}.")
            elif isinstance(v, int) and not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX:
                allowed = rules[key][1] if key in rules else f"a 64-bit integer (at most {INT64_MAX})"
                raise ConfigError(f"{key}={_short(v)}: too large; expected {allowed}")

    walk(OmegaConf.to_container(cfg, resolve=False), "")


def check_results_dir(path: str, *, writes: bool = True) -> None:
    """``results_dir`` is a directory that exists or can be made (every component a legal name) and,
    when the verb writes, can be written: checked before anything is written."""
    import os

    p = Path(path).expanduser()
    name_max = 255
    for part in p.parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(f"results_dir={_short(path)}: the component {_short(part)} is {len(os.fsencode(part))} "
                              f"bytes long; allowed: names of at most {name_max} bytes")
    if len(os.fsencode(str(p.absolute()))) > 3000:
        raise ConfigError(f"results_dir={_short(path)}: too long; allowed: a path of at most 3000 bytes (runs go "
                          f"two levels below it)")
    if not writes:
        return
    probe = p.absolute()
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a dangling link: mkdir would fail on it
            raise ConfigError(f"results_dir={path}: {probe} is a broken symbolic link; allowed: a directory")
        probe = probe.parent
    if not probe.is_dir():
        what = "a regular file" if probe.is_file() else "not a directory"
        raise ConfigError(f"results_dir={path}: {probe} is {what}; allowed: a directory, or a path one can create")
    read_only_fs = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    if read_only_fs or not os.access(probe, os.W_OK | os.X_OK):
        why = " (read-only file system)" if read_only_fs else ""
        raise ConfigError(f"results_dir={path}: {probe} is not writable{why}; allowed: a directory this user can write")


def _physical_memory_bytes() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_memory(cfg: DictConfig) -> None:
    """The samples hdist generates or loads (n_train + n_test float32 inputs) fit in this machine's memory:
    ``dataset.n_train=1000000000000`` is refused here rather than by an allocator error in a rank."""
    ds = cfg.get("dataset")
    if not isinstance(ds, DictConfig):
        return
    shape = ds.get("shape") or OmegaConf.select(cfg, "model.input_shape", default=None)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        return
    n_train, n_test = ds.get("n_train"), ds.get("n_test")
    n = sum(v for v in (n_train, n_test) if isinstance(v, int) and not isinstance(v, bool))
    per_sample_bytes = 4 * math.prod(shape)
    have = _physical_memory_bytes()
    if n * per_sample_bytes > have:
        big_train = isinstance(n_train, int) and n_train * per_sample_bytes * 2 > have
        key, value = ("dataset.n_train", n_train) if big_train else ("dataset.n_test", n_test)
        raise ConfigError(f"{key}={value}: {n:,} samples of {list(shape)} float32 need "
                          f"{n * per_sample_bytes / 1e9:,.0f} GB, this machine has {have / 1e9:,.0f} GB; "
                          f"allowed: n_train + n_test <= {have // per_sample_bytes:,}")


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
