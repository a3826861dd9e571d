"""Claims that can fail (hdist.claims): no paper claim PASSes when nothing trained, when the arms tie, or when
its runs used a synthetic stand-in; sanity checks of hdist's own code are counted apart in REPORT.md.

Each stem's ``check`` is fed frames built here from its own smoke sweep (its arms, as ``hdist reproduce``
would run them): every arm at its initial value (untrained), or every arm on one falling curve (a tie)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hdist import papers
from hdist.claims import Claim, arm_trained, finalize, from_dict, like_load, settle, verdict
from hdist.figures import check_claims, load_experiment

#: Initial values of the metrics a stem's check may read; errors are fractions.
START = {"train_loss": 2.3, "train_loss_full": 2.3, "test_loss": 2.3, "duality_gap": 1.0, "suboptimality": 1.0,
         "primal": 1.0, "train_error": 0.9, "test_error": 0.9}
TRAIN = ("train_loss", "train_loss_full", "train_error", "duality_gap", "suboptimality", "primal")
POINTS = 5


def _base_columns(ov: list[str]) -> dict:
    """A run's frame columns from its override list (what load_results would put there)."""
    cols: dict = {}
    names = {"algo": "algo", "model": "model", "dataset": "dataset", "backend": "backend",
             "topology.workers": "workers", "topology.stages": "stages"}
    for o in ov:
        key, _, val = o.partition("=")
        if key in ("experiment", "scale"):
            continue
        try:
            v = json.loads(val)
        except ValueError:
            v = val
        cols[names.get(key, key)] = v if not isinstance(v, list) else str(v)
    return cols


def sweep_frame(stem: str, trained: bool) -> pd.DataFrame:
    """Rows for every run of ``stem``'s smoke sweep: every metric flat at its start (``trained`` False), or
    one falling curve shared by every arm (a tie), with equal clocks."""
    from hdist import config as C
    from hdist.sweeps import experiment_runs

    base = C.compose([f"experiment={stem}", "scale=smoke"])
    defaults = {"stem": stem, "algo": base.algo.name, "model": base.model.name, "dataset": base.dataset.name,
                "backend": base.backend.name, "workers": base.topology.workers,
                "stages": base.topology.get("stages", 1), "scale": "smoke", "status": "done", "stand_in_for": "",
                "load_1m_start": 0.5, "load_1m_end": 0.5, "cpu_count": 2.0}
    for group in ("algo", "scale"):
        for k, v in base[group].items():
            if not isinstance(v, (dict, list)) and v is not None and not hasattr(v, "keys"):
                defaults[f"{group}.{k}"] = v
    rows = []
    for i, ov in enumerate(experiment_runs(stem, ["scale=smoke"])):
        cols = {**defaults, **_base_columns(ov)}
        for seed in (0, 1):
            rid = f"r{i:03d}s{seed}"
            for k in range(POINTS):
                for metric, start in START.items():
                    if trained:
                        value = start * 0.5 ** k if "error" not in metric else start - 0.15 * k
                    else:
                        value = start
                    rows.append({**cols, "seed": seed, "run_id": rid, "rank": 0, "role": "worker",
                                 "kind": "train" if metric in TRAIN else "eval", "step": 10 * k, "updates": 10 * k,
                                 "epoch": float(k), "samples": 80 * k, "wall_s": 0.1 * k,
                                 "sim_s": 0.1 * k, "metric": metric, "value": value})
    return pd.DataFrame(rows)


PAPER_STEMS = [s for s in papers.stems() if not s.startswith("bench-")]
#: A few stems of each paper run in the default suite; the rest are slow (each composes its sweep).
FAST = {"huo17-fig1", "kavg18-fig1", "lian15-table-con", "thesis-fig6", "thesis-table5", "thesis-fig14"}


def _stems():
    return [s if s in FAST else pytest.param(s, marks=pytest.mark.slow) for s in PAPER_STEMS]


