"""Mixed precision, ``algo.precision`` (hdist/precision.py; issue 22 item 4), on the CPU: bf16 and fp16 runs
train through every compute block's autocast, fp16's loss scale rescues gradients that underflow and skips
the ones that overflow, algorithms refuse what they do not declare, and fp32 stays the default."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hdist import config as C
from hdist import precision as P
from hdist.algos import get_algo
from hdist.algos._ps import FlatModel
from hdist.launch import execute, prepare
from hdist.metrics import read_run_metrics
from hdist.types import PRECISIONS, AlgoSpec

TINY = ["scale=smoke", "scale.n_train=240", "scale.n_test=60", "scale.epochs=1", "progress=quiet",
        "log.train_every=1", "model=mlp", "model.hidden=[16]"]


def _run(tmp_path, *ovs):
    res = execute(prepare([*TINY, f"results_dir={tmp_path}", *ovs]), quiet_skip=True)
    assert res.status == "done", res.reason
    df = read_run_metrics(res.run_dir).to_pandas()
    meta = json.loads((res.run_dir / "meta.json").read_text())
    return df, meta


def _losses(df) -> list[float]:
    return df[df["metric"] == "train_loss"].sort_values("step")["value"].tolist()


@pytest.mark.parametrize("algo", ["sgd", "kavg"])
def test_bf16_trains_on_the_serial_backend_and_differs_from_fp32(tmp_path, algo):
    fp32, meta32 = _run(tmp_path, f"algo={algo}", "backend=serial")
    bf16, meta16 = _run(tmp_path, f"algo={algo}", "backend=serial", "algo.precision=bf16")
    a, b = _losses(fp32), _losses(bf16)
    assert len(a) == len(b) > 5 and all(math.isfinite(v) for v in b)
    # the forward passes ran in bf16 (autocast entered), and trained about as far as fp32 did
    assert a != b and abs(a[-1] - b[-1]) < 0.05
    assert meta32["precision"] == "fp32" and meta16["precision"] == "bf16"


def test_fp16_kavg_on_the_sim_trains_and_logs_its_loss_scale(tmp_path):
    df, meta = _run(tmp_path, "algo=kavg", "backend=sim", "topology.workers=2", "algo.precision=fp16")
    losses = _losses(df)
    assert losses and all(math.isfinite(v) for v in losses) and meta["precision"] == "fp16"
    events = df[df["kind"] == "event"]
    scale = events[events["metric"] == "loss_scale"]["value"].tolist()
    skipped = events[events["metric"] == "fp16_skipped_steps"]["value"].tolist()
    assert len(scale) == 2 and all(s > 0 for s in scale) and len(skipped) == 2


def test_fp16_is_refused_in_one_line_where_the_gradient_has_no_loss_scale(cli, tmp_path):
    code, _, err = cli("run", *TINY, "algo=sgd", "algo.precision=fp16", f"results_dir={tmp_path / 'r'}")
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hdist: algo.precision=fp16: algo=sgd does not support it"), err
    assert "allowed: fp32, bf16" in lines[0]
    assert not (tmp_path / "r").exists()


def test_every_algorithm_config_has_the_key_at_fp32():
    names = [f.stem for f in (C.CONF_DIR / "algo").glob("*.yaml") if not f.stem.startswith("_")]
    for name in names:
        node = C.load_option("algo", name)[1]
        node = node.algo if "algo" in node else node  # _dp.yaml is a _global_ package
        assert node.get("precision") == "fp32", name
    assert len(names) > 20 and C.compose(["algo=clars"]).algo.precision == "fp32"


def test_algorithms_declare_what_they_run_in():
    assert get_algo("kavg").precisions == PRECISIONS and get_algo("sgd").precisions == ("fp32", "bf16")
    # the dual methods' float64 steps ignore autocast: they do not claim bf16
    assert get_algo("dfsdca").precisions == ("fp32",) and get_algo("cocoa_plus").precisions == ("fp32",)
    with pytest.raises(ValueError, match="precisions"):
        AlgoSpec(("serial",), lambda ctx: None, precisions=("bf16",))


def _grad(fm: FlatModel, x, y, prec: P.Precision | None, factor: float = 1.0):
    region = prec.region() if prec is not None else torch.autocast("cpu", enabled=False)
    with region:
        loss = torch.nn.functional.cross_entropy(fm.model(x), y) * factor
        return fm.grad(loss)


def test_fp16_loss_scale_keeps_tiny_gradients_that_fp16_would_flush_to_zero():
    torch.manual_seed(0)
    fm = FlatModel(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)))
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    tiny = 1e-6  # the loss's gradient per logit ~ 1e-8: below fp16's smallest subnormal (6e-8)
    ref = _grad(fm, x, y, None, tiny)
    plain = torch.autocast("cpu", dtype=torch.float16, cache_enabled=False)
    with plain:  # fp16 autocast without a loss scale: the first layer's gradient underflows
        unscaled = fm.grad(torch.nn.functional.cross_entropy(fm.model(x), y) * tiny)
    scaled = _grad(fm, x, y, P.Precision("fp16", torch.device("cpu")), tiny)
    first = slice(0, 8 * 16)
    assert unscaled[first].abs().max() == 0
    assert torch.allclose(scaled, ref, rtol=0.05, atol=1e-9) and scaled[first].abs().max() > 0


def test_fp16_overflow_zeroes_the_gradient_and_halves_the_scale():
    torch.manual_seed(0)
    fm = FlatModel(torch.nn.Linear(4, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    prec = P.Precision("fp16", torch.device("cpu"))
    prec.scaler.scale.fill_(2.0**40)  # S * gradient overflows fp16
    g = _grad(fm, x, y, prec)
    assert torch.count_nonzero(g) == 0 and prec.scaler.scale.item() == 2.0**39 and prec.scaler.skipped.item() == 1
    prec.scaler.scale.fill_(2.0**10)
    g = _grad(fm, x, y, prec)
    assert torch.allclose(g, _grad(fm, x, y, None), rtol=0.02, atol=1e-4) and prec.scaler.skipped.item() == 1


def test_a_region_sets_autocast_and_the_scaler_and_a_pause_lifts_autocast():
    assert P.make("fp32", None) is None and P.loss_scaler() is None
    prec = P.make("fp16", torch.device("cpu"))
    with prec.region():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16
        assert P.loss_scaler() is prec.scaler
        with prec.paused():
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
    assert not torch.is_autocast_enabled("cpu") and P.loss_scaler() is None
    with P.make("bf16", None).region():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and P.loss_scaler() is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_kavg_trains_on_the_gpu(tmp_path, precision):
    df, meta = _run(tmp_path, "algo=kavg", "backend=serial", "topology.devices=cuda", f"algo.precision={precision}")
    losses = _losses(df)
    assert losses and all(math.isfinite(v) for v in losses)
    assert meta["precision"] == precision and meta["device"] == "cuda"
