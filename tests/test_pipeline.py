"""The pipeline executor and BP / DDG (thesis Alg. 9-10) / Features Replay (Alg. 11) / DNI.

- K = 1: DDG and FR are BP bit for bit (serial, the real launch path);
- DDG's delays (eq. 5.8) and FR's replay (eqs. 6.7-6.9) on a 3-stage linear model against the
  boxes unrolled by hand in matrix form;
- DNI's synthesizer: shapes, and that it learns to predict the error gradient;
- serial, process and sim give the same parameters for BP and for DDG at K = 2 (the rules are
  stated in iterations, not timing), torchdist too (slow);
- every algorithm runs from the CLI on process (ResNet-8, 2 stages), serial and sim (3 stages) and
  torchdist (slow), and logs its measurements; Features Replay holds more than BP (its input
  history), DDG more than FR (K graphs); BP's sigma is 1;
- bad stage configurations are config errors.
"""

from __future__ import annotations

import dataclasses
import time
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from hdist.algos import _pipeline as P
from hdist.launch import execute, prepare
from hdist.metrics import read_run_metrics
from hdist.runtime import TimedComm
from hdist.types import ConfigError

ALGOS = ("bp", "ddg", "fr", "dni")
TINY = ["scale=smoke", "scale.n_train=192", "scale.n_test=64", "progress=quiet", "log.train_every=1",
        "algo.batch_size=32"]
SAME_OPT = ["algo.optimizer=adam", "algo.lr=0.001", "algo.momentum=0.0", "algo.schedule=constant", "algo.sigma_every=0"]
TIMING = ("forward_s", "backward_s", "wait_s", "peak_mem_bytes", "eval_s", "train_s")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# --- hand-unrolled boxes on a 3-stage linear model ------------------------------------------------


class _Data:
    def __init__(self, xs, ys):
        self.xs, self.ys = xs, ys

    def x(self, s):
        return self.xs[s]

    def y(self, s):
        return self.ys[s]

    def size(self, s):
        return int(self.xs[s].shape[0])


class _Log:
    def __init__(self):
        self.rows = []

    def log(self, kind, metric, value, wall_s=None):
        self.rows.append((metric, value))

    def log_many(self, kind, values):
        for k, v in values.items():
            self.log(kind, k, v)


def _sq_loss(o, y):
    return 0.5 * ((o - y) ** 2).sum(1).mean()


def _stages(stage_cls, modules, xs, ys, optimizer="sgd", lr=0.1, loss=_sq_loss, loss_name="squared"):
    """The stages of ``modules`` on in-memory links (a world of one rank), outside any backend."""
    algo = {"optimizer": optimizer, "lr": lr, "momentum": 0.0, "optimizer_args": {}}
    cfg = OmegaConf.create({"seed": 0, "algo": algo})
    problem = types.SimpleNamespace(l2=0.0, data_loss=loss, loss_name=loss_name)
    comm = TimedComm(types.SimpleNamespace(now=time.perf_counter, virtual_time=False,
                                           compute_done=lambda samples, work=1.0: None))
    ins, outs, flops = P.profile(modules, xs[0][:1])
    env = P.Env(cfg, comm, _Log(), P.MemoryLinks(), _Data(xs, ys), problem, modules, ins, outs, flops)
    return env, [stage_cls(env, k) for k in range(len(modules))]


def _train(env, stages, T, lr):
    for t in range(T):
        for st in stages:
            st.forward(t)
        for st in reversed(stages):
            st.backward(t, lr)
    for st in stages:
        st.finish(T)
    assert env.links.pending() == 0


def _linear3(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (3, 3), (2, 3)]
    ws = [torch.randn(*s, generator=g, dtype=torch.float64) * 0.5 for s in shapes]
    mods = []
    for w in ws:
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False).double()
        with torch.no_grad():
            lin.weight.copy_(w)
        mods.append(nn.Sequential(lin))
    return [w.clone() for w in ws], mods