def _paper_claims(stem: str, df: pd.DataFrame) -> list[Claim]:
    mod = load_experiment(stem)
    try:
        claims = check_claims(mod, df)
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as e:
        # A frame this generic lacks what some checks need (a stem's own metrics): no claim, so no PASS.
        pytest.skip(f"{stem}: check needs metrics this frame lacks ({type(e).__name__}: {e})")
    return [c for c in claims if c.kind == "paper"]


@pytest.mark.parametrize("stem", _stems())
def test_untrained_arms_never_pass(stem):
    claims = _paper_claims(stem, sweep_frame(stem, trained=False))
    passed = [c.claim for c in claims if c.status == "PASS"]
    assert not passed, f"{stem}: PASS with no arm trained: {passed}"


@pytest.mark.parametrize("stem", _stems())
def test_tied_arms_never_pass_a_comparison(stem):
    claims = _paper_claims(stem, sweep_frame(stem, trained=True))
    passed = [c.claim for c in claims if c.status == "PASS" and c.relation == "order"]
    assert not passed, f"{stem}: a comparison PASSes with every arm on one curve: {passed}"


@pytest.mark.parametrize("stem", ["huo17-fig1", "thesis-fig6"])
def test_a_stand_in_never_passes(stem):
    df = sweep_frame(stem, trained=True)
    df["stand_in_for"] = df["dataset"].astype(str)
    claims = _paper_claims(stem, df)
    assert claims and all(c.status != "PASS" for c in claims)
    assert any(verdict(c).startswith("n/a (stand-in for ") for c in claims)


def test_settle_preconditions():
    fell, flat = [2.3, 1.5, 1.0], [2.3, 2.29, 2.28]
    assert settle("A below B", "A < B", "", True, arms={"A": fell, "B": fell}, a=1.0, b=1.5).status == "PASS"
    c = settle("A below B", "A < B", "", True, arms={"A": fell, "B": flat}, a=1.0, b=1.5)
    assert c.status == "inconclusive" and "B did not train" in c.reason and c.passed is None
    assert settle("A below B", "", "", True, a=0.3427, b=0.3426).status == "inconclusive"
    assert settle("A below B", "", "", False, a=0.30, b=0.302, error=True).status == "inconclusive"
    assert settle("A below B", "", "", True, a=0.30, b=0.32, spread=0.05).status == "inconclusive"
    c = settle("covtype: A below B", "", "", True, stand_in="covtype")
    assert verdict(c) == "n/a (stand-in for covtype)" and c.passed is None
    assert arm_trained([0.9, 0.8, 0.84], error=True) and not arm_trained([0.9, 0.88], error=True)
    assert not arm_trained([2.3, 1.0, math.nan])


def test_training_is_read_from_the_objectives_own_measure():
    from hdist.claims import no_run_trained

    # PCA (thesis-fig8): the logged model loss stays at 0 from w = 0 while the suboptimality falls by 1e9
    rows = [{"run_id": "a", "rank": 0, "step": k, "metric": m, "value": v}
            for k in range(3) for m, v in (("train_loss_full", 0.0), ("suboptimality", 5e-3 * 1e-4 ** k))]
    df = pd.DataFrame(rows)
    assert no_run_trained(df) == ""
    flat = df.assign(value=np.where(df["metric"] == "suboptimality", 5e-3, 0.0))
    assert no_run_trained(flat).startswith("no run trained (suboptimality")


def test_timing_needs_like_recorded_load():
    quiet = {"load_1m_start": 0.4, "load_1m_end": 0.6, "cpu_count": 2}
    assert like_load([quiet, quiet]) == ""
    assert "above the 2 cores" in like_load([quiet, {**quiet, "load_1m_end": 5.0}])
    assert "unlike load" in like_load([quiet, {**quiet, "load_1m_start": 1.9}])
    assert "no load recorded" in like_load([quiet, {"load_1m_start": None, "load_1m_end": None, "cpu_count": 2}])
    c = settle("2 workers 1.9x faster", 2.0, 1.93, True, loads=[quiet, {**quiet, "load_1m_end": 7.0}])
    assert c.status == "inconclusive" and c.timed


