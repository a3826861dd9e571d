"""Downpour SGD and EAMSGD (kavg18's asynchronous baselines): hand-checked steps, serial
equivalence, parallel runs on the shared-memory backends, straggler injection."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from hdist.algos import downpour, eamsgd
from hdist.algos._ps import FlatModel
from hdist.launch import execute, prepare
from hdist.metrics import load_results
from hdist.runtime import TimedComm
from hdist.types import ConfigError

# Pinned sizes (whatever scale=smoke holds): 512 samples, 2 epochs, batch 10 -> 52 steps per worker of 2.
SMOKE = ["scale=smoke", "scale.n_train=512", "scale.epochs=2", "progress=quiet"]


def run(tmp_path, *overrides: str):
    res = execute(prepare([*SMOKE, f"results_dir={tmp_path}", *overrides]))
    assert res.status == "done", res.reason
    return load_results(tmp_path)


def train_curve(df):
    tl = df[(df.metric == "train_loss") & (df["rank"] == 0)].sort_values("step")
    return tl.step.tolist(), tl.value.tolist()


# --- (a) K=1, one worker: serial SGD step for step -----------------------------------------------


@pytest.fixture(scope="module")
def sgd_curve(tmp_path_factory):
    return train_curve(run(tmp_path_factory.mktemp("sgd"), "algo=sgd", "log.train_every=1"))


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_downpour_k1_one_worker_is_serial_sgd(tmp_path, sgd_curve, backend):
    steps, values = train_curve(run(tmp_path, "algo=downpour", "algo.k=1", f"backend={backend}",
                                    "log.train_every=1"))
    assert steps == sgd_curve[0] and len(steps) > 50
    assert max(abs(a - b) for a, b in zip(values, sgd_curve[1])) < 1e-5


# --- fakes for one worker's loop ---------------------------------------------------------------


class FakeComm:
    """A parameter store for one worker; ``others`` are pushes by other workers, applied just
    before this worker's n-th push (to see staleness and the fetch of their updates)."""

    n_workers, worker_index, has_server, virtual_time = 1, 0, False, False

    def __init__(self, x0, others=None):
        self.x = torch.tensor(x0, dtype=torch.float32)
        self.version = 0
        self.others = dict(others or {})
        self.pushes: list[tuple[list[float], int]] = []

    def now(self):
        return 0.0

    def compute_done(self, samples, work=1.0):
        return None

    def sleep(self, s):
        return None

    def pull(self, out, consistent=True):
        out.copy_(self.x)
        return self.version

    def push(self, delta, version, consistent=True):
        if len(self.pushes) in self.others:
            self.x += torch.tensor(self.others[len(self.pushes)])
            self.version += 1
        self.pushes.append((delta.tolist(), version))
        staleness = self.version - version
        self.x += delta
        self.version += 1
        return staleness

    def push_pull(self, delta, version, out):
        staleness = self.push(delta, version)
        return staleness, self.pull(out)


class FakeWorker:
    def __init__(self, batches):
        self._batches = batches
        self.step = 0
        self.spe_local = self.spe_global = 100
        self.steps: list[tuple[float, int, int | None]] = []
        self.pulls: list[int] = []

    def batches(self):
        for x, y in self._batches:
            self.step += 1
            yield torch.tensor([x], dtype=torch.float32), torch.tensor([y], dtype=torch.float32)

    def pulled(self, version, flat, snaps):
        self.pulls.append(version)

    def reg_to_log(self):
        return None

    def log_step(self, loss, updates, staleness, reg=None):
        self.steps.append((loss.item(), updates, staleness))


def fake_setup(w0, batches, l2=0.0, comm=None, **algo):
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([w0]))
    fm = FlatModel(model)
    problem = SimpleNamespace(l2=l2, data_loss=lambda out, y: 0.5 * (out.squeeze(1) - y).pow(2).mean())
    log = SimpleNamespace(updates=0, rows=[])
    log.log = lambda kind, metric, value: log.rows.append((kind, metric, value))
    cfg = OmegaConf.create({"algo": {"schedule": "constant", "beta": 0.0, **algo}, "log": {"evals_per_epoch": 1}})
    ctx = SimpleNamespace(cfg=cfg, comm=TimedComm(comm or FakeComm(w0), log), log=log, extra={})
    return ctx, problem, fm, FakeWorker(batches)


def dot(a, b):
    return sum(p * q for p, q in zip(a, b))


def grad(w, x, y, l2=0.0):
    """d/dw of 0.5 (w.x - y)^2 + (l2/2)|w|^2."""
    r = dot(w, x) - y
    return [r * xi + l2 * wi for wi, xi in zip(w, x)]


def axpy(a, x, y):
    return [a * p + q for p, q in zip(x, y)]