def _batches(T, n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return ([torch.randn(n, 4, generator=g, dtype=torch.float64) for _ in range(T)],
            [torch.randn(n, 2, generator=g, dtype=torch.float64) for _ in range(T)])


def _grads(W, X, Y):
    """Backpropagation of f = 1/2 mean ||X W1' W2' W3' - Y||^2, written out (eqs. 5.3-5.5)."""
    W1, W2, W3 = W
    H1 = X @ W1.T
    H2 = H1 @ W2.T
    O = H2 @ W3.T
    dO = (O - Y) / X.shape[0]
    dH2 = dO @ W3
    dH1 = dH2 @ W2
    return [dH1.T @ X, dH2.T @ H1, dO.T @ H2]


class _Adam:
    """Algorithm 10, lines 4-8, per module."""

    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.m, self.v, self.t = lr, b1, b2, eps, None, None, 0

    def step(self, w, g):
        self.m = (1 - self.b1) * g if self.m is None else self.b1 * self.m + (1 - self.b1) * g
        self.v = (1 - self.b2) * g * g if self.v is None else self.b2 * self.v + (1 - self.b2) * g * g
        self.t += 1
        mh, vh = self.m / (1 - self.b1 ** self.t), self.v / (1 - self.b2 ** self.t)
        return w - self.lr * mh / (vh.sqrt() + self.eps)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ddg_delays_match_algorithm_9_and_10_unrolled(optimizer):
    from hdist.algos.ddg import DDGStage

    T, K, lr = 7, 3, 0.05
    W, mods = _linear3()
    xs, ys = _batches(T)
    env, stages = _stages(DDGStage, mods, xs, ys, optimizer=optimizer, lr=lr)
    _train(env, stages, T, lr)

    history = [list(W)]  # w^t of every module, t = 0..T
    adams = [_Adam(lr) for _ in range(K)]
    for t in range(T):
        new = []
        for k in range(K):  # module k+1 of the thesis: delay K-(k+1)
            s = t - (K - 1 - k)
            # eq. 5.8: the gradient of batch s at the weights of iteration s, 0 while s < 0
            g = _grads(history[s], xs[s], ys[s])[k] if s >= 0 else torch.zeros_like(W[k])
            w = history[t][k]
            new.append(w - lr * g if optimizer == "sgd" else adams[k].step(w, g))
        history.append(new)
    for k in range(K):
        got = stages[k].params[0].detach()
        assert torch.allclose(got, history[T][k], rtol=1e-11, atol=1e-13), (k, (got - history[T][k]).abs().max())
    # The delays matter: plain backpropagation of the same batches ends elsewhere.
    W_bp = list(W)
    for t in range(T):
        W_bp = [w - lr * g for w, g in zip(W_bp, _grads(W_bp, xs[t], ys[t]))]
    if optimizer == "sgd":
        assert not torch.allclose(stages[0].params[0].detach(), W_bp[0], rtol=1e-6)


def test_features_replay_matches_algorithm_11_unrolled():
    from hdist.algos.fr import FRStage

    T, lr = 7, 0.05
    W, mods = _linear3()
    xs, ys = _batches(T)
    env, stages = _stages(FRStage, mods, xs, ys, lr=lr)
    _train(env, stages, T, lr)

    W1, W2, W3 = W
    H1, H2 = {}, {}  # the play's activations, stored by the modules above (line 5)
    to2, to1 = {}, {}  # error gradients sent down in iteration t (line 14), used at t + 1 (eq. 6.7)
    for t in range(T):
        n = xs[t].shape[0]
        H1[t] = xs[t] @ W1.T  # play (lines 6-7) with the current weights
        H2[t] = H1[t] @ W2.T
        O = H2[t] @ W3.T
        dO = (O - ys[t]) / n
        g3 = dO.T @ H2[t]  # module 3: its replay input is this iteration's
        to2[t] = dO @ W3  # d f / d h_2 at w_3^t
        g2 = torch.zeros_like(W2)
        if t - 1 >= 0:  # module 2 replays h_1^{t-1} through w_2^t with the gradient module 3 sent at t - 1
            delta = to2[t - 1]
            g2 = delta.T @ H1[t - 1]
            to1[t] = delta @ W2  # the replay's input gradient: at the current w_2^t, not w_2^{t-1}
        g1 = torch.zeros_like(W1)
        if t - 2 >= 0:  # module 1 replays x^{t-2} with the gradient module 2 sent at t - 1
            g1 = to1[t - 1].T @ xs[t - 2]
        W1, W2, W3 = W1 - lr * g1, W2 - lr * g2, W3 - lr * g3
    for k, want in enumerate((W1, W2, W3)):
        got = stages[k].params[0].detach()
        assert torch.allclose(got, want, rtol=1e-11, atol=1e-13), (k, (got - want).abs().max())


def test_features_replay_recomputes_with_current_weights_and_keeps_batchnorm_statistics():
    """A replay equals a fresh forward of the stored input through the current weights, and leaves
    BatchNorm's running statistics as the play left them."""
    from hdist.algos.fr import FRStage

    torch.manual_seed(0)
    mods = [nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU()), nn.Sequential(nn.Linear(6, 2))]
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(8, 4, generator=g) for _ in range(4)]
    ys = [torch.randn(8, 2, generator=g) for _ in range(4)]
    env, stages = _stages(FRStage, mods, xs, ys, lr=0.1)
    s0 = stages[0]
    for t in range(2):
        for st in stages:
            st.forward(t)
        if t == 1:
            # Stage 1 replays x^0 at t = 1 with the error gradient stage 2 sent at t = 0 (first in
            # its link): recompute that by hand, a fresh forward through the current weights.
            bn_before = [b.clone() for b in s0.buffers]
            stages[1].backward(t, 0.1)
            delta = env.links._q[(1, 0, P.GRAD)][0]
            snapshot = [b.clone() for b in s0.buffers]
            ref = torch.autograd.grad(mods[0](xs[0]), s0.params, delta)
            with torch.no_grad():
                for b, c in zip(s0.buffers, snapshot):
                    b.copy_(c)
            s0.backward(t, 0.0)  # lr 0: look at the gradient only
            for p, r in zip(s0.params, ref):
                assert torch.equal(p.grad, r)
            for b, c in zip(s0.buffers, bn_before):
                assert torch.equal(b, c)
        else:
            for st in reversed(stages):
                st.backward(t, 0.1)


