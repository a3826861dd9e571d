"""A claim check: one sentence of a paper, the paper's value, ours, and whether it held.

A claim has a ``status`` (:data:`STATUSES`) and a ``kind`` (:data:`KINDS`):

- ``paper``: a result of the paper, reproduced or not. It can PASS only when its preconditions hold
  (:func:`settle`): every compared arm trained, the difference exceeds the noise, a timing was taken under
  recorded, like and not oversubscribed load, and the data is the named dataset, not a synthetic stand-in
  (``n/a (stand-in for covtype)``).
- ``sanity``: a check of hdist's own code (a schedule against itself, determinism, byte accounting). It can
  fail, but its PASS says nothing about the paper, so it is counted apart.
- ``bench``: a benchmark of hdist (speed, memory), not a paper's result.

:func:`finalize` applies the rules that need no knowledge of a stem (stand-in runs, a frame in which no run
trained, arms whose curves tie at every logged point) to what a stem's ``check`` returned.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

STATUSES = ("PASS", "FAIL", "inconclusive", "n/a")
KINDS = ("paper", "sanity", "bench")
#: ``order``: one arm beats another (untrained arms and ties leave it inconclusive); ``similar``: arms match
#: (untrained arms leave it inconclusive: two untrained arms match trivially); ``single``: about one arm.
RELATIONS = ("order", "similar", "single")

#: An arm trained when its loss fell at least this fraction below its first logged value ...
TRAINED_LOSS_DROP = 0.10
#: ... or its error fell at least this many points (fraction 0..1) below its first logged value.
TRAINED_ERROR_DROP = 0.05
#: Two values closer than this fraction of their magnitude tie.
TIE_RELATIVE = 0.01
#: Two errors (fractions 0..1) closer than half a point tie.
TIE_ERROR = 0.005
#: Arms of a timing claim ran under like load when their 1-minute load averages differ by at most this.
LIKE_LOAD = 1.0

#: Metrics that show training, in the order :func:`finalize` looks for them; errors are fractions 0..1. The
#: objective's own measures come first: where a run logs one, its model loss may not be the objective (PCA's
#: P(w) starts at 0 at w = 0 and is unbounded below, while its logged model loss does not move).
LOSS_METRICS = ("suboptimality", "duality_gap", "train_loss_full", "train_loss", "test_loss", "primal")
ERROR_METRICS = ("test_error", "train_error")


@dataclass
class Claim:
    claim: str  # the paper's statement, in words
    paper: Any  # the paper's value or qualitative result
    measured: Any  # what our runs show
    passed: bool | None  # None: not settled (status and reason say why)
    kind: str = "paper"  # one of KINDS
    status: str = ""  # one of STATUSES; empty: from ``passed`` (True PASS, False FAIL, None n/a)
    reason: str = ""  # why inconclusive or n/a
    relation: str = "order"  # one of RELATIONS: what the claim says of its arms
    timed: bool = False  # a wall-clock timing: needs recorded, like load (``finalize``)
    stand_in: str = ""  # the named dataset this claim's runs replaced with a synthetic stand-in

    def __post_init__(self):
        # numpy bools and the string "True" of an old claims.json become JSON booleans.
        if isinstance(self.passed, str):
            self.passed = {"true": True, "false": False}.get(self.passed.lower())
        elif self.passed is not None:
            self.passed = bool(self.passed)
        if not self.status:
            self.status = {True: "PASS", False: "FAIL"}.get(self.passed, "n/a")
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}; allowed: {', '.join(STATUSES)}")
        if self.relation not in RELATIONS:
            raise ValueError(f"relation {self.relation!r}; allowed: {', '.join(RELATIONS)}")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.status in ("inconclusive", "n/a"):
            self.passed = None

    def inconclusive(self, reason: str) -> Claim:
        return replace(self, passed=None, status="inconclusive", reason=reason)

    def not_applicable(self, reason: str, stand_in: str = "") -> Claim:
        return replace(self, passed=None, status="n/a", reason=reason, stand_in=stand_in or self.stand_in)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("paper", "measured"):
            if isinstance(d[k], float):
                d[k] = float(f"{d[k]:.6g}")
        return d


def from_dict(d: Mapping) -> Claim:
    """A claim read back from claims.json (older files lack ``status`` and ``kind``)."""
    fields = Claim.__dataclass_fields__
    return Claim(**{k: v for k, v in d.items() if k in fields})


def not_checked(claim: str, paper: Any, why: str, kind: str = "paper") -> Claim:
    return Claim(claim, paper, f"not checked: {why}", None, kind=kind, reason=why)


def sanity(claim: str, expected: Any, measured: Any, passed: bool | None) -> Claim:
    """A check of hdist's own code: counted apart from the paper's claims."""
    return Claim(claim, expected, measured, passed, kind="sanity", relation="single")


def verdict(c: Mapping | Claim) -> str:
    """What a claims table shows: PASS, FAIL, inconclusive, or n/a with its stand-in."""
    d = c.to_dict() if isinstance(c, Claim) else c
    status = d.get("status") or {True: "PASS", False: "FAIL"}.get(d.get("passed"), "n/a")
    if status == "n/a" and d.get("stand_in"):
        return f"n/a (stand-in for {d['stand_in']})"
    return status


# ---------------------------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------------------------


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def arm_trained(curve: Sequence[float], error: bool = False) -> bool:
    """A curve in logged order trained: its last finite value is TRAINED_LOSS_DROP below its first (a loss),
    or TRAINED_ERROR_DROP points below it (an error, fraction 0..1). A diverged curve (last value not
    finite) did not."""
    vals = [float(v) for v in curve]
    if len(vals) < 2 or not math.isfinite(vals[-1]):
        return False
    first, last = _finite(vals)[0], vals[-1]
    if error:
        return first - last >= TRAINED_ERROR_DROP
    return first - last >= TRAINED_LOSS_DROP * abs(first)


def ties(a: float, b: float, error: bool = False, spread: float = 0.0) -> bool:
    """``a`` and ``b`` are indistinguishable: within the seeds' ``spread``, within half a point (errors), or
    within TIE_RELATIVE of their magnitude."""
    d = abs(float(a) - float(b))
    if not math.isfinite(d):
        return False
    if d <= spread:
        return True
    if error:
        return d < TIE_ERROR
    return d <= TIE_RELATIVE * max(abs(float(a)), abs(float(b)))


def like_load(loads: Sequence[Mapping]) -> str:
    """Why timings taken under ``loads`` (meta.json's load_1m_start/end and cpu_count per run) cannot be
    compared, or "" when they can."""
    if not loads:
        return "no load recorded"
    levels = []
    for ld in loads:
        vals = [ld.get("load_1m_start"), ld.get("load_1m_end")]
        cpus = ld.get("cpu_count")
        if any(v is None or not math.isfinite(float(v)) for v in vals) or not cpus:
            return "no load recorded for a timed run (older run)"
        if max(vals) > float(cpus):
            return f"1-minute load {max(vals):.2f} above the {int(cpus)} cores"
        levels += vals
    if max(levels) - min(levels) > LIKE_LOAD:
        return f"arms ran under unlike load (1-minute load {min(levels):.2f} to {max(levels):.2f})"
    return ""


def curve(df, metric: str) -> list[float]:
    """An arm's curve: ``metric`` of the runs in ``df`` (its seeds), averaged at each logged step, in order."""
    d = df[df["metric"] == metric]
    if d.empty:
        return []
    if "rank" in d.columns:
        d = d[d["rank"] == d["rank"].min()]
    # The progress axis that moves in these rows: a parameter server's snapshot evaluations share one step
    # and differ in epoch and updates.
    for x in ("epoch", "updates", "step"):
        if x in d.columns and d[x].nunique(dropna=True) > 1:
            return [float(v) for v in d.groupby(x, sort=True)["value"].mean()]
    return [float(v) for v in d["value"]]


def settle(claim: str, paper: Any, measured: Any, holds: bool, *,
           arms: Mapping[str, Sequence[float]] | None = None, error: bool = False,
           a: float | None = None, b: float | None = None, spread: float = 0.0,
           loads: Sequence[Mapping] | None = None, stand_in: str = "", kind: str = "paper",
           relation: str = "order") -> Claim:
    """A comparative claim, settled only when its preconditions hold.

    ``arms``: name -> the compared arm's curve (loss, or error with ``error``) in logged order; each must
    have trained (:func:`arm_trained`). ``a``, ``b``: the compared values, which must not tie (:func:`ties`,
    with the seeds' ``spread``). ``loads``: for a wall-clock timing, each arm's recorded load
    (:func:`like_load`). ``stand_in``: the named dataset the runs replaced with a synthetic stand-in (n/a).
    ``relation``: ``similar`` for "A matches B" (a tie is its support: no tie check).
    """
    c = Claim(claim, paper, measured, holds, kind=kind, timed=loads is not None, relation=relation)
    if stand_in:
        return c.not_applicable(f"stand-in for {stand_in}", stand_in)
    for name, curve in (arms or {}).items():
        if not arm_trained(curve, error):
            vals = [float(v) for v in curve] or [float("nan")]
            return c.inconclusive(f"{name} did not train ({'error' if error else 'loss'} "
                                  f"{vals[0]:.4g} -> {vals[-1]:.4g})")
    if relation == "order" and a is not None and b is not None and ties(a, b, error, spread):
        return c.inconclusive(f"tie: {float(a):.4g} vs {float(b):.4g} within the noise")
    if loads is not None:
        why = like_load(loads)
        if why:
            return c.inconclusive(why)
    return c


# ---------------------------------------------------------------------------------------------------------------
# Rules any stem's claims obey
# ---------------------------------------------------------------------------------------------------------------

#: Columns of load_results that do not tell arms apart.
_NOT_ARM = {"run_id", "rank", "role", "kind", "step", "updates", "epoch", "samples", "wall_s", "sim_s", "metric",
            "value", "seed", "status", "stand_in_for", "load_1m_start", "load_1m_end", "cpu_count"}


def _curves(df, metric: str) -> dict[str, list[float]]:
    """Per run: the metric's values in logged order (rank 0's, or the lowest rank that logged it)."""
    d = df[df["metric"] == metric]
    out = {}
    for rid, g in d.groupby("run_id", sort=True):
        if "rank" in g.columns:
            g = g[g["rank"] == g["rank"].min()]
        order = [c for c in ("step", "epoch", "wall_s") if c in g.columns]
        out[str(rid)] = [float(v) for v in (g.sort_values(order, kind="stable") if order else g)["value"]]
    return out


def training_metric(df) -> tuple[str, bool] | None:
    """The metric that shows training in ``df`` (name, is an error) or None."""
    if df is None or df.empty or "metric" not in df.columns:
        return None
    present = set(df["metric"].unique())
    for m in LOSS_METRICS:
        if m in present:
            return m, False
    for m in ERROR_METRICS:
        if m in present:
            return m, True
    return None


def no_run_trained(df) -> str:
    """Why nothing in ``df`` trained, or "" when some run did (or nothing in it is a training curve)."""
    tm = training_metric(df)
    if tm is None:
        return ""
    metric, error = tm
    curves = {k: v for k, v in _curves(df, metric).items() if len(v) >= 2}
    if not curves or any(arm_trained(v, error) for v in curves.values()):
        return ""
    firsts = sorted(v[0] for v in curves.values())
    return f"no run trained ({metric} {firsts[0]:.4g}..{firsts[-1]:.4g} at the start, none fell " \
           f"{'5 points' if error else '10%'})"


def curves_tie(df) -> str:
    """Why every arm of ``df`` is indistinguishable (their curves and clocks within TIE_RELATIVE at every
    logged point), or "" when some differ or there are fewer than two arms."""
    tm = training_metric(df)
    if tm is None:
        return ""
    metric, _ = tm
    d = df[df["metric"] == metric]
    arm_cols = [c for c in d.columns if c not in _NOT_ARM]
    arms = {k for k in d[arm_cols].astype(str).itertuples(index=False, name=None)} if arm_cols else set()
    if len(arms) < 2:
        return ""
    import numpy as np

    curves = _curves(df, metric)
    clocks = {}
    for clock in ("wall_s", "sim_s"):
        if clock in d.columns:
            sub = d.assign(value=d[clock])
            clocks[clock] = {rid: [float(x) for x in g.sort_values("step")["value"]]
                             for rid, g in sub.groupby("run_id", sort=True)} if "step" in d.columns else {}
    series = [curves] + list(clocks.values())
    for s in series:
        vals = list(s.values())
        if not vals or len({len(v) for v in vals}) > 1:
            return ""
        arr = np.asarray(vals, dtype=float)
        arr = np.where(np.isfinite(arr), arr, 0.0)
        span = arr.max(axis=0) - arr.min(axis=0)
        if (span > TIE_RELATIVE * np.maximum(np.abs(arr).max(axis=0), 1e-12)).any():
            return ""
    return f"every arm's {metric} curve and clock tie at every logged point"


def _stand_ins(df) -> dict[str, str]:
    """dataset name -> the named dataset it stands in for, for runs on a synthetic stand-in."""
    if df is None or df.empty or "stand_in_for" not in df.columns:
        return {}
    d = df[df["stand_in_for"].fillna("").astype(str) != ""]
    if d.empty:
        return {}
    names = d["dataset"].astype(str) if "dataset" in d.columns else d["stand_in_for"].astype(str)
    return dict(zip(names, d["stand_in_for"].astype(str)))


def loads_of(df) -> list[dict]:
    """Each run's recorded load in ``df`` (load_results' load_1m_start/end and cpu_count columns)."""
    cols = ["load_1m_start", "load_1m_end", "cpu_count"]
    if df is None or df.empty or not set(cols) <= set(df.columns):
        return []
    runs = df.drop_duplicates("run_id")
    return [{c: (None if r[c] is None or (isinstance(r[c], float) and math.isnan(r[c])) else float(r[c]))
             for c in cols} for _, r in runs.iterrows()]


def _names(text: str, name: str) -> bool:
    """``text`` names the dataset ``name`` as a word (cifar10 is not named by "cifar100")."""
    import re

    return bool(name) and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def finalize(claims: Iterable[Claim | Mapping], df=None) -> list[Claim]:
    """Apply the rules any stem's paper claims obey to what its ``check`` returned (sanity and bench claims
    only get their status): a claim on a synthetic stand-in is n/a; when no run in ``df`` trained, or every
    arm ties, a comparison is inconclusive; a wall-clock timing without recorded, like load is inconclusive."""
    out = [c if isinstance(c, Claim) else from_dict(c) for c in claims]
    if df is None or df.empty:
        return out
    stand_ins = _stand_ins(df)
    untrained = no_run_trained(df)
    tie = curves_tie(df) if not untrained else ""
    all_stand_in = bool(stand_ins) and "stand_in_for" in df.columns \
        and (df["stand_in_for"].fillna("").astype(str) != "").all()
    loads = None
    done = []
    for c in out:
        named = sorted({v for k, v in stand_ins.items() if _names(c.claim, k) or _names(c.claim, v)})
        if c.kind == "paper" and c.status != "n/a" and (all_stand_in or named):
            # Whatever else held or did not, the runs were not on the named dataset: the stand-in decides.
            who = ", ".join(named or sorted(set(stand_ins.values())))
            c = c.not_applicable(f"stand-in for {who}" + (f"; {c.reason}" if c.reason else ""), who)
        elif c.kind == "paper" and c.status in ("PASS", "FAIL"):
            if untrained and c.relation != "single":
                c = c.inconclusive(untrained)
            elif tie and c.relation == "order":
                c = c.inconclusive(tie)
            elif c.timed:
                loads = loads_of(df) if loads is None else loads
                why = like_load(loads)
                if why:
                    c = c.inconclusive(why)
        done.append(c)
    return done


def counts(claims: Iterable[Mapping | Claim], kind: str = "paper") -> dict[str, int]:
    """How many claims of ``kind`` have each status, and (``stand-in``) how many of the n/a ran on a stand-in."""
    out = {**{s: 0 for s in STATUSES}, "stand-in": 0}
    for c in claims:
        d = c.to_dict() if isinstance(c, Claim) else c
        if d.get("kind", "paper") == kind:
            out[verdict(d).split(" ")[0]] += 1
            out["stand-in"] += bool(d.get("stand_in"))
    return out
