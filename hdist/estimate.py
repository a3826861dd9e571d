"""``hdist reproduce STEM --estimate``: a stem's runs and a measured estimate of their time on this machine.

Nothing is written into ``results_dir``. Each distinct arm (runs that differ only in step size,
schedule or seed share one) is timed by a short run of its own config, in a child process (its
memory is its own), into a temporary directory that is removed (:func:`hdist.calibrate.short_run`,
as ``hdist calibrate`` times updates): the algorithm's own step cap (``algo.max_steps``) stops it
after ``STEPS_PER_WORKER`` updates per worker, every step logging its row (``log.train_every=1``);
when those steps took under ``MIN_TIMED_S`` (a small model's sub-millisecond steps), it runs again
with enough steps. From the rows:

- ``per_epoch_s``: training seconds (``wall_s``, evaluation excluded) per epoch of the first
  worker, after its first (warm-up) step (an algorithm without per-step rows: the row that
  reached the most epochs);
- ``eval_s``: one evaluation of the model, timed on its own (:func:`hdist.train.measure`);
- ``fixed_s``: the rest of the short run (data, model, start-up of the ranks, the first step).

A run then costs ``fixed_s + per_epoch_s * epochs + eval_s * evaluations``, with the epochs and
evaluations of its own config (a config that caps ``algo.max_steps`` itself: the epochs the short
run's steps covered, scaled). On ``serial`` and ``sim`` (every rank in this process, one core)
each part is taken at its CPU time's share of its wall time, so other processes on the machine do
not inflate it. Backends that start a process per rank are timed in wall time with at most this
machine's cores of workers: more ranks than cores share the same cores, so an epoch takes as long;
only the start-up grows with the ranks. A timing run over ``TIMING_LIMIT_S`` (a large training
set) is stopped and the arm timed on 1/``SCALED_DOWN`` of its training set, scaled up.

Peak RSS is the short run's largest resident set (its own process or its largest rank), a lower
bound of the full run's (histories and buffers may grow with the steps).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from hdist.types import ConfigError

#: updates per worker in a timing run: one warm-up step, then the timed ones
STEPS_PER_WORKER = 4
#: seconds a timing run may take before it is stopped (then timed on 1/SCALED_DOWN of its training set)
TIMING_LIMIT_S = 60.0
#: the part of a training set too large to time in TIMING_LIMIT_S that is timed instead (1/this)
SCALED_DOWN = 10
#: backends whose ranks run in this process: one core, timed by CPU time
IN_PROCESS = ("serial", "sim")
#: algo keys that change a run's numbers but not its cost per step: arms differing only there share a timing
NUMERIC_KEYS = ("lr", "beta", "schedule", "momentum", "weight_decay", "pretrain_lr", "lr_unit", "warmup_epochs")


@dataclass
class Arm:
    """Runs that share one timing: same model, data, batch, backend, timed worker count and algorithm structure."""

    cfg: object  # the first run's config
    combo: list[str]  # the first run's overrides
    runs: list[list[str]] = field(default_factory=list)  # each run's overrides, less experiment= and the user's
    configs: list = field(default_factory=list)  # each run's (config, overrides)
    timing: dict | None = None


def timing_key(cfg) -> str:
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    algo = {k: v for k, v in c["algo"].items() if k not in NUMERIC_KEYS}
    keep = {k: c.get(k) for k in ("model", "dataset", "backend", "topology", "scale", "objective", "log")}
    # A process per rank: every count from the cores up is timed on the cores (timed_workers), once.
    keep["topology"] = {**keep["topology"], "workers": timed_workers(cfg)}
    return json.dumps({"algo": algo, **keep}, sort_keys=True, default=str)


def plan(stem: str, overrides: list[str]) -> tuple[list[list[str]], list[Arm]]:
    """The stem's runs (override lists, validated as reproduce validates them, nothing written) and their arms."""
    from hdist.launch import prepare
    from hdist.sweeps import experiment_runs

    combos = experiment_runs(stem, overrides)
    arms: dict[str, Arm] = {}
    for combo in combos:
        cfg = prepare(combo, writes=False)
        key = timing_key(cfg)
        arm = arms.setdefault(key, Arm(cfg, combo))
        arm.runs.append([o for o in combo if o != f"experiment={stem}" and o not in overrides])
        arm.configs.append((cfg, combo))
    return combos, list(arms.values())