# --- K = 1: DDG and FR are BP --------------------------------------------------------------------


def keep_params(ctx) -> None:
    """The algorithm's rank, then each local stage's final parameters into the run directory."""
    import importlib

    from hdist.algos import ALGOS

    importlib.import_module(ALGOS[ctx.cfg.algo.name]).run(ctx)  # not get_algo: a test patches it
    for k, module in ctx.extra["stages"].items():
        flat = torch.cat([t.detach().reshape(-1) for t in P.state_tensors(module)])
        torch.save(flat.clone(), Path(ctx.run_dir) / f"params-s{k}.pt")


def _run_keeping(monkeypatch, ovs) -> tuple[Path, list[torch.Tensor]]:
    import hdist.algos

    cfg = prepare(ovs)
    real = hdist.algos.get_algo
    algo = real(cfg.algo.name)
    monkeypatch.setattr(hdist.algos, "get_algo", lambda name: dataclasses.replace(
        algo, run=keep_params) if name == cfg.algo.name else real(name))
    try:
        res = execute(cfg, force=True, quiet_skip=True)
    finally:
        monkeypatch.setattr(hdist.algos, "get_algo", real)
    assert res.status == "done", res.reason
    K = int(cfg.topology.stages)
    return res.run_dir, [torch.load(Path(res.run_dir) / f"params-s{k}.pt") for k in range(K)]


def _values(run_dir) -> pd.DataFrame:
    df = read_run_metrics(run_dir).to_pandas()
    df = df[~df["metric"].str.split("/").str[0].isin(TIMING)]
    return df.sort_values(["kind", "metric", "step"], kind="stable")[["kind", "metric", "step", "value"]].reset_index(
        drop=True)


def test_k1_ddg_and_fr_equal_bp_bit_for_bit(tmp_path, monkeypatch):
    runs = {a: _run_keeping(monkeypatch, [*TINY, *SAME_OPT, f"algo={a}", "model=mlp", "model.hidden=[16]",
                                          f"results_dir={tmp_path / a}"]) for a in ("bp", "ddg", "fr")}
    bp_dir, bp_params = runs["bp"]
    for a in ("ddg", "fr"):
        d, params = runs[a]
        assert torch.equal(params[0], bp_params[0]), a
        pd.testing.assert_frame_equal(_values(d), _values(bp_dir), check_exact=True)
    start = prepare([*TINY, "algo=bp", "model=mlp", "model.hidden=[16]"])
    from hdist.problems import build_problem
    from hdist.types import seed_for

    init = torch.cat([p.detach().reshape(-1) for p in P.state_tensors(build_problem(start).build_model(
        seed_for(0, 0)))])
    assert not torch.equal(bp_params[0], init)  # training moved them


