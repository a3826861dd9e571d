"""The model-parallel time stems: thesis figs. 17-23 and 28, Table 3 and benchmark (a) (bench-pipeline-speedup).

- every stem composes at every scale: its runs, the cut of each (K - 1 cuts, equal blocks), the smoke
  stand-in model and the paper's network, the interleaved repetitions of the benchmark;
- the shared analysis (hdist.papers.thesis.pipeline_time): Table 3's model, the time of a run from its clocks;
- a few real runs (serial and sim, in-process: seconds) through each stem's plot / check / tables: the
  claims compare measured values;
- the full smoke reproduce of each stem (slow: 7-10 runs each, several on process, 1.5-3 minutes on this
  loaded 2-core machine).
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hdist import config as C
from hdist.figures import load_experiment
from hdist.launch import execute, prepare
from hdist.metrics import load_results
from hdist.papers.thesis import pipeline_time as PT
from hdist.sweeps import experiment_runs

STEMS = ["thesis-fig17", "thesis-fig18", "thesis-fig19", "thesis-fig20", "thesis-fig21", "thesis-fig22",
         "thesis-fig23", "thesis-fig28", "thesis-table3", "bench-pipeline-speedup"]


def _runs(stem: str, scale: str):
    return [C.finalize(C.compose(r)) for r in experiment_runs(stem, [f"scale={scale}"])]


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("stem,scales", [("thesis-fig17", ["paper"]), ("thesis-fig19", ["paper"]),
                                         ("thesis-table3", ["smoke", "paper"]),
                                         # ~14 s of composing: the slow suite carries it
                                         pytest.param("thesis-fig28", ["smoke", "small", "paper"],
                                                      marks=pytest.mark.slow),
                                         ("bench-pipeline-speedup", ["smoke", "paper"])])
def test_every_run_has_k_minus_one_cuts(stem, scales):
    # fig17/19 name their cuts in the sweep (any scale); the others choose them by model and K.
    for scale in scales:
        for cfg in _runs(stem, scale):
            K = int(cfg.topology.stages)
            cuts = cfg.algo.cuts
            assert (cuts is None) if K == 1 else len(cuts) == K - 1, (stem, scale, K, cuts)


def test_fig20_cuts_equal_blocks_and_smoke_stand_in():
    paper = {(c.backend.name, c.algo.name, int(c.topology.stages)): c for c in _runs("thesis-fig20", "paper")}
    assert {c.model.name for c in paper.values()} == {"resnet110"}
    assert list(paper[("sim", "ddg", 4)].algo.cuts) == [14, 28, 42]  # 56 blocks, 14 per stage
    assert list(paper[("process", "ddg", 2)].algo.cuts) == [28]
    assert paper[("process", "bp", 1)].backend.threads_per_rank == 1  # one core = one device
    smoke = _runs("thesis-fig20", "smoke")
    assert {c.model.name for c in smoke} == {"resnet8"} and len(smoke) == len(paper) == 10


def test_fig22_23_networks_and_classes():
    for stem, classes in (("thesis-fig22", 10), ("thesis-fig23", 100)):
        paper = _runs(stem, "paper")
        assert sorted({(c.model.name, c.algo.name) for c in paper}) == [
            ("resnet110", "bp"), ("resnet110", "ddg"), ("resnet56", "bp"), ("resnet56", "ddg")]
        assert {int(c.model.num_classes) for c in paper} == {classes}
        assert {float(c.objective.l2) for c in paper} == {5e-4}
        assert {tuple(c.algo.milestones) for c in paper} == {(150, 225)}
        ddg = {c.model.name: list(c.algo.cuts) for c in paper if c.algo.name == "ddg"}
        assert ddg == {"resnet56": [14], "resnet110": [28]}  # the center


def test_bench_interleaves_methods_with_the_same_total_threads():
    cfgs = _runs("bench-pipeline-speedup", "small")
    order = [(int(c.seed), c.algo.name, int(c.backend.threads_per_rank)) for c in cfgs]
    main = [(s, a, 2 if a == "bp" else 1) for s in (0, 1, 2) for a in ("bp", "ddg", "fr")]
    control = [(s, "bp", 1) for s in (0, 1, 2)]  # BP on one core, after the interleaved block
    assert order == main + control
    for c in cfgs[:len(main)]:
        K, threads = int(c.topology.stages), int(c.backend.threads_per_rank)
        assert K * threads == 2 and (K == 1) == (c.algo.name == "bp")
    assert {(c.model.name, int(c.algo.batch_size)) for c in cfgs} == {("resnet20", 128)}


# --- the analysis -----------------------------------------------------------------------------------


def test_table3_model():
    m = PT.table3_model(1.0, 2.0, 4)
    assert m["bp"] == 3.0 and m["ddg"] == 1.5 and m["bound"] == 2.0


def _fake_run(rid, algo, backend, K, fw, bw, clock, steps=4):
    rows = []
    for k in range(1, K + 1):
        rows += [(f"forward_s/{k}", fw[k - 1]), (f"backward_s/{k}", bw[k - 1]), (f"wait_s/{k}", 0.0)]
    rows.append(("train_loss", 1.0))
    out = pd.DataFrame([{"run_id": rid, "metric": m, "value": v, "step": steps, "epoch": 1.0, "algo": algo,
                         "backend": backend, "stages": K, "seed": 0, "model": "resnet8", "wall_s": clock,
                         "sim_s": clock / 10 if backend == "sim" else math.nan} for m, v in rows])
    return out


def test_run_times_sums_stages_and_reads_the_right_clock():
    df = pd.concat([_fake_run("a", "bp", "process", 1, [1.0], [2.0], 4.0),
                    _fake_run("b", "ddg", "sim", 2, [0.5, 0.5], [1.0, 1.0], 3.0)])
    t = PT.run_times(df).set_index("run_id")
    assert t.loc["a", "T_F"] == 1.0 and t.loc["a", "T_B"] == 2.0 and t.loc["a", "train_s"] == 4.0
    assert t.loc["b", "T_F"] == 1.0 and t.loc["b", "train_s"] == pytest.approx(0.3)  # sim: virtual clock
    assert t.loc["a", "fwd_share"] == pytest.approx(1 / 3)
    assert t.loc["b", "arm"] == "sim DDG, K=2" and t.loc["a", "arm"] == "real BP, 1 device"


# --- real runs, in-process ----------------------------------------------------------------------------


def _execute(stem, tmp_path, *ovs):
    res = execute(prepare([f"experiment={stem}", "scale=smoke", "progress=quiet", f"results_dir={tmp_path}", *ovs]),
                  quiet_skip=True)
    assert res.status == "done", res.reason


def test_fig17_18_19_on_real_runs(tmp_path):
    tiny = ("scale.n_train=32", "scale.n_test=16")  # 2 steps of 16: the analysis, not the training, is tested
    _execute("thesis-fig17", tmp_path, "algo=bp", "topology.stages=1", *tiny)
    for algo, cut in (("ddg", "[4]"), ("dni", "[1]"), ("dni", "[4]")):
        _execute("thesis-fig17", tmp_path, f"algo={algo}", "topology.stages=2", f"algo.cuts={cut}", *tiny)
    df = load_results(tmp_path, ["thesis-fig17"])
    assert df["run_id"].nunique() == 4
    f17, f18, f19 = (load_experiment(s) for s in ("thesis-fig17", "thesis-fig18", "thesis-fig19"))
    runs = f17.finals(df)
    assert set(runs["splits"]) == {(), (1,), (7,)}  # thesis layers, from the cut indices
    claims = f17.check(df)
    # Two steps train nothing: a claim is settled on the measured comparison, or inconclusive saying which arm
    # did not train (hdist.claims.settle), never PASS on untrained arms.
    assert len(claims) == 2 and all(c.passed is not None or "did not train" in c.reason for c in claims)
    bp = float(runs.loc[runs["algo"] == "bp", "train_loss"].iloc[0])
    ddg7 = float(runs.loc[(runs["algo"] == "ddg") & (runs["splits"] == (7,)), "train_loss"].iloc[0])
    if claims[0].passed is not None:
        assert claims[0].passed == ((ddg7 - bp) / bp <= f17.LOSS_TOL)  # the claim is the measured comparison
    assert all(c.passed is not None or "did not train" in c.reason for c in f18.check(df))
    assert "| DNI | 7 |" in f17.tables(df)["finals"]
    for mod in (f17, f18, f19):
        assert mod.plot(df) is not None


def test_time_stems_on_sim_runs(tmp_path):
    # Sim runs only (seconds): BP on one device, BP and DDG on two.
    for algo, K in (("bp", 1), ("bp", 2), ("ddg", 2)):
        _execute("thesis-fig20", tmp_path, "backend=sim", f"algo={algo}", f"topology.stages={K}", "scale.n_train=32",
                 "scale.n_test=16")
    df = load_results(tmp_path, ["thesis-fig20"])
    f20, f21, t3 = (load_experiment(s) for s in ("thesis-fig20", "thesis-fig21", "thesis-table3"))
    c20 = f20.check(df)
    assert any("computes BP on one" in c.claim and c.passed for c in c20)  # BP on 2 stages = BP, exactly
    s = f21.summary(df)
    base = float(s[(s["algo"] == "bp") & (s["K"] == 1)]["epoch_s"].iloc[0])
    ddg = float(s[(s["algo"] == "ddg") & (s["K"] == 2)]["epoch_s"].iloc[0])
    cut = [c for c in f21.check(df) if "cuts the time" in c.claim]
    assert len(cut) == 1 and cut[0].passed == (1 - ddg / base >= f21.MIN_CUT)
    rows = t3.rows(df)
    assert rows["model"].notna().all() and (rows["it_s"] > 0).all()
    assert "T_F + T_B/2" in t3.tables(df)["model"]
    for mod in (f20, f21, t3):
        assert mod.plot(df) is not None


def test_fig22_and_bench_analysis_on_serial_runs(tmp_path):
    # The analysis of fig. 22 and the benchmark needs only the metrics: serial runs stand in for process
    # ones here (the full smoke reproduce below runs them on process).
    for algo, K in (("bp", 1), ("ddg", 2)):
        _execute("thesis-fig22", tmp_path, "backend=serial", f"algo={algo}", f"topology.stages={K}", "net=resnet56")
    df = load_results(tmp_path, ["thesis-fig22"])
    f22 = load_experiment("thesis-fig22")
    claims = f22.check(df)
    # Settled, or inconclusive with the reason (untrained arms, a tie, or unlike / unrecorded load).
    assert len(claims) == 2 and all(c.passed is not None or c.reason for c in claims)
    assert claims[1].timed
    assert "thesis Table 5 top-1 (%)" in f22.tables(df)["top1"]  # beside ours (n/a for the smoke stand-in)
    bench = load_experiment("bench-pipeline-speedup")
    a = bench.analyse(df)
    assert a["bound"] == pytest.approx(PT.table3_model(a["T_F"], a["T_B"], 2)["bound"])
    claims = bench.check(df)  # one per reference; without a threads column BP counts as the 2-thread one
    assert len(claims) == 2 and [c.passed is None for c in claims] == [False, True]


def _fig28_rows(run_id, net, algo, K, losses, epoch_s, status="done"):
    rows = []
    for i, v in enumerate(losses):
        rows.append({"run_id": run_id, "net": net, "model": net, "algo": algo, "stages": K, "backend": "sim",
                     "status": status, "metric": "train_loss", "step": i + 1, "epoch": (i + 1) / len(losses),
                     "sim_s": epoch_s * (i + 1) / len(losses), "value": v})
    rows.append({**rows[-1], "metric": "test_error", "value": 0.5})
    return rows


def test_fig28_claims_on_a_hand_made_table():
    f28 = load_experiment("thesis-fig28")
    rows = []
    for net in ("resnet164", "resnet152"):
        rows += _fig28_rows(f"{net}-bp", net, "bp", 1, [2.3, 1.0, 1.0, 1.0], 10.0)
        for K in (2, 4):
            rows += _fig28_rows(f"{net}-dni{K}", net, "dni", K, [2.3, 2.2, 2.2, 2.2], 12.0)
            rows += _fig28_rows(f"{net}-fr{K}", net, "fr", K, [2.3, 1.05, 1.05, 1.05], 10.0 / (1 + K / 4))
            diverged = net == "resnet152" and K == 4
            rows += _fig28_rows(f"{net}-ddg{K}", net, "ddg", K, [2.3, 2.4, 2.5, 2.6] if diverged else
                                [2.3, 1.0, 1.0, 1.0], 8.0, status="diverged" if diverged else "done")
    df = pd.DataFrame(rows)
    claims = {c.claim.split(":")[0] + (" DDG" if "DDG" in c.claim else " FR" if "FR" in c.claim else " DNI"): c
              for c in f28.check(df)}
    assert set(claims) == {"resnet164 DNI", "resnet164 FR", "resnet152 DNI", "resnet152 DDG", "resnet152 FR"}
    assert claims["resnet152 DDG"].passed is True and claims["resnet164 DNI"].passed is True
    # FR at K = 4: 10 s / 5 s per epoch = 2.0x with its loss within 10 % of BP's.
    assert claims["resnet164 FR"].passed is True and "K=4: 2.00x" in claims["resnet164 FR"].measured
    # A DNI that converges like BP at one K fails the claim; FR too slow fails its.
    slow = df.copy()
    slow.loc[(slow["run_id"] == "resnet164-dni2") & (slow["metric"] == "train_loss"), "value"] = 1.0
    slow.loc[slow["run_id"].str.contains("fr"), "sim_s"] *= 2
    again = [c for c in f28.check(slow) if c.claim.startswith("resnet164")]
    assert [c.passed for c in again] == [False, False]
    assert "| resnet152 | resnet152 | DDG | 4 | diverged |" in f28.tables(df)["runs"]
    assert f28.plot(df) is not None


# --- full smoke reproduce (slow) -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_smoke_reproduce(cli, tmp_path, stem):
    code, out, err = cli("reproduce", stem, "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    assert (tmp_path / "figures" / f"{stem}.png").exists()
    claims = json.loads((tmp_path / stem / "claims.json").read_text())
    assert claims and all("measured" in c for c in claims)