def cores() -> int:
    return os.cpu_count() or 1


def timed_workers(cfg) -> int:
    workers = int(cfg.topology.workers)
    return workers if cfg.backend.name in IN_PROCESS else max(1, min(workers, cores()))


def short_overrides(cfg, combo: list[str]) -> list[str]:
    """The timing run's overrides: with a step cap, unless the algorithm has none (it then runs as configured)."""
    ovs = [*combo, "log.train_every=1", "progress=quiet"]
    workers = timed_workers(cfg)
    if workers != int(cfg.topology.workers):
        ovs.append(f"topology.workers={workers}")
    if "max_steps" not in cfg.algo:
        return ovs
    cap = STEPS_PER_WORKER * workers
    own = cfg.algo.get("max_steps")
    ovs.append(f"algo.max_steps={min(cap, int(own)) if own else cap}")
    return ovs


def time_arm(arm: Arm, limit_s: float = TIMING_LIMIT_S, too_big: set | None = None) -> dict:
    """The arm's timing (:func:`measure`, in a child process: its memory is its own), or ``{"error": ...}``.

    A timing run over ``limit_s`` on a training set of a known size is timed again on a tenth of it and
    scaled (``n_scale``): its data, epochs and evaluations take about that much longer at the full size.
    ``too_big`` collects the datasets that timed out, so the other arms on them go to a tenth at once."""
    ovs = short_overrides(arm.cfg, arm.combo)
    n_train = arm.cfg.dataset.get("n_train")
    data_key = json.dumps([str(arm.cfg.dataset.name), n_train])
    divisible = isinstance(n_train, int) and n_train >= SCALED_DOWN * 100 * timed_workers(arm.cfg)
    full_rss = 0
    if not (divisible and too_big is not None and data_key in too_big):
        t = _child(ovs, limit_s)
        if "over_s" not in t or not divisible:
            return t
        full_rss = t["peak_rss_bytes"]
        if too_big is not None:
            too_big.add(data_key)
    t = _child([*ovs, f"dataset.n_train={n_train // SCALED_DOWN}"], limit_s)
    if "error" not in t:
        t["n_scale"] = n_train / (n_train // SCALED_DOWN)
        # The full-size run's memory is more than the part's, and at least what it held when stopped.
        t["peak_rss_bytes"], t["rss_lower_bound"] = max(full_rss, t["peak_rss_bytes"]), True
    return t


def _child(ovs: list[str], limit_s: float) -> dict:
    """:func:`measure` in a child process, into a temporary directory this process owns and removes (a
    child stopped at the limit cannot remove its own)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hdist-estimate-") as tmp:
        cmd = [sys.executable, "-m", "hdist.estimate", json.dumps(ovs), tmp, str(limit_s)]
        # Its own session: on a timeout, the child and every rank it started are stopped together.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=limit_s)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as _Stopped
            # Stopped ourselves (Ctrl-C, SIGTERM): the child is in its own session, so it would train on;
            # stop it, then let the temporary directory go with the exception.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rss_kib = os.wait4(proc.pid, 0)[2].ru_maxrss  # what the child held when stopped
            proc.communicate()
            return {"error": f"timing run took over {limit_s:.0f} s", "over_s": limit_s,
                    "peak_rss_bytes": 1024 * rss_kib}
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"error": f"timing run failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


#: a timing run whose timed steps took less than this is run again with more steps (small models: a
#: few steps of a millisecond are mostly noise)
MIN_TIMED_S = 0.5
#: at most this many times the steps of the first timing run in the second
MAX_STEP_FACTOR = 250
#: an algorithm without per-step rows is timed by the difference of two runs' last rows, the longer one's
#: steps taking at least this many seconds (a run's start-up varies by tenths of a second) ...
SETTLED_S = 2.0
#: ... its steps grow at most this many times a try, for at most this many tries
GROW_MAX = 64
GROW_TRIES = 4


def _cap(overrides: list[str]) -> int | None:
    caps = [o for o in overrides if o.startswith("algo.max_steps=")]
    return int(caps[-1].split("=", 1)[1]) if caps else None


def _rows(df) -> dict:
    """From a short run's rows: epochs reached, seconds per epoch and the seconds of the steps that timed it,
    and how many evaluations were made. Per epoch from the first worker's per-step rows, after its first
    (warm-up) step; an algorithm that logs no rows per step (the dual methods): from the row that reached
    the most epochs, its wall_s over its epoch."""
    out = {"per_epoch_s": None, "epoch_end": 0.0, "timed_s": 0.0, "evals": 0, "per_step_rows": False}
    if df.empty:
        return out
    evals = df[(df["kind"] == "eval") & (df["metric"] != "eval_s")]
    out["evals"] = int(evals.groupby(["rank", "metric"]).size().max()) if not evals.empty else 0
    workers = df[df["role"] == "worker"]
    rows = workers if not workers.empty else df
    mine = rows[rows["rank"] == int(rows["rank"].min())]
    train = mine[mine["kind"] == "train"].sort_values("wall_s")
    e, w = train["epoch"].to_numpy(), train["wall_s"].to_numpy()
    if len(e) >= 3 and e[-1] > e[0]:
        out["epoch_end"] = float(e.max())
        out["per_epoch_s"], out["timed_s"] = float((w[-1] - w[0]) / (e[-1] - e[0])), float(w[-1] - w[0])
        out["per_step_rows"] = True
        return out
    moved = df[df["epoch"] > 0]
    if not moved.empty:
        end = float(moved["epoch"].max())
        wall = float(moved.loc[moved["epoch"] == end, "wall_s"].max())
        out["epoch_end"], out["per_epoch_s"], out["timed_s"] = end, wall / end, wall
    return out


def _eval_seconds(cfg) -> tuple[float, float]:
    """Wall and CPU seconds of one evaluation of ``cfg``'s model (the loops' own :func:`hdist.train.measure`),
    the second of two: the first pays for the first forward pass's allocations, as the run's first did."""
    from hdist.problems import build_problem
    from hdist.train import measure as evaluate

    problem = build_problem(cfg)
    model = problem.build_model(0)
    evaluate(problem, model, problem.data.train, cfg.log.eval_max_samples)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    evaluate(problem, model, problem.data.train, cfg.log.eval_max_samples)
    return time.perf_counter() - wall0, time.process_time() - cpu0


def measure(overrides: list[str], tmp: str, limit_s: float = TIMING_LIMIT_S) -> dict:
    """The timing run itself (in the child): ``overrides`` run into the directory ``tmp``, then, when its
    timed steps were too short to time, again with more steps; one evaluation timed on its own."""
    import resource

    from hdist import config as C
    from hdist.calibrate import short_run

    C.SEARCH_DIRS[:] = C.search_dirs(overrides)
    began = time.perf_counter()
    first = short_run(overrides, f"{tmp}/first")
    rows = _rows(first["df"])
    timed, timed_run = rows, first
    cap = _cap(overrides)
    # Without per-step rows the first run's seconds hold its warm-up: a longer run, and the difference.
    if cap is not None and rows["per_epoch_s"] and (rows["timed_s"] < MIN_TIMED_S or not rows["per_step_rows"]):
        least = 2 if rows["per_step_rows"] else 4
        factor = min(MAX_STEP_FACTOR, max(least, round(MIN_TIMED_S / max(rows["timed_s"], 1e-3))))
        start_s = max(0.0, first["exec_s"] - rows["timed_s"])  # a run's data, model and ranks, before its steps
        prev = rows
        for attempt in range(GROW_TRIES):
            timed_run = short_run([*overrides, f"algo.max_steps={cap * factor}"], f"{tmp}/again{attempt}")
            timed = _rows(timed_run["df"])
            if timed["per_step_rows"]:
                break
            # A run's last row holds its start-up's noise too (a dual method's first pushes pay for allocations,
            # and vary by tenths of a second): the difference from the shorter run takes it out, once the
            # steps take SETTLED_S; until then, many more steps.
            more_s, more_epochs = timed["timed_s"] - prev["timed_s"], timed["epoch_end"] - prev["epoch_end"]
            if more_s > 0 and more_epochs > 0:
                timed["per_epoch_s"] = more_s / more_epochs
            if timed["timed_s"] >= SETTLED_S:
                break
            grow = min(GROW_MAX, max(2, math.ceil(1.5 * SETTLED_S / max(timed["timed_s"], 1e-3))))
            # the next run must end well inside limit_s: the parent stops the child there and loses all of this
            if time.perf_counter() - began + start_s + grow * timed["timed_s"] > 0.75 * limit_s:
                break
            prev, factor = timed, factor * grow
    eval_s, eval_cpu_s = _eval_seconds(first["cfg"]) if rows["evals"] else (0.0, 0.0)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ranks = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"exec_s": first["exec_s"], "cpu_s": first["cpu_s"], "peak_rss_bytes": 1024 * max(own, ranks),  # KiB
            "per_epoch_s": timed["per_epoch_s"] or rows["per_epoch_s"], "epoch_end": rows["epoch_end"],
            "timed_s": rows["timed_s"], "evals": rows["evals"], "eval_s": eval_s, "eval_cpu_s": eval_cpu_s,
            # the CPU share of the run that timed the epochs (its load may differ from the first run's)
            "timed_cpu_share": _cpu_share(timed_run if timed["per_epoch_s"] else first)}


def _cpu_share(run: dict) -> float:
    """CPU seconds per wall second of a short run of this process, at most 1: on one core, the part of the
    time it had the core."""
    return min(1.0, run["cpu_s"] / run["exec_s"]) if run["exec_s"] > 0 else 1.0


def run_seconds(cfg, combo: list[str], t: dict) -> float | None:
    """Seconds of one run of ``cfg`` on this machine from its arm's timing ``t`` (None: not estimable)."""
    if "error" in t:
        return None
    # serial and sim: one core; each part's CPU share of its wall time takes out other processes' load
    one_core = cfg.backend.name in IN_PROCESS
    load = _cpu_share(t) if one_core else 1.0
    cap, own = _cap(short_overrides(cfg, combo)), cfg.algo.get("max_steps")
    if (cap is None or (own and int(own) <= cap)) and "n_scale" not in t:
        return load * t["exec_s"]  # no step cap, or the run's own is within the timing's: it was the whole run
    if not t["per_epoch_s"]:
        return None
    epochs = float(cfg.scale.epochs)
    if own:
        epochs = min(epochs, t["epoch_end"] * int(own) / cap)
    # The first step is in the start-up: it pays for first-call allocations once a run.
    fixed_s = max(0.0, t["exec_s"] - t["timed_s"] - t["eval_s"] * t["evals"])
    fixed_s *= int(cfg.topology.workers) / timed_workers(cfg)  # one start-up per rank
    evals = float(cfg.log.evals_per_epoch) * epochs + 2  # the start's and the end's, and evals_per_epoch a pass
    per_epoch_s = t["per_epoch_s"] * (t["timed_cpu_share"] if one_core else 1.0)
    eval_s = min(t["eval_s"], t["eval_cpu_s"]) if one_core else t["eval_s"]
    # Timed on a part of the training set: data, epochs and evaluations grow with it.
    return t.get("n_scale", 1.0) * (load * fixed_s + per_epoch_s * epochs + eval_s * evals)