def test_bp_at_k1_is_serial_sgd(tmp_path, monkeypatch):
    """BP with one stage and SGD is hdist's serial SGD: same init, order, steps and train losses."""
    ovs = [*TINY, "model=mlp", "model.hidden=[16]", "algo.lr=0.05"]
    bp_dir, _ = _run_keeping(monkeypatch, [*ovs, "algo=bp", "algo.optimizer=sgd", "algo.momentum=0.0",
                                           "algo.sigma_every=0", f"results_dir={tmp_path / 'bp'}"])
    res = execute(prepare([*ovs, "algo=sgd", f"results_dir={tmp_path / 'sgd'}"]), quiet_skip=True)
    bp = read_run_metrics(bp_dir).to_pandas()
    sgd = read_run_metrics(res.run_dir).to_pandas()
    for m in ("train_loss", "test_loss", "train_loss_full"):
        assert bp[bp.metric == m]["value"].tolist() == sgd[sgd.metric == m]["value"].tolist(), m


# --- DNI's synthesizer -----------------------------------------------------------------------------


def test_synthesizer_shapes_and_zero_start():
    from hdist.algos.dni import Synthesizer

    conv = Synthesizer((16, 8, 8), n_classes=10)
    h, y = torch.randn(4, 16, 8, 8), torch.randint(0, 10, (4,))
    assert conv(h, y).shape == h.shape
    assert [m.kernel_size for m in conv.net if isinstance(m, nn.Conv2d)] == [(5, 5)] * 3
    assert [m.padding for m in conv.net if isinstance(m, nn.Conv2d)] == [(2, 2)] * 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in conv.net) == 2
    assert torch.equal(conv(h, y), torch.zeros_like(h))  # the first synthetic gradients are 0
    flat = Synthesizer((12,), n_classes=0, width=7)
    assert flat(torch.randn(5, 12), torch.randn(5)).shape == (5, 12)
    with pytest.raises(ValueError, match=r"\[3, 4\]"):  # a config that cuts there is refused before launch
        Synthesizer((3, 4), n_classes=2)


def test_dni_synthesizer_learns_the_error_gradient():
    """On a two-stage classifier, the synthesizer's relative error ||M - delta||^2 / ||delta||^2 starts
    at 1 (zero output) and falls as it regresses onto the true gradients of the stage above."""
    import torch.nn.functional as F

    from hdist.algos.dni import DNIStage

    torch.manual_seed(0)
    mods = [nn.Sequential(nn.Linear(10, 16), nn.ReLU()), nn.Sequential(nn.Linear(16, 4))]
    teacher = torch.randn(10, 4, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(6)
    T = 100
    xs = [torch.randn(32, 10, generator=g) for _ in range(T)]
    ys = [(x @ teacher).argmax(1) for x in xs]
    env, stages = _stages(DNIStage, mods, xs, ys, optimizer="adam", lr=0.003, loss=F.cross_entropy,
                          loss_name="cross_entropy")
    errs = []
    for t in range(T):
        for st in stages:
            st.forward(t)
        for st in reversed(stages):
            st.backward(t, 0.003)
        errs.append(stages[0].synth_err)
    for st in stages:
        st.finish(T)
    assert errs[1] == pytest.approx(1.0)  # the first regression step starts from M = 0
    late = sum(errs[-50:]) / 50  # measured here: 0.18
    assert late < 0.5, late
    assert stages[0].mem.now == 0  # everything held was freed


# --- the same parameters on every backend ----------------------------------------------------------

PARITY = [*TINY, *SAME_OPT, "model=mlp", "model.hidden=[16,8]", "topology.stages=2",
          "backend.threads_per_rank=1"]


def _parity_runs(tmp_path, monkeypatch, algo, backends):
    out = {}
    for b in backends:
        ovs = [*PARITY, f"algo={algo}", f"backend={b}", f"results_dir={tmp_path / b}"]
        if b in ("serial", "sim"):
            ovs = [o for o in ovs if not o.startswith("backend.threads_per_rank")]
        if b == "sim":
            ovs.append("backend.threads=1")
        out[b] = _run_keeping(monkeypatch, ovs)
    return out


def _assert_same(runs, ref="serial"):
    d0, p0 = runs[ref]
    e0 = _values(d0)
    e0 = e0[e0.kind == "eval"].reset_index(drop=True)
    for b, (d, p) in runs.items():
        for k, (a, c) in enumerate(zip(p, p0)):
            assert torch.equal(a, c), (b, k, (a - c).abs().max())
        e = _values(d)
        e = e[e.kind == "eval"].reset_index(drop=True)
        pd.testing.assert_frame_equal(e, e0, check_exact=True)


@pytest.mark.parametrize("algo", ["bp", pytest.param("ddg", marks=pytest.mark.slow)])
def test_serial_process_sim_same_parameters(tmp_path, monkeypatch, algo):
    runs = _parity_runs(tmp_path, monkeypatch, algo, ["serial", "process", "sim"])
    _assert_same(runs)
    # On K ranks every stage writes its own rows: stage k is rank k.
    ranks = read_run_metrics(runs["process"][0]).to_pandas()
    assert set(ranks[ranks.metric == "forward_s/2"]["rank"]) == {1}
    assert set(ranks[ranks.metric == "train_loss"]["rank"]) == {1}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["bp", "ddg"])
