"""Device hygiene of the serial, parameter-server, shared-memory and collective algorithms (issue 22).

Every tensor an algorithm makes must say where it lives: on the model's device (``ctx.device``) for state,
explicitly on the host for sample orders and their CPU generators. On a CPU-only machine a forgotten
``device=`` is invisible (the default device is the CPU too), so each rank runs under two watches
(:func:`run_watched`):

- the rank's default device is ``meta`` (``torch.set_default_device`` is thread-local): a tensor made
  without a device is a meta tensor, and mixing it with the model's CPU tensors raises, as ``.item()`` does;
- a torch function mode lists every factory call (``torch.zeros``, ``arange``, ``randperm``, ...) made from
  hdist's code without a ``device`` argument: the calls that ``meta`` cannot catch (a meta index tensor
  silently reads garbage from a CPU tensor; ``b.add_(meta)`` passes).

Then the run must be ``done``, no such call listed, and the model's parameters and buffers on ``ctx.device``.
:func:`run_watched` is the reusable harness (the pipeline and dual algorithms have their own file).
"""

from __future__ import annotations

import dataclasses
import sys
import traceback
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._device import DeviceContext, _device_constructors

import hdist
import hdist.algos
from hdist.launch import execute, prepare

HDIST_DIR = Path(hdist.__file__).resolve().parent
ROOT = HDIST_DIR.parent
#: the code whose factory calls are watched: hdist's, and this file's (the harness's own test)
WATCHED = (HDIST_DIR, Path(__file__).resolve())
TORCH_DIR = Path(torch.__file__).resolve().parent
#: the functions whose device the default device decides (what torch.set_default_device itself redirects)
FACTORIES = frozenset(_device_constructors())

SMOKE = ["scale=smoke", "scale.n_train=96", "scale.n_test=32", "scale.epochs=1", "progress=quiet", "log.train_every=1"]
STEPS = ["algo.max_steps=4"]


def _watched_caller() -> str | None:
    """``path:line`` of the watched code behind the current factory call, None when the first caller outside
    torch is not watched (a library makes its own choice of device)."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if not path.is_relative_to(TORCH_DIR):
            watched = any(path.is_relative_to(w) for w in WATCHED)
            return f"{path.relative_to(ROOT)}:{frame.f_lineno}" if watched else None
        frame = frame.f_back
    return None


def _default_device_type() -> str:
    """The type of this thread's default device (the innermost ``torch.device`` context or
    ``set_default_device``)."""
    for mode in reversed(_get_current_function_mode_stack()):
        if isinstance(mode, DeviceContext):
            return mode.device.type
    return "cpu"


class UndevicedFactories(TorchFunctionMode):
    """Lists the factory calls made from watched code without a ``device`` argument (``calls``) that land on
    the rank's ``meta`` default: a call inside an explicit ``with torch.device(...)`` block says its device."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func in FACTORIES and kwargs.get("device") is None and not (args and isinstance(args[0], torch.Tensor))
                and _default_device_type() == "meta"):
            where = _watched_caller()
            if where is not None:
                self.calls.append(f"{where} torch.{func.__name__}")
        return func(*args, **kwargs)


@dataclasses.dataclass
class Watched:
    """What :func:`run_watched` saw: the run's status and reason, the factory calls without a device, per
    rank ``(ctx.device, {name: device})`` of the model's parameters and buffers, and the ranks' tracebacks."""

    status: str
    reason: str
    undeviced: list[str]
    ranks: list[tuple[torch.device, dict[str, torch.device]]]
    errors: list[str]

    def misplaced(self) -> list[str]:
        return [f"{name} on {dev}, ctx.device {want}" for want, state in self.ranks
                for name, dev in state.items() if dev != want]


def run_watched(monkeypatch, tmp_path, overrides: list[str], devices: str = "cpu") -> Watched:
    """Run ``overrides`` with ``topology.devices=devices`` in this process (serial, thread or sim backend: their
    ranks are this process's threads), every rank under the watches of the module doc; returns what was seen."""
    get_algo = hdist.algos.get_algo
    undeviced: list[str] = []
    ranks: list = []
    errors: list[str] = []

    def watched_spec(name: str):
        spec = get_algo(name)

        def run(ctx) -> None:
            audit = UndevicedFactories()
            torch.set_default_device("meta")
            try:
                with audit:
                    spec.run(ctx)
            except BaseException:
                errors.append(traceback.format_exc(limit=-6))
                raise
            finally:
                torch.set_default_device(None)
                undeviced.extend(audit.calls)
                model = ctx.extra.get("model")
                state = {} if model is None else {n: t.device for n, t in
                                                  [*model.named_parameters(), *model.named_buffers()]}
                ranks.append((torch.device(ctx.device), state))

        return dataclasses.replace(spec, run=run)

    # launch looks the algorithm up by name when it starts the ranks: it gets the watched one.
    monkeypatch.setattr(hdist.algos, "get_algo", watched_spec)
    res = execute(prepare([*SMOKE, f"topology.devices={devices}", f"results_dir={tmp_path}", *overrides]))
    return Watched(res.status, res.reason or "", sorted(set(undeviced)), ranks, errors)