class _Stopped(KeyboardInterrupt):
    """SIGTERM while timing: unwinds like Ctrl-C, so the timing child is stopped and its directory removed."""


def _raise_stopped(signum, frame):
    raise _Stopped("SIGTERM")


def estimate(stem: str, overrides: list[str], progress=None, limit_s: float = TIMING_LIMIT_S) -> dict:
    """The stem's runs, arms and their timings, and the estimate: seconds in all (None where an arm failed)."""
    import threading

    combos, arms = plan(stem, overrides)
    too_big: set = set()
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _raise_stopped) if main else None
    try:
        for i, arm in enumerate(arms):
            if progress:
                progress(f"[hdist] {stem}: timing arm {i + 1}/{len(arms)}: {' '.join(arm.runs[0]) or '(base)'}")
            arm.timing = time_arm(arm, limit_s=limit_s, too_big=too_big)
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)
    seconds = []
    for arm in arms:
        arm.timing["runs_s"] = [run_seconds(cfg, combo, arm.timing) for cfg, combo in arm.configs]
        seconds += arm.timing["runs_s"]
    known = [s for s in seconds if s is not None]
    peak = max((a.timing.get("peak_rss_bytes", 0) for a in arms), default=0)
    bound = any(a.timing.get("rss_lower_bound") or "over_s" in a.timing for a in arms)
    return {"stem": stem, "scale": str(arms[0].cfg.scale.name) if arms else "", "runs": len(combos),
            "arms": arms, "total_s": sum(known), "missing": len(seconds) - len(known),
            "peak_rss_bytes": peak, "rss_lower_bound": bound,
            "why_missing": sorted({a.timing["error"] for a in arms if "error" in a.timing}), "limit_s": limit_s}


