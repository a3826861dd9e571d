"""Problems: objective, per-sample gradients, evaluation, batch transforms, binary +-1 targets."""

from __future__ import annotations

import torch

from hdist.data import ArrayDataset, DataBundle
from hdist.data.cifar import augment
from hdist.launch import prepare
from hdist.problems import Problem, build_problem


def _bundle(X, y, k, info=None):
    return DataBundle("t", ArrayDataset(X, y), ArrayDataset(X[:4], y[:4]), k, "synthetic", "", info or {})


def test_per_sample_grads_match_a_loop_over_single_samples():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(6, 5, generator=g), torch.randint(0, 3, (6,), generator=g)
    p = Problem(_bundle(X, y, 3), {"name": "mlp", "num_classes": 3, "input_shape": [5], "hidden": [4]},
                "cross_entropy", 0.0)
    model = p.build_model(1)
    ps = p.per_sample_grads(model, X, y)
    for i in range(6):
        model.zero_grad()
        p.data_loss(model(X[i:i + 1]), y[i:i + 1]).backward()
        for name, param in model.named_parameters():
            torch.testing.assert_close(ps[name][i], param.grad)


def test_objective_includes_the_l2_term_and_evaluate_agrees():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 5, generator=g), torch.randint(0, 2, (8,), generator=g)
    p = Problem(_bundle(X, y, 2), {"name": "mlp", "num_classes": 2, "input_shape": [5], "hidden": [3]},
                "cross_entropy", 0.1)
    m = p.build_model(0)
    w2 = sum(float(q.detach().pow(2).sum()) for q in m.parameters())
    expected = float(torch.nn.functional.cross_entropy(m(X), y).detach()) + 0.05 * w2
    assert abs(float(p.objective(m, X, y).detach()) - expected) < 1e-5
    assert abs(p.evaluate(m, p.data.train)["loss"] - expected) < 1e-5


def test_normalisation_and_augmentation_are_applied_to_batches():
    X = torch.rand(4, 3, 8, 8)
    info = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "augment": True, "augment_fn": augment}
    p = Problem(_bundle(X, torch.zeros(4, dtype=torch.long), 10, info),
                {"name": "mlp", "input_shape": [3, 8, 8]}, "cross_entropy", 0.0)
    assert p.has_transform
    torch.testing.assert_close(p.eval_batch(X), (X - 0.5) / 0.25)
    a = p.train_batch(X, torch.Generator().manual_seed(0))
    b = p.train_batch(X, torch.Generator().manual_seed(0))
    assert a.shape == X.shape and torch.equal(a, b)


def test_binary_labels_with_one_output_are_ridge_regression_on_pm1():
    cfg = prepare(["dataset=synthetic", "dataset.num_classes=2", "model=linear", "model.input_shape=[22]",
                   "scale=smoke"])
    p = build_problem(cfg)
    assert p.loss_name == "squared" and p.pm1
    m = p.build_model(0)
    with torch.no_grad():
        m[-1].weight.zero_()
    res = p.evaluate(m, p.data.train)
    assert abs(res["loss"] - 0.5) < 1e-6  # f = 0, targets +-1: loss 1/2
    assert 0 <= res["error"] <= 1


def _bn_problem():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 3, 8, 8, generator=g) * 3 + 1, torch.randint(0, 3, (40,), generator=g)
    return Problem(_bundle(X, y, 3), {"name": "resnet8", "num_classes": 3, "input_shape": [3, 8, 8]},
                   "cross_entropy", 0.0)


def test_recalibrate_bn_estimates_the_statistics_of_the_current_weights():
    p = _bn_problem()
    m = p.build_model(0)
    bn = next(mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    seen = []
    hook = bn.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    assert p.recalibrate_bn(m, p.data.train, 24, 8, seed=3)
    hook.remove()
    # 24 samples in 3 mini-batches; momentum None: the running mean is the exact average of the batch means.
    assert [t.shape[0] for t in seen] == [8, 8, 8]
    expected = torch.stack([t.mean(dim=(0, 2, 3)) for t in seen]).mean(0)
    torch.testing.assert_close(bn.running_mean, expected)
    assert bn.momentum == 0.1 and m.training  # the layer's momentum and the model's mode are restored
    # The same samples for the same seed: a second pass gives the same statistics.
    before = bn.running_var.clone()
    p.recalibrate_bn(m, p.data.train, 24, 8, seed=3)
    torch.testing.assert_close(bn.running_var, before)


def test_recalibrate_bn_leaves_a_model_without_batchnorm_alone():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(6, 5, generator=g), torch.randint(0, 3, (6,), generator=g)
    p = Problem(_bundle(X, y, 3), {"name": "mlp", "num_classes": 3, "input_shape": [5], "hidden": [4]},
                "cross_entropy", 0.0)
    assert not p.recalibrate_bn(p.build_model(0), p.data.train, 6, 2, seed=0)
    assert not _bn_problem().recalibrate_bn(_bn_problem().build_model(0), _bn_problem().data.train, 0, 8, seed=0)
