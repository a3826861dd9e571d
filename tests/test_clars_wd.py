"""CLARS with weight decay: the per-sample norms of eq. (4.7) carry wd w as the gradient does (issue 25.5).

On a batch of one sample, the mean per-sample norm is the norm of the batch gradient, so CLARS's
rate (4.7) is LARS's (4.3) exactly, with or without weight decay, once both denominators use
the same gradient g + wd w.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hdist.launch import execute, prepare
from hdist.metrics import load_results
from hdist.optim import CLARS, LARS, SampleGradStats


def _mse(out, y):
    return ((out.squeeze(-1) - y) ** 2).mean()


@pytest.mark.parametrize("wd", [0.0, 0.5])
def test_clars_on_one_sample_is_lars(wd):
    torch.manual_seed(0)
    x, y = torch.randn(1, 5), torch.randn(1)
    rates = {}
    for rule in ("lars", "clars"):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1))
        if rule == "lars":
            opt = LARS(model.parameters(), lr=0.1, eta=0.01, momentum=0.0, weight_decay=wd)
        else:
            opt = CLARS(model.parameters(), lr=0.1, eta=0.01, momentum=0.0, weight_decay=wd)
        _mse(model(x), y).backward()
        kwargs = {}
        if rule == "clars":
            s = SampleGradStats(model, _mse, opt.ordered_params(), weight_decay=wd)(x, y)
            kwargs["sample_norms"] = [float(v) / s["n"] for v in s["norm_sum"]]
        opt.step(**kwargs)
        rates[rule] = [opt.state[p]["lr"] for p in opt.ordered_params()]
    assert rates["clars"] == pytest.approx(rates["lars"], rel=1e-5)


def test_sample_norms_include_weight_decay():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    x, y = torch.randn(2, 3), torch.randn(2)
    wd = 0.3
    s = SampleGradStats(model, _mse, list(model.parameters()), weight_decay=wd)(x, y)
    w = model.weight.detach()
    want = 0.0
    for i in range(2):
        g = 2 * (x[i] @ w[0] - y[i]) * x[i]  # grad of (x_i'w - y_i)^2
        want += float((g + wd * w[0]).norm())
    assert float(s["norm_sum"][0]) == pytest.approx(want, rel=1e-5)


def test_dp_clars_equals_lars_at_batch_one_with_weight_decay(tmp_path):
    common = ["scale=smoke", "scale.n_train=24", "scale.n_test=8", "scale.epochs=1", "progress=quiet",
              "log.train_every=1", "log.evals_per_epoch=1", "model=mlp", "model.hidden=[6]", "objective.l2=0.05",
              "algo.batch_size=1", "algo.accum_steps=1", "algo.budget_gflop=null", "algo.momentum=0.9", "algo.eta=0.01",
              "algo.schedule=constant", "algo.base_batch=null", "algo.lr=1.0"]
    losses = {}
    for rule in ("lars", "clars"):
        ovs = [*common, f"algo={rule}", f"results_dir={tmp_path / rule}"]
        if rule == "clars":
            ovs.append("algo.subsample=null")
        res = execute(prepare(ovs), quiet_skip=True)
        assert res.status == "done", res.reason
        df = load_results(tmp_path / rule)
        losses[rule] = df[df["metric"] == "train_loss"].sort_values("step")["value"].to_numpy()
    assert len(losses["lars"]) == 24
    assert losses["clars"] == pytest.approx(losses["lars"], rel=1e-4)