def _hours(s: float) -> str:
    return f"{s / 3600:.3g}"


def _gb(b: float, lower_bound: bool = False) -> str:
    return (">= " if lower_bound else "") + f"{b / 1e9:.2f} GB" if b else "-"


def _total(est: dict) -> str:
    """The total in hours, marked when some arm could not be timed (a lower bound then)."""
    text = _hours(est["total_s"])
    if est["missing"]:
        why = "; ".join(est.get("why_missing") or [])
        why = f": {why}" if why else ""
        if est["missing"] == est["runs"]:
            return f"not estimated{why}"
        text = f">= {text} ({est['missing']} run(s) not estimated{why})"
    return text


def format_table(est: dict) -> str:
    lines = [f"{est['stem']} at scale={est['scale']}: {est['runs']} run(s) in {len(est['arms'])} timed arm(s)",
             f"{'runs':>4}  {'s/run':>9}  {'hours':>7}  {'peak RSS':>9}  overrides (first run of the arm)"]
    for arm in est["arms"]:
        t = arm.timing
        known = [s for s in t["runs_s"] if s is not None]
        per = f"{known[0]:.1f}" if known else "?"
        hours = _hours(sum(known)) if known else "?"
        rss = _gb(t.get("peak_rss_bytes", 0), t.get("rss_lower_bound") or "over_s" in t)
        lines.append(f"{len(arm.runs):>4}  {per:>9}  {hours:>7}  {rss:>9}  "
                     f"{' '.join(arm.runs[0]) or '(the experiment as configured)'}")
        if "error" in t:
            lines.append(f"{'':>4}  not estimated: {t['error']}")
        elif "n_scale" in t:
            lines.append(f"{'':>4}  timed on 1/{t['n_scale']:.3g} of the training set (the whole one took over "
                         f"{est.get('limit_s', TIMING_LIMIT_S):.0f} s), scaled up")
        for own in arm.runs[1:]:
            lines.append(f"{'':>4}  {'':>9}  {'':>7}  {'':>9}  {' '.join(own)}")
    total = _total(est) if est["missing"] == est["runs"] else f"{_total(est)} hours ({est['total_s']:.0f} s)"
    lines.append(f"total: {total} on this machine ({cores()} core(s)); "
                 f"peak RSS {_gb(est['peak_rss_bytes'], est['rss_lower_bound'])}")
    return "\n".join(lines)


