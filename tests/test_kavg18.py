"""kavg18 figures 1-7 and Theorem 3.4: the bound against hand computations, the probe against an exact Hessian,
the claims on hand-made tables, every stem at smoke scale, and the issue's K x P sweep (resumable)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import matplotlib.figure
import pandas as pd
import pytest

from hdist.analysis import kavg_bound as kb
from hdist.figures import load_experiment

STEMS = [f"kavg18-fig{i}" for i in range(1, 8)]


# ---------------------------------------------------------------------------------------------------------------
# Theorem 3.4 (eq. 3.44) by hand
# ---------------------------------------------------------------------------------------------------------------


def test_bound_matches_a_hand_computation():
    # L gamma = 0.9: delta = 1 - 0.81 = 0.19. alpha = 2 * 3 / (100 * 0.1) = 0.6, beta = 0.9 * 2 / (2 * 4) = 0.225,
    # eta = 0.81 * 2 / (6 * 4) = 0.0675.
    s = kb.Setting(L=9.0, M=2.0, gap=3.0, gamma=0.1, B=4, P=2, S=100)
    a, b, e = kb.coefficients(s)
    assert (a, b, e) == pytest.approx((0.6, 0.225, 0.0675))
    assert kb.delta_of(s) == pytest.approx(0.19)
    # B(K) = (alpha + beta K + eta (2K - 1)(K - 1)) K / (K - 1 + delta)
    assert kb.bound(1, s) == pytest.approx((0.6 + 0.225) / 0.19)  # 4.342
    assert kb.bound(2, s) == pytest.approx((0.6 + 0.45 + 0.0675 * 3) * 2 / 1.19)  # 2.105
    assert kb.bound(3, s) == pytest.approx((0.6 + 0.675 + 0.0675 * 10) * 3 / 2.19)  # 2.671
    assert kb.k_opt(s, range(1, 11)) == 2
    assert kb.k_opt_above_one(s)
    assert kb.delta_star(s) == pytest.approx((0.6 + 0.225) / (0.6 + 3 * 0.225 + 6 * 0.0675))  # 0.492 > 0.19
    # A small L gamma: delta near 1, the variance terms win and K = 1 is best.
    t = kb.Setting(L=0.5, M=2.0, gap=3.0, gamma=0.1, B=4, P=2, S=100)
    assert kb.bound(1, t) == pytest.approx((0.6 + 0.0125) / 0.9975)
    assert kb.k_opt(t) == 1 and not kb.k_opt_above_one(t)


def test_step_size_conditions():
    # (3.41): 1 >= (L gamma)^2 (K + 1)(K - 2) / 2 + L gamma K.
    assert kb.x_max(1) == 1.0
    assert kb.x_max(2) == pytest.approx(0.5)
    assert kb.x_max(4) == pytest.approx(0.2)  # 5 x^2 + 4 x = 1
    x16 = kb.x_max(16)
    assert 119 * x16 ** 2 + 16 * x16 == pytest.approx(1.0)
    assert kb.k_max(1.0, 0.2) == 4 and kb.k_max(1.0, 0.21) == 3 and kb.k_max(1.0, 0.5) == 2
    assert kb.gamma_admissible(10.0, [1, 2, 4]) == pytest.approx(0.02)
    s = kb.Setting(L=10.0, M=1.0, gap=1.0, gamma=0.2, B=1, P=1, S=10)  # L gamma = 2: no delta in (0, 1)
    assert math.isnan(kb.delta_of(s)) and math.isnan(kb.bound(2, s)) and math.isnan(kb.k_opt(s, [1, 2]))
    assert not kb.conditions_hold(1, s)
    assert kb.conditions_hold(4, kb.Setting(L=1.0, M=1.0, gap=1.0, gamma=0.2, B=1, P=1, S=10))


def test_sufficient_condition_is_b2_below_b1():
    # (3.47) is exactly B(2) < B(1) (the paper's (3.42) has 1/3 where substituting (3.45) gives 1/2).
    rng = random.Random(0)
    seen = set()
    for _ in range(2000):
        s = kb.Setting(L=10 ** rng.uniform(-1, 2), M=10 ** rng.uniform(-2, 3), gap=10 ** rng.uniform(-2, 1),
                       gamma=10 ** rng.uniform(-4, -1), B=rng.choice([1, 16, 32]), P=rng.choice([1, 8, 128]),
                       S=rng.choice([10, 1000, 100000]))
        if not math.isfinite(kb.delta_of(s)):
            continue
        above = kb.k_opt_above_one(s)
        assert above == (kb.bound(2, s) < kb.bound(1, s)) == (kb.delta_of(s) < kb.delta_star(s))
        seen.add(above)
    assert seen == {True, False}


# ---------------------------------------------------------------------------------------------------------------
# The probe against exact quantities
# ---------------------------------------------------------------------------------------------------------------


def test_probe_finds_the_hessian_norm_and_the_gradient_variance():
    import torch

    from hdist.launch import prepare
    from hdist.problems import build_problem

    cfg = prepare(["model=linear", "model.input_shape=[6]", "model.num_classes=1", "dataset.task=regression",
                   "scale=smoke", "scale.n_train=64", "scale.n_test=16", "progress=quiet"])
    problem = build_problem(cfg)
    model = problem.build_model(0)
    est = kb.probe(problem, model, batch_size=8, batches=400, hvp_samples=64, iters=60, seed=1)
    # Exact Hessian of the loss on all 64 samples (a quadratic: the same at every point).
    x, y = problem.data.train[torch.arange(64)]
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    shapes = [p.shape for p in params]

    def loss_of(v):
        out, off = [], 0
        for shp in shapes:
            n = math.prod(shp)
            out.append(v[off:off + n].view(shp))
            off += n
        return problem.data_loss(torch.func.functional_call(model, {k: t for (k, _), t in
                                                                    zip(model.named_parameters(), out)}, (x,)), y)

    H = torch.autograd.functional.hessian(loss_of, flat)
    assert est["L"] == pytest.approx(float(torch.linalg.eigvalsh(H).abs().max()), rel=1e-3)
    # Per-sample gradient variance over the 64 samples (mini-batches of 8 drawn without replacement from them:
    # M / B overstates that variance by (n - 1) / (n - B) = 63 / 56; 400 batches give about 10 % noise).
    G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        problem.data_loss(model(x[i:i + 1]), y[i:i + 1]), params)]) for i in range(64)])
    m_exact = float(((G - G.mean(0)) ** 2).sum(1).mean()) * 56 / 63
    assert est["M"] == pytest.approx(m_exact, rel=0.25)
    with torch.no_grad():
        assert est["F1"] == pytest.approx(float(problem.data_loss(model(x), y)), rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Claims and figures on hand-made tables
# ---------------------------------------------------------------------------------------------------------------


def _rows(run_id: str, cfg: dict, status: str = "done", **metrics) -> list[dict]:
    """Rows of one run: ``test_error`` at start and end, ``train_loss_full`` at update 0 and at the end,
    ``train_s`` and ``updates_total`` when given."""
    base = {"run_id": run_id, "rank": 0, "role": "worker", "wall_s": 0.0, "sim_s": 0.0, "epoch": 0.0, "step": 0,
            "samples": 0, "status": status, "stand_in_for": "", "scale": "small", "seed": 0, "model": "vgg",
            **cfg}
    rows = [{**base, "kind": "eval", "metric": "test_error", "value": 0.9, "updates": 0},
            {**base, "kind": "eval", "metric": "train_loss_full", "value": metrics.get("f0", 2.3), "updates": 0}]
    if "acc" in metrics:
        rows += [{**base, "kind": "eval", "metric": "test_error", "value": 1 - metrics["acc"], "updates": 10},
                 {**base, "kind": "eval", "metric": "train_loss_full", "value": metrics.get("f_end", 1.0),
                  "updates": 10}]
    if "time" in metrics:
        rows.append({**base, "kind": "event", "metric": "train_s", "value": metrics["time"], "updates": 10})
    if "steps" in metrics:
        rows.append({**base, "kind": "comm", "metric": "updates_total", "value": metrics["steps"], "updates": 10})
    return rows


def _fig1_table(asgd_drop: bool = True) -> pd.DataFrame:
    rows = []
    for p in (8, 32, 128):
        rows += _rows(f"k{p}", {"algo": "kavg", "workers": p, "algo.k": 16}, acc=0.90 - 0.01 * (p == 128), time=10.0)
        acc = {8: 0.85, 32: 0.6, 128: 0.1} if asgd_drop else {8: 0.85, 32: 0.86, 128: 0.95}
        rows += _rows(f"d{p}", {"algo": "downpour", "workers": p, "algo.k": 16}, acc=acc[p],
                      time={8: 9.5, 32: 14.0, 128: 25.0}[p])
        if p == 128 and asgd_drop:
            rows += _rows(f"e{p}", {"algo": "eamsgd", "workers": p, "algo.k": 16}, status="diverged")
        else:
            rows += _rows(f"e{p}", {"algo": "eamsgd", "workers": p, "algo.k": 16}, acc=acc[p] - 0.05,
                          time={8: 9.8, 32: 15.0, 128: 26.0}[p])
    return pd.DataFrame(rows)


def test_accuracy_claims_on_a_hand_made_table():
    mod = load_experiment("kavg18-fig1")
    claims = mod.check(_fig1_table())
    assert [c.passed for c in claims] == [True, True, True], [c.to_dict() for c in claims]
    assert "EAMSGD 10.0% (diverged)" in claims[2].measured  # a diverged run is scored at chance
    assert isinstance(mod.plot(_fig1_table()), matplotlib.figure.Figure)
    assert "| 128 |" in mod.tables(_fig1_table())["accuracy"]
    flat = mod.check(_fig1_table(asgd_drop=False))
    assert [c.passed for c in flat] == [False, False, False]


def test_speedup_claims_on_a_hand_made_table():
    mod = load_experiment("kavg18-fig3")
    df = _fig1_table(asgd_drop=False)
    claims = mod.check(df)
    # Downpour 9.5 / 10 -> 14 / 10 -> 25 / 10; EAMSGD 9.8 / 10 -> 1.5 -> 2.6: growing, 2.5 and 2.6 at P = 128.
    assert [c.passed for c in claims[:2]] == [True, True], [c.to_dict() for c in claims]
    assert "Downpour 2.50" in claims[1].measured and "EAMSGD 2.60" in claims[1].measured
    assert claims[2].passed is True and "Downpour 0.950" in claims[2].measured
    assert isinstance(mod.plot(df), matplotlib.figure.Figure)


def _k_table(kopt: dict[int, int], l_est: float = 75.0) -> pd.DataFrame:
    rows = []
    for p, best in kopt.items():
        for k in (1, 2, 4, 16):
            acc = 0.9 - 0.02 * abs(math.log2(k) - math.log2(best)) * (1 + p / 8)
            rows += _rows(f"p{p}k{k}", {"algo": "kavg", "workers": p, "algo.k": k, "algo.batch_size": 32,
                                        "algo.lr": 0.1}, acc=acc, steps=1000, f0=2.3, f_end=0.3)
    probe = {"run_id": "probe", "kind": "event", "updates": 0, "status": "done", "algo": "kavg_probe", "workers": 1}
    rows += [{**probe, "metric": "probe/L", "value": l_est}, {**probe, "metric": "probe/M", "value": 50.0}]
    return pd.DataFrame(rows)


def test_k_sweep_claims_and_bound_on_a_hand_made_table():
    fig5, fig6 = load_experiment("kavg18-fig5"), load_experiment("kavg18-fig6")
    vgg_like = _k_table({8: 16, 32: 4, 128: 2})
    claims = fig5.check(vgg_like)
    assert [c.passed for c in claims[:3]] == [True, True, True], [c.to_dict() for c in claims]
    # Theorem 3.4 by hand: L = 75, M = 50 (the probe rows), gap = 2.3 - 0.3, S = 1000, B = 32. gamma = 0.1 gives
    # L gamma = 7.5, outside (3.41): the bound is taken at the largest gamma (3.41) admits for K in {1, 2, 4, 16}.
    gamma = kb.gamma_admissible(75.0, [1, 2, 4, 16])
    assert gamma == pytest.approx(kb.x_max(16) / 75.0)
    pred = {p: kb.k_opt(kb.Setting(L=75.0, M=50.0, gap=2.0, gamma=gamma, B=32, P=p, S=1000), [1, 2, 4, 16])
            for p in (8, 32, 128)}
    theory = claims[3]
    assert "violates (3.41)" in theory.measured
    assert "predicted K_opt " + ", ".join(f"P={p}: {k}" for p, k in pred.items()) in theory.measured
    assert theory.passed is all(k > 1 for k in pred.values())
    # nin: K_opt = 1 at every P but one in four (the paper: all but P = 8).
    assert fig6.check(_k_table({8: 8, 16: 1, 32: 1, 64: 1, 128: 1}))[0].passed is True
    assert fig6.check(_k_table({8: 8, 16: 4, 32: 1, 64: 1, 128: 1}))[0].passed is False
    assert isinstance(fig5.plot(vgg_like), matplotlib.figure.Figure)
    md = fig5.tables(vgg_like)["k"]
    assert "K_opt Theorem 3.4" in md and "| 8 |" in md
    # Without the kavg_probe arm's rows the figure still draws (a pure function of the table, no probe run on
    # the side) and the theory claim says it was not checked.
    bare = vgg_like[vgg_like["algo"] == "kavg"]
    assert isinstance(fig5.plot(bare), matplotlib.figure.Figure)
    assert fig5.check(bare)[3].passed is None


def test_kavg_probe_run_logs_the_probe_of_w1(tmp_path):
    from hdist.launch import execute, prepare
    from hdist.metrics import load_results
    from hdist.problems import build_problem
    from hdist.types import seed_for

    ovs = ["algo=kavg_probe", "scale=smoke", "scale.n_train=64", "algo.batch_size=8", "algo.batches=4",
           "algo.hvp_samples=16", "algo.iters=3", "progress=quiet"]
    res = execute(prepare([*ovs, f"results_dir={tmp_path}"]), quiet_skip=True)
    assert res.status == "done", res.reason
    df = load_results(tmp_path)
    got = {m.split("/", 1)[1]: v for m, v in zip(df["metric"], df["value"]) if m.startswith("probe/")}
    cfg = prepare(ovs)
    problem = build_problem(cfg)
    want = kb.probe(problem, problem.build_model(seed_for(cfg.seed, 0)), 8, batches=4, hvp_samples=16, iters=3,
                    seed=cfg.seed, eval_samples=min(int(cfg.log.eval_max_samples), 1024))
    assert got["L"] > 0 and got["M"] > 0
    for k in ("L", "M", "F1", "grad_norm_sq"):
        assert got[k] == pytest.approx(want[k], rel=1e-6), k


def test_gap_claims_on_a_hand_made_table():
    rows = []
    for model, acc_sgd, accs in (("vgg", 0.92, {8: 0.91, 64: 0.84}), ("nin", 0.90, {8: 0.905, 64: 0.895})):
        rows += _rows(f"{model}-sgd", {"algo": "sgd", "workers": 1, "model": model}, acc=acc_sgd, time=80.0)
        for p, a in accs.items():
            rows += _rows(f"{model}-{p}", {"algo": "kavg", "workers": p, "model": model, "algo.k": 16}, acc=a,
                          time=80.0 / (0.9 * p))
    mod = load_experiment("kavg18-fig7")
    claims = mod.check(pd.DataFrame(rows))
    assert [c.passed for c in claims] == [True, True, True], [c.to_dict() for c in claims]
    assert "P=64: +8.0" in claims[0].measured and "P=8: -0.5" in claims[1].measured
    assert isinstance(mod.plot(pd.DataFrame(rows)), matplotlib.figure.Figure)


# ---------------------------------------------------------------------------------------------------------------
# Every stem at smoke scale
# ---------------------------------------------------------------------------------------------------------------


# Smoke reproduces are slow tests (make test-slow, run by CI): ~5-9 s each here.
@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_stem_reproduces_at_smoke_scale(cli, tmp_path, stem):
    code, out, err = cli("reproduce", stem, "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    assert (tmp_path / "figures" / f"{stem}.png").stat().st_size > 0
    claims = json.loads((tmp_path / stem / "claims.json").read_text())
    assert claims and all({"claim", "paper", "measured", "passed"} <= set(c) for c in claims)
    assert list((tmp_path / "figures").glob(f"{stem}-*.md"))
    status = [json.loads(p.read_text())["status"] for p in (tmp_path / stem).glob("*/status.json")]
    assert status and all(s in ("done", "diverged") for s in status)


# ---------------------------------------------------------------------------------------------------------------
# The issue's sweep: hdist run -m algo=kavg algo.k=... topology.workers=... backend=sim, resumable
# ---------------------------------------------------------------------------------------------------------------


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("adhoc/*/status.json"))


def _sweep(cli, tmp_path, ks: str, ps: str, n: int, *extra: str):
    args = ("run", "-m", "algo=kavg", f"algo.k={ks}", f"topology.workers={ps}", "backend=sim", "scale=smoke",
            *extra, "progress=quiet", f"results_dir={tmp_path}")
    code, _, err = cli(*args)
    assert code == 0, err
    runs = _run_dirs(tmp_path)
    assert len(runs) == n
    assert all(json.loads((r / "status.json").read_text())["status"] == "done" for r in runs)
    stamps = {r: (r / "metrics-r0.parquet").stat().st_mtime_ns for r in runs}
    code, _, err = cli(*args)  # the rerun skips every finished run and rewrites nothing
    assert code == 0 and f"{n} skipped" in err, err
    assert {r: (r / "metrics-r0.parquet").stat().st_mtime_ns for r in _run_dirs(tmp_path)} == stamps
    return runs


def test_k_by_p_sweep_runs_and_resumes(cli, tmp_path):
    # The issue's line on a 2 x 2 corner of its grid, on 256 samples: seconds.
    _sweep(cli, tmp_path, "1,4", "2,8", 4, "scale.n_train=256")


@pytest.mark.slow
def test_the_issue_sweep_line_at_smoke_scale(cli, tmp_path):
    # The issue's exact grid: 6 K x 5 P = 30 runs of the default MLP at smoke scale (minutes: 128 learners).
    runs = _sweep(cli, tmp_path, "1,2,4,16,32,64", "8,16,32,64,128", 30)
    from hdist.metrics import load_results

    df = load_results(tmp_path)
    assert set(df["workers"].unique()) == {8, 16, 32, 64, 128}
    assert set(df["algo.k"].unique()) == {1, 2, 4, 16, 32, 64}
    assert len(runs) == 30
