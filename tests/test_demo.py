"""The headline command `hdist run algo=clars model=resnet50` on a CPU: sized to learn visibly (hdist.demo)."""

from __future__ import annotations

import re

import pytest

from hdist import config as C
from hdist import demo
from hdist.metrics import load_results


def _final(overrides):
    return C.finalize(C.compose(overrides), overrides)


def test_the_headline_on_a_cpu_keeps_resnet50_and_clars_and_is_resized(capsys):
    demo._SAID.clear()
    cfg = _final(["algo=clars", "model=resnet50"])
    assert (cfg.model.name, cfg.algo.name, cfg.algo.rule) == ("resnet50", "clars", "clars")
    assert (cfg.model.num_classes, cfg.algo.batch_size, list(cfg.model.input_shape)) == (10, 8, [3, 64, 64])
    assert cfg.algo.max_steps == demo.STEPS and cfg.log.train_every == 1 and cfg.log.layer_every == 1
    _final(["algo=clars", "model=resnet50"])  # composed twice (validation, then the run): said once
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "10 classes, batch 8, 64x64 input, 60 steps" in lines[0]


@pytest.mark.parametrize("extra", [["scale=smoke"], ["model.num_classes=1000"], ["algo.batch_size=128"],
                                   ["topology.devices=cuda"], ["topology.devices=auto"]])
def test_a_size_on_the_command_line_or_a_gpu_runs_it_as_written(extra, monkeypatch):
    from hdist import devices

    monkeypatch.setattr(devices, "gpu_count", lambda: 1)  # a GPU machine: cuda, and auto, are allowed
    cfg = _final(["algo=clars", "model=resnet50", *extra])
    assert cfg.algo.max_steps is None and cfg.log.layer_every == 50


def test_other_runs_and_experiments_are_not_resized():
    assert _final([]).model.num_classes == 10 and _final([]).algo.name == "sgd"
    assert _final(["algo=clars", "model=resnet20"]).algo.batch_size == 32  # not an ImageNet-sized model
    assert _final(["algo=sgd", "model=resnet50"]).model.num_classes == 1000  # not a data-parallel rule
    assert not demo.applies(C.compose(["experiment=thesis-fig6"]), set())


def _demo_overrides(model: str, steps: int) -> list[str]:
    """The demo's sizing as explicit overrides, on another model and for fewer steps."""
    def yaml(v):
        return "null" if v is None else str(v)

    size = {**demo.CPU_SIZE, "algo.max_steps": steps}
    return ["algo=clars", f"model={model}", *(f"{k}={yaml(v)}" for k, v in size.items())]


def test_the_demo_sizing_learns_and_logs_loss_and_layer_rates_every_step(cli, tmp_path):
    # Reduced: ResNet-8 for ResNet-50 (the full headline is the slow test below), same CLARS and sizing.
    steps = 40
    code, _, err = cli("run", *_demo_overrides("resnet8", steps), "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path)
    loss = df[df["metric"] == "train_loss"].sort_values("step")
    assert list(loss["step"]) == list(range(1, steps + 1))
    rates = df[df["metric"].str.startswith("layer_lr/")]
    assert set(rates["step"]) == set(range(1, steps + 1))
    first, last = loss["value"].head(5).mean(), loss["value"].tail(5).mean()
    assert last < 0.8 * first, (first, last)


@pytest.mark.slow
def test_the_headline_command_learns_visibly(sub, tmp_path):
    r = sub("run", "algo=clars", "model=resnet50", f"results_dir={tmp_path}", timeout=3600)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("sized to learn in minutes") == 1
    steps = re.findall(r"step (\d+)/60 .*eta \d+s .*loss [0-9.]+", r.stderr)
    assert [int(s) for s in steps] == list(range(1, 61))  # a plain line at every step (not a terminal)
    assert r.stdout.count("results: ") == 1
    df = load_results(tmp_path)
    loss = df[df["metric"] == "train_loss"].sort_values("step")["value"]
    assert len(loss) == 60 and loss.tail(10).mean() < 0.8 * loss.head(10).mean()
    assert df[df["metric"].str.startswith("layer_lr/")]["step"].nunique() == 60