def format_md_row(est: dict) -> str:
    """One row of docs/reproduction.md's cost table: stem | runs | hours | peak RSS."""
    scaled = any("n_scale" in a.timing for a in est["arms"])
    hours = _total(est) + (f" (timed on 1/{SCALED_DOWN} of the data)" if scaled else "")
    return f"| {est['stem']} | {est['runs']} | {hours} | {_gb(est['peak_rss_bytes'], est['rss_lower_bound'])} |"


FORMATS = ("table", "md")


def check_flags(flags: list[str]) -> tuple[str, float]:
    """The output format and the timing runs' limit in seconds of ``--estimate`` flags (ConfigError on a bad one)."""
    fmt, limit_s = "table", TIMING_LIMIT_S
    for f in flags:
        if f.startswith("--format="):
            fmt = f.split("=", 1)[1]
            if fmt not in FORMATS:
                raise ConfigError(f"reproduce --format={fmt}: unknown format; allowed: {', '.join(FORMATS)}")
        elif f.startswith("--timing-limit="):
            limit_s = timing_limit(f.split("=", 1)[1], "reproduce --timing-limit")
    return fmt, limit_s


def timing_limit(text: str, what: str) -> float:
    """A timing-run limit in seconds from the command line (ConfigError unless a number of at least 10)."""
    try:
        limit_s = float(text)
    except ValueError:
        limit_s = float("nan")
    if not limit_s >= 10:
        raise ConfigError(f"{what}={text}: not a number of seconds >= 10; allowed: e.g. {what}=300 "
                          f"(default {TIMING_LIMIT_S:.0f})")
    return limit_s


if __name__ == "__main__":
    # The child of time_arm: one timing run, its numbers as the last line of stdout.
    try:
        result = measure(json.loads(sys.argv[1]), sys.argv[2], *(float(a) for a in sys.argv[3:4]))
    except (ConfigError, RuntimeError) as e:
        result = {"error": str(e).splitlines()[0]}
    print(json.dumps(result))