def close(a, b, tol=1e-5):
    return all(math.isclose(p, q, abs_tol=tol) for p, q in zip(a, b))


# --- (b) one Downpour K=3 cycle by hand --------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["engine", "public-call"])
@pytest.mark.parametrize("scale", [None, -0.05])
def test_flat_model_grad_is_torch_autograd_grad_bit_for_bit(monkeypatch, fast, scale):
    """FlatModel.grad seeds the backward pass with the scale and calls the engine directly (the
    fast path), or torch.autograd.grad (older torches): both give the bits of
    torch.autograd.grad(scale * loss), concatenated in parameter order."""
    from hdist.algos import _ps

    if not fast:
        monkeypatch.setattr(_ps, "_run_backward", None)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    fm = FlatModel(model)
    x, y = torch.randn(4, 6), torch.randint(0, 3, (4,))

    def loss():
        return torch.nn.functional.cross_entropy(fm.model(x), y)

    want = torch.autograd.grad(loss() if scale is None else scale * loss(), fm.params)
    got = fm.grad(loss(), scale=scale)
    assert got.shape == (fm.numel,)
    assert torch.equal(got, torch.cat([g.reshape(-1) for g in want]))
    with pytest.raises(ValueError, match="must be a scalar"):
        fm.grad(torch.nn.functional.cross_entropy(fm.model(x), y, reduction="none"))


def test_downpour_k3_cycle_by_hand():
    w0, lr, l2 = [0.5, -0.25], 0.1, 0.1
    data = [([1.0, 2.0], 1.0), ([-1.0, 0.5], 0.0), ([2.0, -1.0], 2.0), ([0.5, 0.5], -1.0)]
    other = [0.3, -0.2]  # another worker's push, landing between this worker's fetch and its push
    comm = FakeComm(w0, others={0: other})
    ctx, problem, fm, w = fake_setup(w0, data, l2=l2, comm=comm, lr=lr, k=3, momentum=0.0)
    downpour.worker_loop(ctx, problem, fm, w, None)

    # Three local steps on the local copy, each from the previous one; delta accrues them.
    x = list(w0)
    for xs, y in data[:3]:
        x = axpy(-lr, grad(x, xs, y, l2), x)
    delta = [a - b for a, b in zip(x, w0)]
    fetched = [a + b + c for a, b, c in zip(w0, other, delta)]  # x <- x + delta, then x_i <- x
    # The fourth step starts from the fetched x; its delta is pushed at the end (remainder).
    rem = [-lr * g for g in grad(fetched, *data[3], l2)]

    assert len(comm.pushes) == 2
    assert close(comm.pushes[0][0], delta) and comm.pushes[0][1] == 0
    assert close(comm.pushes[1][0], rem) and comm.pushes[1][1] == 2  # from the version it fetched
    assert close(comm.x.tolist(), [a + b for a, b in zip(fetched, rem)])
    assert [s[2] for s in w.steps] == [None, None, 1, None]  # staleness: the other worker's push
    assert [s[1] for s in w.steps] == [0, 0, 2, 2]  # updates of x seen by this worker
    assert w.pulls == [0, 2]  # the first fetch, then the one after the push
    assert ("comm", "staleness", 0) in ctx.log.rows  # the remainder push
    # The logged losses are at the local copy the gradient was taken at (step 2: after step 1).
    x1 = axpy(-lr, grad(w0, *data[0], l2), w0)
    assert math.isclose(w.steps[1][0], 0.5 * (dot(x1, data[1][0]) - data[1][1]) ** 2, rel_tol=1e-5)


# --- (c) one EAMSGD elastic exchange and one Nesterov step by hand -----------------------------