def test_torchdist_same_parameters(tmp_path, monkeypatch, algo):
    _assert_same(_parity_runs(tmp_path, monkeypatch, algo, ["serial", "torchdist"]))


def test_sim_times_follow_the_stage_shares(tmp_path):
    """On the sim a stage's backward costs twice its forward (thesis: T_B ~ 2 T_F), both in virtual time."""
    res = execute(prepare([*TINY, "algo=bp", "model=mlp", "model.hidden=[16,8]", "topology.stages=2",
                           "backend=sim", f"results_dir={tmp_path}"]), quiet_skip=True)
    assert res.status == "done", res.reason
    df = read_run_metrics(res.run_dir).to_pandas()
    last = df.sort_values("step").groupby("metric")["value"].last()
    for k in (1, 2):
        # Both include their share of compute; the backward adds the optimizer step (no virtual cost).
        assert last[f"backward_s/{k}"] == pytest.approx(2 * last[f"forward_s/{k}"], rel=1e-9)
    assert last["wait_s/1"] > 0 and last["wait_s/2"] > 0  # BP locks: each stage waits for the other
    assert df["sim_s"].notna().all()


# --- the CLI, on process, ResNet-8 in two stages ---------------------------------------------------


# bp and ddg in the default suite; fr and dni (the same CLI and backend path) in the slow one
@pytest.mark.parametrize("algo", [a if a in ("bp", "ddg") else pytest.param(a, marks=pytest.mark.slow) for a in ALGOS])
def test_cli_runs_on_process(cli, tmp_path, algo):
    code, out, err = cli("run", f"algo={algo}", "model=resnet8", "backend=process", "topology.stages=2", "scale=smoke",
                         "scale.n_train=64", "scale.n_test=32", "algo.batch_size=16", "algo.sigma_every=2",
                         "log.train_every=2", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    run_dir = next((tmp_path / "adhoc").iterdir())
    df = read_run_metrics(run_dir).to_pandas()
    metrics = set(df.metric)
    for m in ("forward_s", "backward_s", "wait_s", "peak_mem_bytes", "sigma"):
        assert {f"{m}/1", f"{m}/2"} <= metrics, (m, sorted(metrics))
    assert {"train_loss", "test_loss", "test_error"} <= metrics
    assert (df[df.metric.str.startswith("peak_mem_bytes")]["value"] > 0).all()
    if algo == "dni":
        assert "synth_loss/1" in metrics
    sig = df[df.metric == "sigma/2"]["value"]
    assert sig.tolist() == pytest.approx([1.0] * len(sig))  # the last stage's gradient is exact in all four


@pytest.mark.parametrize("backend", ["serial", "sim", pytest.param("torchdist", marks=pytest.mark.slow)])
@pytest.mark.parametrize("algo", ALGOS)
def test_cli_runs_on_every_pipeline_backend(cli, tmp_path, algo, backend):
    code, out, err = cli("run", f"algo={algo}", "model=resnet8", f"backend={backend}", "topology.stages=3",
                         "scale=smoke", "scale.n_train=48", "scale.n_test=32", "algo.batch_size=16",
                         "algo.sigma_every=2", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    df = read_run_metrics(next((tmp_path / "adhoc").iterdir())).to_pandas()
    assert {"forward_s/3", "peak_mem_bytes/1", "sigma/3", "train_loss", "test_error"} <= set(df.metric)
    if backend != "serial":
        assert set(df[df.metric == "forward_s/2"]["rank"]) == {1}


def test_features_replay_holds_more_than_bp_and_ddg_more_than_fr(tmp_path):
    peaks = {}
    for a in ("bp", "ddg", "fr"):
        res = execute(prepare([*TINY, *SAME_OPT, f"algo={a}", "model=resnet8", "topology.stages=2",
                               "scale.n_train=64", "algo.batch_size=16", f"results_dir={tmp_path}"]), quiet_skip=True)
        assert res.status == "done", res.reason
        df = read_run_metrics(res.run_dir).to_pandas()
        peaks[a] = df[df.metric.str.startswith("peak_mem_bytes/")].groupby("metric")["value"].max()
    # The first stage: BP holds one graph; FR its history of K = 2 inputs besides; DDG K graphs.
    assert peaks["bp"]["peak_mem_bytes/1"] < peaks["fr"]["peak_mem_bytes/1"] < peaks["ddg"]["peak_mem_bytes/1"]
    assert peaks["bp"].sum() < peaks["fr"].sum() < peaks["ddg"].sum()


def test_a_finished_run_leaves_no_tensors_behind(tmp_path):
    """DDG's last K-k-1 forwards are never backpropagated; their graphs must still be freed when the
    run ends (a reproduce runs every point in one process: thesis-fig27 small grew to 24 GB)."""
    import gc

    def tensor_ids():
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, torch.Tensor)}

    run = [*TINY, "algo=ddg", "model=resnet8", "topology.stages=3", "scale.n_train=64", "algo.batch_size=16",
           "algo.sigma_every=0", f"results_dir={tmp_path}"]
    assert execute(prepare([*run, "seed=1"]), quiet_skip=True).status == "done"
    before = tensor_ids()
    assert execute(prepare([*run, "seed=2"]), quiet_skip=True).status == "done"
    left = tensor_ids() - before
    assert not left, f"{len(left)} tensors of a finished run are still alive"