def assert_hygienic(w: Watched, *, model: bool = True) -> None:
    assert w.status == "done", "\n".join([w.reason, *w.errors])
    assert not w.undeviced, "factory calls without a device:\n" + "\n".join(w.undeviced)
    assert w.ranks, "no rank ran"
    if model:
        assert all(state for _, state in w.ranks), "a rank left no model in ctx.extra['model']"
    assert not w.misplaced(), "\n".join(w.misplaced())


SERIAL = {
    "sgd": ["algo=sgd", *STEPS],
    "asysg_con": ["algo=asysg_con", *STEPS],
    "asysg_incon": ["algo=asysg_incon", *STEPS],
    "downpour": ["algo=downpour", "algo.k=2", *STEPS],
    "eamsgd": ["algo=eamsgd", "algo.k=2", *STEPS],
    "kavg": ["algo=kavg", "algo.k=2", *STEPS],
    "diloco": ["algo=diloco", "algo.k=2", *STEPS],
    "svrg": ["algo=svrg", "algo.m=2", "algo.coords=5", *STEPS],
    "sgd_svrg": ["algo=sgd_svrg", "algo.pretrain_epochs=1", "algo.m=2", *STEPS],
    "dist_svrg": ["algo=dist_svrg", "algo.m=2", *STEPS],
    "mnag": ["algo=mnag", "algo.batch_size=8", *STEPS],
    "lars": ["algo=lars", "algo.batch_size=8", *STEPS],
    "clars": ["algo=clars", "algo.batch_size=8", "algo.accum_steps=2", "algo.subsample=4", "log.layer_every=2",
              "log.m_k_samples=4", *STEPS],
    "kavg_probe": ["algo=kavg_probe", "algo.batch_size=8", "algo.batches=2", "algo.hvp_samples=8", "algo.iters=2"],
}


@pytest.mark.parametrize("name", sorted(SERIAL))
def test_serial_algorithm_keeps_its_state_on_the_device(monkeypatch, tmp_path, name):
    assert_hygienic(run_watched(monkeypatch, tmp_path, SERIAL[name]))


def test_dataset_stats_runs_without_undeviced_tensors(monkeypatch, tmp_path):
    # No model: the statistics of the data as loaded, on the host.
    assert_hygienic(run_watched(monkeypatch, tmp_path, ["algo=dataset_stats"]), model=False)


@pytest.mark.parametrize("overrides", [
    ["algo=kavg", "algo.k=2", "backend=thread", "topology.workers=2", *STEPS],
    ["algo=asysg_incon", "backend=thread", "topology.workers=2", *STEPS],
    ["algo=clars", "algo.batch_size=4", "algo.subsample=4", "backend=thread", "topology.workers=2", *STEPS],
    ["algo=eamsgd", "algo.k=2", "backend=sim", "topology.workers=2", *STEPS],
], ids=["kavg-thread", "asysg_incon-thread", "clars-thread", "eamsgd-sim"])
def test_threaded_ranks_keep_their_state_on_their_device(monkeypatch, tmp_path, overrides):
    w = run_watched(monkeypatch, tmp_path, overrides)
    assert_hygienic(w)
    assert len(w.ranks) >= 2  # two workers (and a server rank where the backend has one)


def test_the_watch_catches_a_tensor_without_a_device(monkeypatch, tmp_path):
    """The harness itself: an algorithm that allocates its state without ``device=`` is caught."""
    from hdist.algos import kavg

    original = kavg.FlatModel

    class Careless(original):
        def __init__(self, model):
            super().__init__(model)
            self.scratch = torch.zeros(self.numel)  # the bug the watch is for

    monkeypatch.setattr(kavg, "FlatModel", Careless)
    w = run_watched(monkeypatch, tmp_path, ["algo=kavg", "algo.k=2", *STEPS])
    assert any("torch.zeros" in c for c in w.undeviced), w.undeviced


# --- on a GPU (make test-gpu) ----------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["sgd", "downpour", "kavg", "svrg", "dist_svrg", "clars", "kavg_probe"])
def test_on_a_gpu_the_state_lives_on_the_gpu(monkeypatch, tmp_path, name):
    w = run_watched(monkeypatch, tmp_path, SERIAL[name], devices="cuda")
    assert_hygienic(w)
    assert all(dev.type == "cuda" for dev, _ in w.ranks)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("overrides", [
    ["algo=sgd", *STEPS],
    ["algo=kavg", "algo.k=2", "backend=thread", "topology.workers=2", *STEPS],
], ids=["sgd", "kavg-thread"])
def test_on_a_gpu_the_losses_are_the_cpus_to_float_rounding(tmp_path, overrides):
    """The same run on the CPU and on the GPU: the same samples and initial weights (drawn on the host), so the
    logged losses differ by float rounding only (the kernels' summation orders differ)."""
    from hdist.metrics import load_results

    losses = {}
    for devices in ("cpu", "cuda"):
        res = execute(prepare([*SMOKE, f"topology.devices={devices}", f"results_dir={tmp_path / devices}",
                               *overrides]))
        assert res.status == "done", res.reason
        df = load_results(tmp_path / devices)
        tl = df[(df.metric == "train_loss") & (df["rank"] == 0)].sort_values("step")
        losses[devices] = tl.value.tolist()
    assert len(losses["cpu"]) == len(losses["cuda"]) > 0
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-4, abs=1e-5)