def test_passed_is_a_json_boolean_or_null():
    assert Claim("x", 1, 1, "True").passed is True
    assert Claim("x", 1, 1, np.bool_(False)).to_dict()["passed"] is False
    c = from_dict({"claim": "x", "paper": 1, "measured": 1, "passed": None})
    assert c.status == "n/a" and c.kind == "paper"
    d = Claim("x", 1, 1, True).inconclusive("tie").to_dict()
    assert d["passed"] is None and d["status"] == "inconclusive"
    with pytest.raises(ValueError, match="kind"):
        Claim("x", 1, 1, True, kind="other")


def test_finalize_single_arm_claims_and_sanity_keep_their_verdict():
    df = sweep_frame("huo17-fig1", trained=False)
    claims = finalize([Claim("loss falls", "", "", False, relation="single"),
                       Claim("schedule matches itself", "", "", True, kind="sanity"),
                       Claim("A beats B", "", "", True)], df)
    assert [c.status for c in claims] == ["FAIL", "PASS", "inconclusive"]


def test_report_separates_paper_claims_from_sanity(tmp_path, monkeypatch):
    from hdist.metrics import atomic_write_json
    from hdist.report import write_report

    run = tmp_path / "thesis-fig11" / "abc"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("stem: thesis-fig11\nalgo:\n  name: sgd\n")
    atomic_write_json(run / "status.json", {"status": "done", "reason": ""})
    atomic_write_json(tmp_path / "thesis-fig11" / "claims.json", [])
    import hdist.report as R

    claims = [Claim("A beats B", "A", "A", True).to_dict(),
              Claim("covtype: A beats B", "A", "A", True).not_applicable("stand-in", "covtype").to_dict(),
              Claim("tie", "A", "A", None, status="inconclusive", reason="tie").to_dict(),
              Claim("schedule vs itself", "same", "same", True, kind="sanity").to_dict()]
    monkeypatch.setattr(R, "draw_all", lambda d, every_run=False: {
        "thesis-fig11": {"claims": claims, "runs": 1, "sweep": False, "tables": {}}})
    text = write_report(tmp_path).read_text()
    assert "Paper claims: 1 PASS, 0 FAIL, 1 inconclusive, 1 n/a (1 of them run on a synthetic stand-in" in text
    assert "| thesis-fig11 | 1 | 0 | 1 | 0 | 1 | 1 | 1 | sanity 1/1 |" in text
    assert "n/a (stand-in for covtype)" in text
    paper_part, sanity_part = text.split("Sanity checks and benchmarks of hdist itself (not reproductions)")
    assert "schedule vs itself" in sanity_part and "schedule vs itself" not in paper_part.split("Paper claims:")[-1]


def test_runs_record_the_machine_load():
    from hdist.launch import machine_load

    start, end = machine_load("start"), machine_load("end")
    assert set(start) == {"load_1m_start", "cpu_count_start"} and set(end) == {"load_1m_end", "cpu_count_end"}
    assert start["cpu_count_start"] >= 1 and start["load_1m_start"] >= 0


@pytest.mark.slow
def test_first_evaluation_of_a_batchnorm_network_is_sane(tmp_path):
    """ResNet-56's first evaluated loss was ~1000 with the initial BatchNorm statistics; re-estimated before
    every evaluation, it is that of an untrained 10-class network (a few nats, l2 included)."""
    from hdist.launch import execute, prepare
    from hdist.metrics import load_results

    cfg = prepare(["experiment=thesis-table5", "scale=smoke", "model=resnet56", "algo=bp", "algo.cuts=[14]",
                   "dataset=cifar10", f"results_dir={tmp_path}", "progress=quiet"])
    assert execute(cfg).status == "done"
    df = load_results(tmp_path)
    first = df[(df["metric"] == "test_loss")].sort_values("step")["value"].iloc[0]
    assert first < 10.0