def test_eamsgd_exchange_and_nesterov_step_by_hand():
    c0 = [1.5, -1.25]  # the centre x~; the worker starts from it (x_i = x~, v_i = 0)
    lr, delta, alpha = 0.1, 0.5, 0.25
    data = [([1.0, 2.0], 1.0), ([-1.0, 0.5], 0.0), ([2.0, -1.0], 2.0)]
    other = [0.3, -0.2]  # another worker's push, landing between this worker's read of x~ and its push at t=2
    comm = FakeComm(c0, others={1: other})
    ctx, problem, fm, w = fake_setup([0.0, 0.0], data, comm=comm, lr=lr, k=2, momentum=delta, alpha=alpha,
                                     elastic_beta=0.9)
    eamsgd.worker_loop(ctx, problem, fm, w, None)

    # t=0 (tau | 0): the exchange is trivial (x_i = x~); Nesterov step from v = 0.
    v1 = [-lr * g for g in grad(c0, *data[0])]
    x1 = [a + b for a, b in zip(c0, v1)]
    # t=1: no exchange; the gradient at the look-ahead x_1 + delta v_1.
    look1 = axpy(delta, v1, x1)
    v2 = axpy(delta, v1, [-lr * g for g in grad(look1, *data[1])])
    x2 = [a + b for a, b in zip(x1, v2)]
    # t=2 (tau | 2): read x~ = c0, e = alpha (x_2 - x~), x_i -= e, x~ += e; the gradient is at the
    # look-ahead of x_2 before the exchange (x <- x_i comes first in the paper's box).
    look2 = axpy(delta, v2, x2)
    e2 = [alpha * (a - b) for a, b in zip(x2, c0)]
    v3 = axpy(delta, v2, [-lr * g for g in grad(look2, *data[2])])
    x3 = [a - b + c for a, b, c in zip(x2, e2, v3)]
    c3 = [a + b + c for a, b, c in zip(c0, other, e2)]
    # End (t=3): the last exchange brings the last local step to the centre.
    e3 = [alpha * (a - b) for a, b in zip(x3, c3)]

    assert len(comm.pushes) == 3
    assert close(comm.pushes[0][0], [0.0, 0.0]) and comm.pushes[0][1] == 0
    assert close(comm.pushes[1][0], e2) and comm.pushes[1][1] == 1
    assert close(comm.pushes[2][0], e3) and comm.pushes[2][1] == 3
    assert close(comm.x.tolist(), [a + b for a, b in zip(c3, e3)])
    assert [s[2] for s in w.steps] == [0, None, 1]  # staleness of each exchange's push
    assert [s[1] for s in w.steps] == [1, 1, 3]  # updates of x~ seen by this worker
    assert math.isclose(w.steps[1][0], 0.5 * (dot(look1, data[1][0]) - data[1][1]) ** 2, rel_tol=1e-5)
    assert math.isclose(w.steps[2][0], 0.5 * (dot(look2, data[2][0]) - data[2][1]) ** 2, rel_tol=1e-5)
    # alpha = null: beta / p (the paper's beta = 0.9).
    assert eamsgd.moving_rate(OmegaConf.create({"alpha": None, "elastic_beta": 0.9}), 4) == pytest.approx(0.225)


def test_config_rules(tmp_path):
    for bad in (["algo=eamsgd", "algo.alpha=0.0"], ["algo=eamsgd", "algo.alpha=1.5"],
                ["algo=eamsgd", "algo.elastic_beta=0.0"], ["algo=downpour", "algo.momentum=0.9"],
                ["algo=downpour", "algo.k=0"]):
        with pytest.raises(ConfigError):
            prepare([*SMOKE, f"results_dir={tmp_path}", *bad])


# --- (d) two workers on the shared-memory backends -------------------------------------------


@pytest.mark.parametrize("algo", ["downpour", "eamsgd"])
@pytest.mark.parametrize("backend", ["thread", "process"])
def test_two_workers(tmp_path, algo, backend):
    df = run(tmp_path, f"algo={algo}", f"backend={backend}", "topology.workers=2", "algo.k=2")
    ev = df[df.metric == "train_loss_full"].sort_values("updates")
    assert ev.value.iloc[-1] < ev.value.iloc[0]
    st = df[df.metric == "staleness"]
    assert set(st["rank"]) == {0, 1} and (st.value >= 0).all()
    steps = df[(df.metric == "updates_total")].value
    assert sorted(steps.tolist()) == [52, 52]  # 2 epochs of a 256-sample shard, batch 10


# --- (e) straggler injection ---------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["downpour", "eamsgd"])
def test_straggler_worker_0_only(tmp_path, algo):
    df = run(tmp_path, f"algo={algo}", "backend=thread", "topology.workers=2", "algo.k=2",
             "topology.straggler.workers=[0]", "topology.straggler.p=1.0", "topology.straggler.m=[1.0,1.0]")
    ev = df[df.metric == "straggle_s"]
    assert set(ev["rank"]) == {0} and len(ev) == 52 and (ev.value > 0).all()


@pytest.mark.slow  # a benchmark's plumbing at smoke scale: minutes on a loaded 2-core box (make test-slow)
def test_bench_flat_grad_reproduces_at_smoke(cli, tmp_path):
    code, out, err = cli("reproduce", "bench-flat-grad", "scale=smoke", "algo.steps=30", "algo.warmup_steps=5",
                         "algo.reps=2", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    assert (tmp_path / "figures" / "bench-flat-grad.png").exists()
    # the MLP carries the goal; CIFAR10-full is reported beside it; both sides timed every repetition
    assert "mlp: FlatModel.grad costs <= 1.0x the public autograd call" in out and "2 and 2 reps" in out
    assert "for reference, cifar10_full" in out
