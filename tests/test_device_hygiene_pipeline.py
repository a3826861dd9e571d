"""No tensor the pipeline algorithms (BP, DDG, FR, DNI) or the dual methods (CoCoA+, Dis-dfSDCA) create
ignores the model's device (issue 22).

Each algorithm runs tiny with ``topology.devices=cpu`` given explicitly, and inside its rank the default
device is ``meta`` (``with torch.device("meta")``: a thread-local torch function mode): a tensor made
without ``device=`` lands on meta, and mixing it with the CPU model's tensors, or reading it (``.item()``,
``.numpy()``), raises, so the run would not finish. A write of a meta tensor into a CPU one passes
silently, so the test also asserts where the state lives after the run: every stage's parameters and
buffers (and DNI's synthesizers), the dual methods' model, on ``ctx.device``.
"""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

import hdist.algos
from hdist.algos import ALGOS
from hdist.launch import execute, prepare

PIPE = ["scale=smoke", "scale.n_train=64", "scale.n_test=32", "progress=quiet", "log.train_every=1",
        "algo.batch_size=16", "algo.sigma_every=2", "model=mlp", "model.hidden=[16,8]", "topology.devices=cpu",
        "topology.stages=2"]
DUAL = ["dataset=synthetic", "dataset.num_classes=2", "dataset.shape=[6]", "model=linear", "model.input_shape=[6]",
        "objective.l2=0.1", "scale=smoke", "scale.n_train=64", "scale.n_test=16", "scale.epochs=2", "algo.h=8",
        "progress=quiet", "log.evals_per_epoch=1", "topology.devices=cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _on(t: torch.Tensor, device: torch.device) -> bool:
    return t.device == device


def _state_device_check(ctx) -> list[str]:
    """Tensors of the rank's state that are not on ``ctx.device``, by name."""
    bad = []
    dev = ctx.device
    for k, module in (ctx.extra.get("stages") or {}).items():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not _on(t, dev):
                bad.append(f"stage {k + 1} {name} on {t.device}")
    for st in ctx.extra.get("pipeline") or ():
        if getattr(st, "synth", None) is not None:
            for name, t in st.synth.named_parameters():
                if not _on(t, dev):
                    bad.append(f"stage {st.k + 1} synthesizer {name} on {t.device}")
    model = ctx.extra.get("model")
    if model is not None:
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if not _on(t, dev):
                bad.append(f"model {name} on {t.device}")
    return bad


def _run_on_meta(monkeypatch, tmp_path, overrides):
    """Run with the rank's default device set to meta; returns (result, [(rank device, misplaced state)])."""
    cfg = prepare([*overrides, f"results_dir={tmp_path}"])
    real = hdist.algos.get_algo
    spec = real(cfg.algo.name)
    seen = []

    def on_meta(ctx):
        assert ctx.device == torch.device("cpu")
        with torch.device("meta"):
            importlib.import_module(ALGOS[ctx.cfg.algo.name]).run(ctx)
        seen.append((ctx.device, _state_device_check(ctx), bool(ctx.extra.get("model") is not None
                                                                or ctx.extra.get("stages"))))

    monkeypatch.setattr(hdist.algos, "get_algo",
                        lambda name: dataclasses.replace(spec, run=on_meta) if name == cfg.algo.name else real(name))
    res = execute(cfg, force=True, quiet_skip=True)
    return res, seen


@pytest.mark.parametrize("algo", ["bp", "ddg", "fr", "dni"])
def test_pipeline_serial_makes_every_tensor_on_the_model_device(monkeypatch, tmp_path, algo):
    res, seen = _run_on_meta(monkeypatch, tmp_path, [*PIPE, f"algo={algo}", "backend=serial"])
    assert res.status == "done", res.reason
    assert len(seen) == 1
    device, bad, has_state = seen[0]
    assert device == torch.device("cpu") and has_state
    assert bad == []


@pytest.mark.parametrize("algo", ["ddg", "dni"])
def test_pipeline_on_sim_stage_per_rank_makes_every_tensor_on_the_stage_device(monkeypatch, tmp_path, algo):
    res, seen = _run_on_meta(monkeypatch, tmp_path, [*PIPE, f"algo={algo}", "backend=sim", "backend.threads=1"])
    assert res.status == "done", res.reason
    assert len(seen) == 2
    for device, bad, has_state in seen:
        assert device == torch.device("cpu") and has_state
        assert bad == []


@pytest.mark.parametrize("algo,backend,workers", [("cocoa_plus", "serial", 1), ("cocoa_plus", "thread", 2),
                                                   ("dfsdca", "thread", 2)])
def test_the_dual_methods_make_every_tensor_on_the_model_device(monkeypatch, tmp_path, algo, backend, workers):
    over = [*DUAL, f"algo={algo}", f"backend={backend}", f"topology.workers={workers}"]
    res, seen = _run_on_meta(monkeypatch, tmp_path, over)
    assert res.status == "done", res.reason
    assert len(seen) == workers
    for device, bad, has_state in seen:
        assert device == torch.device("cpu") and has_state
        assert bad == []


def test_dfsdca_worker_and_gap_make_every_tensor_on_the_model_device(monkeypatch, tmp_path):
    """dfsdca's own code (a worker's dual steps, rank 0's exact gap) under meta; the parameter-server frame
    around it (hdist.algos._ps, _vr) is the PS algorithms' and is checked with them."""
    from hdist.algos import dfsdca

    seen = []

    def on_meta(fn):
        def call(ctx, *args):
            with torch.device("meta"):
                out = fn(ctx, *args)
            seen.append((fn.__name__, args[1].ps.device))  # fm: the server's w
            return out
        return call

    monkeypatch.setattr(dfsdca, "worker_loop", on_meta(dfsdca.worker_loop))
    monkeypatch.setattr(dfsdca, "after", on_meta(dfsdca.after))
    res = execute(prepare([*DUAL, "algo=dfsdca", "backend=thread", "topology.workers=2",
                           f"results_dir={tmp_path}"]), force=True, quiet_skip=True)
    assert res.status == "done", res.reason
    assert sorted(name for name, _ in seen) == ["after", "worker_loop", "worker_loop"]
    assert all(device == torch.device("cpu") for _, device in seen)


def test_stage_placement_rule(monkeypatch):
    """Serial on CUDA: stage k on cuda:((i + k) mod GPUs), i the rank's GPU; K ranks: every stage on its rank's
    device; the CPU: every stage on the CPU. (The rule only names devices: checked here without a GPU.)"""
    from hdist.algos._pipeline import stage_devices

    cpu = torch.device("cpu")
    assert stage_devices(cpu, 3, 1) == [cpu] * 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = [torch.device("cuda", i) for i in range(2)]
    assert stage_devices(cuda[0], 3, 1) == [cuda[0], cuda[1], cuda[0]]
    assert stage_devices(cuda[1], 2, 1) == [cuda[1], cuda[0]]
    assert stage_devices(cuda[1], 2, 2) == [cuda[1], cuda[1]]


def test_activations_and_gradients_cross_to_the_receiving_stage_device():
    """MemoryLinks hands the receiver its tensor on the receiver's device, and the composed model used for a
    serial run's evaluation moves each stage's input to that stage's device (meta stands in for a 2nd device)."""
    from torch import nn

    from hdist.algos._pipeline import ACT, CrossDevice, MemoryLinks

    links = MemoryLinks()
    h = torch.ones(4, 3, device="cpu")
    links.send(0, 1, ACT, h)
    got = links.recv(1, 0, ACT, (4, 3), torch.float32, torch.device("meta"))
    assert got.device.type == "meta" and got.shape == (4, 3)
    links.send(0, 1, ACT, h)
    assert links.recv(1, 0, ACT, (4, 3), torch.float32, torch.device("cpu")).data_ptr() == h.data_ptr()  # no copy
    with torch.device("cpu"):
        parts = [nn.Sequential(nn.Linear(3, 5)), nn.Sequential(nn.Linear(5, 2))]
    parts[1].to("meta")
    composed = CrossDevice(parts, [torch.device("cpu"), torch.device("meta")], torch.device("meta"))
    out = composed(h)
    assert out.device.type == "meta" and out.shape == (4, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("algo", ["bp", "ddg", "fr", "dni"])
def test_pipeline_serial_on_cuda_puts_stage_k_on_gpu_k_and_logs_its_peak(monkeypatch, tmp_path, algo):
    """Serial, 2 stages on CUDA: stage k on cuda:(k mod GPUs), its state there, the run done (activations
    and error gradients crossed devices where there are 2 GPUs), ``peak_cuda_bytes/k`` logged per stage."""
    from hdist.metrics import read_run_metrics

    over = [o.replace("topology.devices=cpu", "topology.devices=cuda") for o in PIPE]
    cfg = prepare([*over, f"algo={algo}", "backend=serial", f"results_dir={tmp_path}"])
    real = hdist.algos.get_algo
    spec = real(cfg.algo.name)
    seen = {}

    def keep(ctx):
        importlib.import_module(ALGOS[ctx.cfg.algo.name]).run(ctx)
        for k, module in ctx.extra["stages"].items():
            seen[k] = {t.device for t in [*module.parameters(), *module.buffers()]}

    monkeypatch.setattr(hdist.algos, "get_algo",
                        lambda name: dataclasses.replace(spec, run=keep) if name == cfg.algo.name else real(name))
    res = execute(cfg, force=True, quiet_skip=True)
    assert res.status == "done", res.reason
    gpus = torch.cuda.device_count()
    assert seen == {k: {torch.device("cuda", k % gpus)} for k in range(2)}
    df = read_run_metrics(res.run_dir).to_pandas()
    for k in (1, 2):
        assert (df[df.metric == f"peak_cuda_bytes/{k}"]["value"] > 0).all()
        assert len(df[df.metric == f"peak_cuda_bytes/{k}"]) > 0
