"""The runs behind an experiment stem (each arm of its ``sweep``, expanded into override lists) and the
multirun sweep of ``hdist run -m`` (planned, validated and recorded here, launched by a Hydra launcher)."""

from __future__ import annotations

import datetime as _dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------
# hdist run -m: the sweeper's work (hydra_plugins/hdist_sweeper)
# ---------------------------------------------------------------------------------------------

#: The results of the last sweep in this process, for ``hdist run``'s summary and exit code (Hydra's
#: multirun returns nothing to its caller).
LAST_RESULTS: list = []


@dataclass
class Point:
    overrides: list[str]
    run_id: str
    run_dir: Path
    stem: str
    results_dir: Path
    status: str  # what the store held before the sweep: done | diverged | failed | running | missing


def plan(task_overrides: list[str], hydra_overrides: list[str]) -> list[Point]:
    """Every point of a sweep, composed and validated (ConfigError on the first bad one, before anything is
    launched), with its run id and the status the run store holds for it."""
    from hdist import config as C
    from hdist.launch import prepare, read_status, run_paths

    # Only the search path changes what a point composes to; the launcher's settings do not.
    searchpath = [o for o in hydra_overrides if o.lstrip("+").startswith("hydra.searchpath=")]
    points = []
    for combo in C.expand_sweep(task_overrides):
        cfg = prepare([*combo, *searchpath])
        rid, run_dir = run_paths(cfg)
        points.append(Point(list(combo), rid, run_dir, str(cfg.stem), Path(cfg.results_dir),
                            read_status(run_dir)["status"]))
    return points


def run_sweep(launcher, task_overrides: list[str], hydra_overrides: list[str], launcher_name: str = "") -> list:
    """Validate every point, launch the unfinished ones through ``launcher`` (one job = one run), print
    each point's overrides beside its run id and status, and keep a record of the sweep beside each stem's
    runs: ``<results_dir>/<stem>/sweep-<UTC>-<pid>.json`` (one file per sweep, never overwritten)."""
    from hdist.launch import FINISHED, RunResult
    from hdist.types import ConfigError

    try:
        points = plan(task_overrides, hydra_overrides)
    except ConfigError as e:
        # A bad point stops the sweep before any job starts; Hydra would print a traceback for an exception.
        print(f"hdist: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    todo = [p for p in points if p.status not in FINISHED]
    print(f"[hdist] sweep of {len(points)} run(s): {len(points) - len(todo)} finished before, {len(todo)} to run"
          + (f" ({launcher_name.rsplit('.', 1)[-1]})" if launcher_name else ""), file=sys.stderr)
    for p in points:
        print(f"[hdist] {p.run_id} {'skip (' + p.status + ')' if p.status in FINISHED else 'to run':14s} "
              f"{' '.join(p.overrides)}", file=sys.stderr)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    records = _write_records(points, {}, stamp, launcher_name, task_overrides)

    results: dict[str, RunResult] = {p.run_id: RunResult(p.run_id, p.run_dir, p.status, skipped=True)
                                     for p in points if p.status in FINISHED}
    if todo:
        returns = launcher.launch([p.overrides for p in todo], initial_job_idx=0)
        for p, ret in zip(todo, returns):
            try:
                value = ret.return_value
            except Exception as e:  # a job that raised (its run could not even start): recorded, the sweep goes on
                value = RunResult(p.run_id, p.run_dir, "failed", f"{type(e).__name__}: {e}".splitlines()[0])
            results[p.run_id] = value
    for p in points:
        r = results[p.run_id]
        # A stand-in dataset gives the run another id than the planned one (launch.check_problem).
        shown = r.run_id if r.run_id == p.run_id else f"{p.run_id}->{r.run_id}"
        print(f"[hdist] {shown} {('skipped, ' if r.skipped else '') + r.status:14s} {' '.join(p.overrides)}",
              file=sys.stderr)
    _write_records(points, results, stamp, launcher_name, task_overrides, records)
    LAST_RESULTS[:] = [results[p.run_id] for p in points]
    return LAST_RESULTS


def _write_records(points: list[Point], results: dict, stamp: str, launcher_name: str, task_overrides: list[str],
                   paths: dict | None = None) -> dict:
    from hdist.metrics import atomic_write_json

    by_stem: dict[Path, list[Point]] = {}
    for p in points:
        by_stem.setdefault(p.results_dir / p.stem, []).append(p)
    paths = paths or {d: d / f"sweep-{stamp}-{os.getpid()}.json" for d in by_stem}
    for d, pts in by_stem.items():
        d.mkdir(parents=True, exist_ok=True)
        rows = []
        for p in pts:
            r = results.get(p.run_id)
            rows.append({"overrides": p.overrides, "run_id": r.run_id if r else p.run_id,
                         "planned_run_id": p.run_id, "status_before": p.status,
                         "status": (r.status if r else "queued"), "skipped": bool(r.skipped) if r else None,
                         "reason": r.reason if r else ""})
        atomic_write_json(paths[d], {"created": stamp, "argv": sys.argv, "overrides": task_overrides,
                                     "launcher": launcher_name, "runs": rows})
    return paths