def test_sigma_is_one_for_bp_and_measured_for_fr(tmp_path):
    df = {}
    for a in ("bp", "fr"):
        res = execute(prepare([*TINY, f"algo={a}", "model=mlp", "model.hidden=[16,8]", "topology.stages=3",
                               "algo.sigma_every=2", f"results_dir={tmp_path}"]), quiet_skip=True)
        d = read_run_metrics(res.run_dir).to_pandas()
        df[a] = d[d.metric.str.startswith("sigma/")]
    assert len(df["bp"]) and df["bp"]["value"].tolist() == pytest.approx([1.0] * len(df["bp"]))
    fr = df["fr"]
    first = fr[fr.metric == "sigma/1"]["value"]
    assert len(first) and not (first == pytest.approx(1.0)).all()  # stale error gradients: not the exact direction


# --- configuration -------------------------------------------------------------------------------

BAD = [
    (["algo=sgd", "topology.stages=2"], "topology.stages"),
    (["algo=bp", "model=resnet8", "topology.stages=6"], "topology.stages=6"),
    (["algo=bp", "model=resnet8", "topology.stages=2", "algo.cuts=[1,3]"], "algo.cuts"),
    (["algo=bp", "model=resnet8", "topology.stages=2", "algo.cuts=[5]"], "algo.cuts"),
    (["algo=bp", "backend=process", "topology.workers=2"], "topology.workers"),
    (["algo=bp", "backend=thread"], "backend=thread"),
    (["algo=ddg", "algo.optimizer=nesterov"], "algo.optimizer"),
    (["algo=fr", "algo.sigma_every=-1"], "algo.sigma_every"),
]


@pytest.mark.parametrize("overrides,names", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_stage_configs_are_config_errors(overrides, names):
    with pytest.raises(ConfigError) as e:
        prepare(overrides)
    assert names in str(e.value)
    assert "\n" not in str(e.value)


def test_cuts_choose_the_stages():
    cfg = prepare(["algo=dni", "model=resnet8", "topology.stages=2", "algo.cuts=[3]"])
    assert list(cfg.algo.cuts) == [3]
