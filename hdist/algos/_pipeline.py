"""The pipeline executor of model parallelism (thesis ch. 5-6): a model cut into K stages.

Reproduces the execution frame shared by BP, DDG (thesis Alg. 9-10), Features Replay (Alg. 11)
and DNI (thesis 5.5.1 / 6.5.1): the model (an ``nn.Sequential``) is cut into K =
``topology.stages`` stages by :func:`hdist.models.split_stages` (``algo.cuts``, or balanced by
parameters); each stage owns its layers and its own optimizer; activations go up and error
gradients go down through *links*. One training iteration t, on every stage k:

    forward(t):   h_{k-1}^t <- x^t (k = 1) or the activation link from k-1
                  h_k^t = F_k(h_{k-1}^t; w_k)   -> the activation link to k+1 (k < K)
    backward(t):  an error gradient for the stage (exact, delayed, replayed or synthetic: the
                  algorithm's rule), backprop through the stage, the input's gradient -> the
                  gradient link to k-1 (k > 1), then the stage's optimizer updates w_k

Algorithms subclass :class:`Stage` and write ``forward`` and ``backward`` in their paper's
order; this module never imports a backend. Worlds:

- a world of K ranks (process, torchdist, sim): rank k runs stage k and the links are
  ``comm.send`` / ``comm.recv`` (:class:`CommLinks`);
- a world of 1 rank (serial): the one rank runs all K stages, forward phases k = 1..K then
  backward phases k = K..1, with in-memory FIFO links (:class:`MemoryLinks`).

The stage code is the same in both, and every rule is stated in iterations (a delay of K - k
iterations, the previous iteration's gradient), never in timing; links are FIFO per
(sender, receiver, kind), so any world computes the same numbers: serial is the exact reference.

Devices (``topology.devices``, :mod:`hdist.devices`). A world of K ranks: stage k on its rank's
device (``ctx.device``). A world of one rank (serial): stage k on ``cuda:((i + k) mod GPUs)`` (i: the
rank's GPU, so one GPU per stage where there are K of them), and :class:`MemoryLinks` moves each
activation and error gradient to the receiving stage's device; on the CPU every stage is on the CPU
and nothing is copied (the same bits as before devices existed). The model is built on the CPU from
the CPU generator and then moved, and sample orders and augmentation draws come from CPU generators,
so every device trains from the same weights on the same batches. Every stage timer waits for its
stage's device before each clock read (:func:`hdist.devices.synchronize`).

Data. Every rank draws the same sample order (seeded (seed, 0), as serial SGD), so the first
stage reads x^t and the last stage y^t without sending labels; augmentation draws come from a
generator seeded by (seed, t), so the batch of any iteration can be made again (the sigma probe).

Measurements per stage k (metric names end in ``/k``, k = 1..K as in the thesis), logged every
``log.train_every`` steps, cumulative: ``forward_s``, ``backward_s`` (backprop, replay,
synthesizer and the optimizer step), ``wait_s`` (blocked in a link's receive),
``peak_mem_bytes``: the peak of the bytes the stage actually holds, tracked as they are stored
and freed, by distinct storage: the tensors its autograd graphs save (hooked with
``torch.autograd.graph.saved_tensors_hooks``; the live parameters and buffers are not counted),
the parameter snapshots a delayed graph needs, input histories, error gradients received and not
yet used, and kept activations; on a GPU also ``peak_cuda_bytes``: ``torch.cuda.max_memory_allocated``
of the stage's device (everything the allocator gave out there, weights and workspace included; shared
by the stages placed on one GPU). ``sigma/k``: every ``algo.sigma_every`` steps, the sufficient-
direction constant of Assumption 6.4.1 for the stage, sigma_k = <grad_k f_B(w^t), g_k^t> /
||grad_k f_B(w^t)||^2, where g_k^t is the gradient the algorithm applies at iteration t (before
the optimizer's weight decay), B is the mini-batch it comes from and grad_k f_B(w^t) is the exact
backpropagated gradient of that batch at the current weights (a probe pass through the whole
pipeline, one per distinct batch; its time is excluded from every measurement and from ``wall_s``,
though on the sim its messages take virtual time). BP gives sigma = 1.

Time on the sim: a stage's forward costs (its share of the model's forward FLOPs) / 3 of the
cost model's step time for its samples, its backward twice that (the thesis: backward is about
twice the forward), a replayed forward or a synthesizer its own FLOPs' share
(``comm.compute(samples, work=...)``). Each of these phases is a compute block of its stage, so
stage k straggles (``topology.straggler.workers`` holds k) on every backend, serial included.

The last stage logs ``train_loss`` (the mini-batch loss of the iteration's forward, plus the
regulariser when ``objective.l2`` > 0) and evaluates the composed model (on a K-rank world the
other stages send it their parameters and buffers first; every rank then meets in a barrier, so
an evaluation is no one's ``wait_s``).
"""

from __future__ import annotations

import inspect
import math
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hdist import devices
from hdist.models import build_model, split_stages
from hdist.problems import build_problem
from hdist.rules import int_at_least, is_list, opt
from hdist.schedules import lr_at
from hdist.train import Evaluator, Sampler, check_finite, total_steps
from hdist.types import ConfigError, seed_for

FAMILIES = ("pipeline",)

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    "algo.optimizer": (lambda v: isinstance(v, str) and v != "", "a torch.optim optimizer name (sgd, adam, ...)"),
    "algo.cuts": (opt(lambda v: is_list(v) and all(int_at_least(1)(c) for c in v)),
                  "null or a list of block indices >= 1 where pipeline stages begin"),
    "algo.sigma_every": (int_at_least(0), "an integer >= 0 (steps between sigma probes; 0 = never)"),
}

# Message kinds (comm tags). Distinct from every other protocol's; probes and states never mix
# with the training messages.
ACT, GRAD, PROBE_ACT, PROBE_GRAD, STATE, REG = 701, 702, 703, 704, 705, 706
_KIND = {ACT: "activation", GRAD: "error gradient", PROBE_ACT: "probe activation", PROBE_GRAD: "probe gradient",
         STATE: "stage state", REG: "regulariser"}

# Share of a stage's step in its forward and in its backward (thesis 5.1, 6.1: the backward pass
# takes about twice the forward's time). The sim's cost of a stage's phases; unused elsewhere.
FORWARD_SHARE, BACKWARD_SHARE = 1.0 / 3.0, 2.0 / 3.0


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """``algo.optimizer`` -> a torch.optim class (case-insensitive: sgd, adam, adamw, rmsprop, ...)."""
    classes = {n.lower(): c for n, c in vars(torch.optim).items()
               if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer}
    cls = classes.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"algo.optimizer={name}: not a torch.optim optimizer; allowed: {', '.join(sorted(classes))}")
    return cls


def make_optimizer(algo, params, weight_decay: float, lr: float | None = None) -> torch.optim.Optimizer | None:
    """The stage's optimizer: ``algo.optimizer`` with lr, the objective's l2 as weight decay
    (the regulariser's exact gradient at the current weights), SGD's ``algo.momentum`` and any
    ``algo.optimizer_args``. None for a stage without parameters."""
    params = list(params)
    if not params:
        return None
    cls = optimizer_class(algo.optimizer)
    kwargs = optimizer_kwargs(algo, cls, weight_decay, lr)
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"algo.optimizer={algo.optimizer} with {kwargs}: {e}") from None


def optimizer_kwargs(algo, cls: type[torch.optim.Optimizer], weight_decay: float,
                     lr: float | None = None) -> dict[str, Any]:
    accepts = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"lr": float(algo.lr if lr is None else lr)}
    if weight_decay:
        if "weight_decay" not in accepts:
            raise ConfigError(f"objective.l2={weight_decay}: algo.optimizer={algo.optimizer} has no weight decay; "
                              f"allowed: objective.l2=0, or an optimizer with weight_decay")
        kwargs["weight_decay"] = float(weight_decay)
    if "momentum" in accepts and algo.get("momentum") is not None:
        kwargs["momentum"] = float(algo.momentum)
    extra = algo.get("optimizer_args") or {}
    if isinstance(extra, DictConfig):
        extra = OmegaConf.to_container(extra, resolve=True)
    # torch wants tuples where a config has lists (Adam's betas).
    kwargs.update({k: tuple(v) if isinstance(v, list) else v for k, v in dict(extra).items()})
    return kwargs


def validate(cfg) -> None:
    """The pipeline algorithms' own keys (the stage/model checks are in hdist.config)."""
    optimizer_class(cfg.algo.optimizer)
    args = cfg.algo.get("optimizer_args")
    if args is not None and not hasattr(args, "items"):
        raise ConfigError(f"algo.optimizer_args={args!r}: not allowed; expected a mapping of keyword arguments")
    # The optimizer on a stand-in parameter: a bad keyword or value is refused here, in the parent,
    # not by each stage after launch.
    make_optimizer(cfg.algo, [torch.zeros(1, requires_grad=True, device="cpu")], float(cfg.objective.l2))


# ---------------------------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------------------------


class MemoryLinks:
    """All stages in one process (a world of one rank): one FIFO queue per (sender, receiver, kind)."""

    def __init__(self) -> None:
        self._q: dict[tuple[int, int, int], deque] = defaultdict(deque)

    def send(self, src: int, dst: int, kind: int, tensor: torch.Tensor) -> None:
        self._q[(src, dst, kind)].append(tensor.detach())

    def recv(self, dst: int, src: int, kind: int, shape, dtype, device: torch.device) -> torch.Tensor:
        q = self._q[(src, dst, kind)]
        if not q:
            # The serial order (forwards 1..K, then backwards K..1) never waits: an empty queue is a
            # schedule that would deadlock on K ranks too.
            raise RuntimeError(f"pipeline: stage {dst + 1} receives a {_KIND[kind]} from stage {src + 1} "
                               f"that was never sent (a schedule that would deadlock)")
        t = q.popleft()
        if tuple(t.shape) != tuple(shape):
            raise RuntimeError(f"pipeline: {_KIND[kind]} from stage {src + 1} has shape {tuple(t.shape)}, "
                               f"stage {dst + 1} expects {tuple(shape)}")
        # The receiving stage's device (serial: stage k on its own GPU): the activation or error gradient
        # crosses devices here; on one device (the CPU) it is the tensor sent, no copy.
        return t.to(device)

    def pending(self) -> int:
        return sum(len(q) for q in self._q.values())


class CommLinks:
    """One stage per rank (stage k is rank k): flat buffers through ``comm.send`` / ``comm.recv``."""

    def __init__(self, comm) -> None:
        self.comm = comm

    def send(self, src: int, dst: int, kind: int, tensor: torch.Tensor) -> None:
        self.comm.send(tensor.detach().reshape(-1).contiguous(), dst, tag=kind)

    def recv(self, dst: int, src: int, kind: int, shape, dtype, device: torch.device) -> torch.Tensor:
        buf = torch.empty(math.prod(shape), dtype=dtype, device=device)
        self.comm.recv(buf, src, tag=kind)
        return buf.view(tuple(shape))

    def pending(self) -> int:
        return 0


# ---------------------------------------------------------------------------------------------
# Held bytes
# ---------------------------------------------------------------------------------------------


class HeldBytes:
    """Bytes a stage holds, counted by distinct storage as tensors are stored and freed.

    ``hold`` returns a token (it keeps the tensors, so a storage cannot be freed and its address
    reused while counted); ``free`` releases it. A storage held twice (an input kept in a
    history and saved by a graph) counts once.
    """

    def __init__(self) -> None:
        self._live: dict[int, list] = {}  # storage address -> [references, bytes]
        self.now = 0
        self.peak = 0

    def hold(self, tensors) -> list[torch.Tensor]:
        token = []
        for t in tensors:
            if t is None:
                continue
            st = t.untyped_storage()
            n = st.nbytes()
            if n == 0:
                continue
            key = st.data_ptr()
            entry = self._live.get(key)
            if entry is None:
                self._live[key] = [1, n]
                self.now += n
            else:
                entry[0] += 1
            token.append(t)
        self.peak = max(self.peak, self.now)
        return token

    def free(self, token) -> None:
        for t in token or ():
            key = t.untyped_storage().data_ptr()
            entry = self._live[key]
            entry[0] -= 1
            if entry[0] == 0:
                del self._live[key]
                self.now -= entry[1]
        if token:
            token.clear()


# ---------------------------------------------------------------------------------------------
# Data: the batch of any iteration, on any rank
# ---------------------------------------------------------------------------------------------


class Batches:
    """Iteration s -> its mini-batch: the same on every rank, and again on demand (probes)."""

    def __init__(self, problem, batch_size: int, seed: int, lookback: int = 1):
        self.problem, self.train = problem, problem.data.train
        self.n, self.b = len(self.train), int(batch_size)
        self.seed = int(seed)
        # Serial SGD's order; a batch ``lookback`` iterations back can be made again (delays, probes).
        self.order = Sampler(self.n, self.b, torch.Generator(device="cpu").manual_seed(seed_for(seed, 0)), lookback)
        self.spe = self.order.spe

    def indices(self, s: int) -> torch.Tensor:
        return self.order.indices(s)

    def size(self, s: int) -> int:
        return int(self.indices(s).numel())

    def x(self, s: int) -> torch.Tensor:
        x, _ = self.train[self.indices(s)]
        if self.problem.has_transform:
            # Augmentation seeded by (seed, s): the batch of iteration s is a function of s.
            gen = torch.Generator(device="cpu").manual_seed(seed_for(self.seed, 1_000_000 + s))
            x = self.problem.train_batch(x, gen)
        return x

    def y(self, s: int) -> torch.Tensor:
        return self.train.y[self.indices(s)]

    def sample(self) -> torch.Tensor:
        """One training sample as the model sees it (shapes and FLOPs)."""
        x, _ = self.train[torch.arange(1, device="cpu")]
        return self.problem.eval_batch(x) if self.problem.has_transform else x


def profile(parts: list[nn.Sequential], sample: torch.Tensor,
            where: list[torch.device] | None = None) -> tuple[list[tuple], list[tuple], list[float]]:
    """Per stage: input shape and output shape of one sample, and forward FLOPs (eval mode, no grad);
    stage k runs on ``where[k]`` (None: where its parameters are)."""
    from torch.utils.flop_counter import FlopCounterMode

    ins, outs, flops = [], [], []
    h = sample
    for part, device in zip(parts, where or [module_device(p) for p in parts]):
        h = h.to(device)
        was = part.training
        part.eval()
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                out = part(h)
        finally:
            part.train(was)
        ins.append(tuple(h.shape[1:]))
        outs.append(tuple(out.shape[1:]))
        flops.append(float(fc.get_total_flops()))
        h = out
    return ins, outs, flops


def stage_out_shapes(cfg, problem) -> list[tuple[int, ...]]:
    """Per stage of ``cfg``'s split (``topology.stages``, ``algo.cuts``), the output shape of one sample:
    the model built and run on the meta device (shapes only: no memory, no compute), so that a check of
    the split runs in the parent before launch (:func:`hdist.launch.check_problem`)."""
    a = cfg.algo
    kwargs = dict(problem.model_cfg)
    name = kwargs.pop("name")
    with torch.device("meta"):
        model = build_model(name, **kwargs)
    cuts = [int(c) for c in a.cuts] if a.get("cuts") is not None else None
    parts = split_stages(model, int(cfg.topology.stages), cuts)
    x, _ = problem.data.train[torch.arange(1, device="cpu")]
    h = (problem.eval_batch(x) if problem.has_transform else x).to("meta")
    outs = []
    with torch.no_grad():
        for part in parts:
            h = part.eval()(h)
            outs.append(tuple(h.shape[1:]))
    return outs


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


class Env:
    """What the stages of one run share: config, communication, logger, links, data, the cut model."""

    def __init__(self, cfg, comm, log, links, data: Batches, problem, parts, ins, outs, flops,
                 where: list[torch.device] | None = None):
        self.cfg, self.comm, self.log, self.links, self.data, self.problem = cfg, comm, log, links, data, problem
        self.parts, self.ins, self.outs = parts, ins, outs
        # stage k's device (None: where its parameters are)
        self.devices = list(where) if where is not None else [module_device(p) for p in parts]
        self.K = len(parts)
        total = sum(flops)
        self.flops = flops
        self.total_flops = total
        # Each stage's share of the model's forward FLOPs (equal shares when nothing is counted).
        self.share = [f / total for f in flops] if total > 0 else [1.0 / self.K] * self.K


class Stage:
    """Stage k (0-based; the thesis' module k + 1) of K: its layers, optimizer, links, measurements.

    Subclasses write ``forward(t)`` and ``backward(t, lr)`` with these helpers; ``backward`` ends
    with :meth:`update`. ``batch_of(k, K, t)`` names the iteration whose mini-batch the gradient
    applied at iteration t comes from (the sigma probe uses it).
    """

    def __init__(self, env: Env, k: int):
        self.env, self.k, self.K = env, k, env.K
        self.first, self.last = k == 0, k == env.K - 1
        self.module = env.parts[k]
        self.device = env.devices[k]
        self.params = list(self.module.parameters())
        self.buffers = list(self.module.buffers())
        self.dtype = self.params[0].dtype if self.params else torch.float32
        self.problem, self.data, self.comm, self.log = env.problem, env.data, env.comm, env.log
        self.links = env.links
        self.in_shape, self.out_shape = env.ins[k], env.outs[k]
        self.share = env.share[k]
        self.opt = make_optimizer(env.cfg.algo, self.params, env.problem.l2)
        self._param_ptrs = {p.untyped_storage().data_ptr() for p in self.params}
        self._buffer_ptrs = {b.untyped_storage().data_ptr() for b in self.buffers}
        self.mem = HeldBytes()
        self.times = {"forward": 0.0, "backward": 0.0, "wait": 0.0}
        self.loss: torch.Tensor | None = None  # last stage: the iteration's mini-batch loss
        self.sigma_ref: torch.Tensor | None = None  # the probe's exact gradient, until update uses it
        self.sigma: float | None = None  # the measured sigma, until the driver logs it
        self.want_reg = False
        self.reg = 0.0
        self._probe: tuple | None = None

    # --- the schedule (subclasses) -------------------------------------------------------------
    @staticmethod
    def batch_of(k: int, K: int, t: int) -> int:
        return t

    def forward(self, t: int) -> None:
        raise NotImplementedError

    def backward(self, t: int, lr: float) -> None:
        raise NotImplementedError

    def finish(self, T: int) -> None:
        """After the last iteration: receive what is still on the way to this stage, free what it holds."""

    # --- time ----------------------------------------------------------------------------------
    @contextmanager
    def timed(self, phase: str, samples: int = 0, work: float = 0.0):
        """Time a phase of this stage on the rank's clock. With ``work``, the phase is a compute
        block of this stage's worker (a fraction ``work`` of the cost model's step for ``samples``):
        the sim charges it to the virtual clock, a real backend may straggle in it (the phase's
        time includes the hold, as the sim's does). Both clock reads wait for the stage's device first:
        CUDA kernels run asynchronously, so the phase's time is its kernels' (and no earlier phase's)."""
        devices.synchronize(self.device)
        t0 = self.comm.now()
        if work > 0:
            with self.comm.compute(samples, work=work, worker=self.k):
                yield
        else:
            yield
        devices.synchronize(self.device)
        self.times[phase] += self.comm.now() - t0

    # --- links ---------------------------------------------------------------------------------
    def receive_input(self, t: int) -> torch.Tensor:
        """x^t on the first stage, else h_{k-1}^t from stage k - 1 (blocked time is wait_s)."""
        if self.first:
            return self.data.x(t).to(self.device)
        with self.timed("wait"):
            return self.links.recv(self.k, self.k - 1, ACT, (self.data.size(t), *self.in_shape), self.dtype,
                                   self.device)

    def send_output(self, h: torch.Tensor) -> None:
        self.links.send(self.k, self.k + 1, ACT, h)

    def receive_grad(self, s: int) -> tuple[torch.Tensor, list]:
        """The error gradient for the output of iteration s's batch, from stage k + 1; it is held
        (counted) until the caller frees the token."""
        with self.timed("wait"):
            g = self.links.recv(self.k, self.k + 1, GRAD, (self.data.size(s), *self.out_shape), self.dtype,
                                self.device)
        return g, self.mem.hold([g])

    def send_grad(self, g: torch.Tensor | None, s: int) -> None:
        """The gradient of the input of iteration s's batch, to stage k - 1."""
        if g is None:
            raise RuntimeError(f"pipeline: stage {self.k + 1} has no gradient for its input of iteration {s}")
        self.links.send(self.k, self.k - 1, GRAD, g)

    # --- compute -------------------------------------------------------------------------------
    def play(self, h: torch.Tensor, *, grad: bool = True, stale: bool = False):
        """Run the stage's layers on ``h``. With ``grad``, record the autograd graph and hold the
        tensors it saves (returns (out, token)); ``stale``: the weights will change before the
        backward, so the graph keeps a snapshot of every parameter it saves (the backward is then
        the gradient at the weights of this forward: eq. 5.8's w^{t-K+k})."""
        if not grad:
            with torch.no_grad():
                return self.module(h), []
        saved: list[torch.Tensor] = []
        params, buffers = self._param_ptrs, self._buffer_ptrs

        def pack(x: torch.Tensor) -> torch.Tensor:
            ptr = x.untyped_storage().data_ptr()
            if ptr in params:
                if not stale:
                    return x  # the live weights: held anyway, not counted
                snap = x.detach().clone()
                saved.append(snap)
                return snap
            # Detached (same storage, so counted the same): a saved output returned as itself would
            # hold its own grad_fn, a cycle through autograd's C++ graph that Python's gc cannot free;
            # a graph never backpropagated (DDG's last K-k-1 forwards, a run's end) then leaked all
            # its activations into the next run of the same process (thesis-fig27 small: 24 GB).
            x = x.detach()
            if ptr not in buffers:
                saved.append(x)
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            out = self.module(h)
        return out, self.mem.hold(saved)

    def set_loss(self, out: torch.Tensor, t: int) -> torch.Tensor:
        """Last stage: the loss of iteration t's mini-batch."""
        self.loss = self.problem.data_loss(out, self.data.y(t).to(out.device))
        return self.loss

    def backprop(self, out: torch.Tensor, delta: torch.Tensor | None, samples: int, free=()) -> None:
        """out.backward(delta) (the loss when delta is None), then free the given tokens (the
        graph's saved tensors are gone after the backward)."""
        with self.timed("backward", samples, BACKWARD_SHARE * self.share):
            out.backward() if delta is None else out.backward(delta)
        for token in free:
            self.mem.free(token)

    def save_buffers(self) -> list[torch.Tensor]:
        return [b.detach().clone() for b in self.buffers]

    def restore_buffers(self, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for b, c in zip(self.buffers, saved):
                b.copy_(c)

    def clear_grads(self) -> None:
        for p in self.params:
            p.grad = None

    def zero_grads(self) -> None:
        """A gradient of zeros (eq. 5.8 before the first delayed gradient arrives): the optimizer
        still takes its step, so its state counts iterations as the algorithm boxes do."""
        for p in self.params:
            p.grad = torch.zeros_like(p)

    def flat_grad(self) -> torch.Tensor:
        if not self.params:
            return torch.zeros(0, dtype=torch.float64, device=self.device)
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).double()
                          for p in self.params])

    def update(self, lr: float) -> None:
        """Apply the gradient in p.grad with the stage's optimizer (the last line of every box)."""
        if self.sigma_ref is not None:
            ref, g = self.sigma_ref, self.flat_grad()
            denom = float(ref.dot(ref))
            self.sigma = float(ref.dot(g)) / denom if denom > 0 else None
            self.sigma_ref = None
        if self.want_reg:
            with torch.no_grad():
                self.reg = 0.5 * self.problem.l2 * float(sum(p.pow(2).sum() for p in self.params))
        if self.opt is None:
            return
        with self.timed("backward"):
            for group in self.opt.param_groups:
                group["lr"] = lr
            self.opt.step()

    # --- sigma probe: one exact BP pass of batch s at the current weights ----------------------
    def probe_forward(self, s: int) -> None:
        if self.first:
            h = self.data.x(s).to(self.device)
        else:
            h = self.links.recv(self.k, self.k - 1, PROBE_ACT, (self.data.size(s), *self.in_shape), self.dtype,
                                self.device)
            h.requires_grad_(True)
        saved = self.save_buffers()
        out = self.module(h)
        if self.last:
            out = self.problem.data_loss(out, self.data.y(s).to(out.device))
        else:
            self.links.send(self.k, self.k + 1, PROBE_ACT, out)
        self._probe = (h, out, saved)

    def probe_backward(self, s: int, keep: bool) -> None:
        h, out, saved = self._probe
        self._probe = None
        held = [p.grad for p in self.params]
        self.clear_grads()
        if self.last:
            out.backward()
        else:
            out.backward(self.links.recv(self.k, self.k + 1, PROBE_GRAD, (self.data.size(s), *self.out_shape),
                                         self.dtype, self.device))
        if not self.first:
            g = h.grad if h.grad is not None else torch.zeros_like(h)
            self.links.send(self.k, self.k - 1, PROBE_GRAD, g)
        if keep:
            self.sigma_ref = self.flat_grad()
        for p, g in zip(self.params, held):
            p.grad = g
        # The probe leaves BatchNorm's running statistics as they were (restored after the backward,
        # which may read them).
        self.restore_buffers(saved)

    # --- measurements --------------------------------------------------------------------------
    def log_measurements(self) -> None:
        n = self.k + 1
        values = {f"forward_s/{n}": self.times["forward"], f"backward_s/{n}": self.times["backward"],
                  f"wait_s/{n}": self.times["wait"], f"peak_mem_bytes/{n}": float(self.mem.peak)}
        if self.device.type == "cuda":
            # What the allocator reports for the stage's GPU (weights, optimizer state, workspace and the
            # held bytes above): the device's peak, shared with any other stage placed on the same GPU.
            values[f"peak_cuda_bytes/{n}"] = float(torch.cuda.max_memory_allocated(self.device))
        self.log.log_many("comm", values)

    def log_extra(self) -> None:
        """An algorithm's own rows at logging steps (DNI: its synthesizers' error)."""

    # --- the composed model's state (evaluation on a K-rank world) -----------------------------
    def state_tensors(self) -> list[torch.Tensor]:
        return state_tensors(self.module)


def state_tensors(module: nn.Module) -> list[torch.Tensor]:
    """Parameters and floating-point buffers (BatchNorm statistics): what evaluation reads."""
    return [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters are (the CPU for a module without parameters)."""
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def stage_devices(rank_device: torch.device, K: int, world: int) -> list[torch.device]:
    """Stage k's device. A world of K ranks: every stage on its rank's device (``ctx.device``). A world of
    one rank (serial): stage k on the GPU k places after the rank's (``cuda:((i + k) mod GPUs)``, i the
    rank's GPU: one GPU per stage where there are K), or the CPU for every stage."""
    if world != 1 or rank_device.type != "cuda":
        return [rank_device] * K
    first = rank_device.index or 0
    return [devices.rank_device("cuda", first + k) for k in range(K)]


class CrossDevice(nn.Module):
    """The K stages composed over their devices (evaluation of a serial run with stages on several GPUs):
    each stage's input moves to its device, the output to ``out_device`` (where the labels are)."""

    def __init__(self, parts: list[nn.Sequential], where: list[torch.device], out_device: torch.device):
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.where, self.out_device = list(where), out_device

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for part, device in zip(self.parts, self.where):
            h = part(h.to(device))
        return h.to(self.out_device)


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


def run(ctx, stage_cls: type[Stage]) -> None:
    """Train with ``stage_cls`` on this rank's stages (all K on a world of one rank, else stage = rank)."""
    cfg, comm, log = ctx.cfg, ctx.comm, ctx.log
    a = cfg.algo
    K = int(cfg.topology.stages)
    world = int(comm.world_size)
    if world not in (1, K):
        raise RuntimeError(f"pipeline: a world of {world} ranks cannot run topology.stages={K} (1 or {K} ranks)")
    problem = build_problem(cfg, ctx.device)
    # Every rank builds the whole model from the serial run's initialisation and keeps its stage.
    model = problem.build_model(seed_for(cfg.seed, 0))
    cuts = [int(c) for c in a.cuts] if a.get("cuts") is not None else None
    parts = split_stages(model, K, cuts)
    where = stage_devices(ctx.device, K, world)
    for part, device in zip(parts, where):
        part.to(device)
    data = Batches(problem, int(a.batch_size), int(cfg.seed), lookback=K)
    ins, outs, flops = profile(parts, data.sample(), where)
    links = MemoryLinks() if world == 1 else CommLinks(comm)
    env = Env(cfg, comm, log, links, data, problem, parts, ins, outs, flops, where)
    local = list(range(K)) if world == 1 else [comm.rank]
    stages = [stage_cls(env, k) for k in local]
    # The composed model, for evaluation: stages on several devices pass the activations along.
    composed = model if len(set(where)) == 1 else CrossDevice(parts, where, problem.device)
    ctx.extra["model"] = model
    ctx.extra["stages"] = {st.k: st.module for st in stages}
    ctx.extra["pipeline"] = stages
    log.role = "stage"
    last = stages[-1] if stages[-1].last else None

    spe = data.spe
    total = total_steps(cfg, data.n)
    total_epochs = total / spe
    evaluate = Evaluator(ctx, problem, spe, total)
    sigma_every = int(a.get("sigma_every") or 0)
    train_every = int(cfg.log.train_every)
    l2 = float(problem.l2)

    def evaluate_now() -> None:
        paused, r0 = log.paused_s, time.perf_counter()
        if world == 1:
            evaluate(composed, data.train)
        else:
            if last is None:
                flat = torch.cat([t.detach().reshape(-1) for t in stages[0].state_tensors()])
                links.send(stages[0].k, K - 1, STATE, flat)
            else:
                for j in range(K - 1):
                    tensors = state_tensors(parts[j])
                    flat = links.recv(K - 1, j, STATE, (sum(t.numel() for t in tensors),), torch.float32,
                                      last.device)
                    with torch.no_grad():
                        off = 0
                        for t in tensors:
                            t.copy_(flat[off:off + t.numel()].view_as(t))
                            off += t.numel()
                evaluate(model, data.train)
            comm.barrier()  # everyone resumes together: an evaluation is nobody's wait
        log.paused_s = paused + (time.perf_counter() - r0)

    def probe(t: int) -> None:
        paused, r0 = log.paused_s, time.perf_counter()
        want = {k: stage_cls.batch_of(k, K, t) for k in range(K)}
        for s in sorted({s for s in want.values() if s >= 0}):
            for st in stages:
                st.probe_forward(s)
            for st in reversed(stages):
                st.probe_backward(s, keep=want[st.k] == s)
        log.paused_s = paused + (time.perf_counter() - r0)

    for device in {st.device for st in stages if st.device.type == "cuda"}:
        # peak_cuda_bytes counts this run's training from here, not what the process allocated before
        # (an earlier run of a sweep in the same process, the data's move).
        torch.cuda.reset_peak_memory_stats(device)
    ctx.progress.start(total)
    comm.barrier()
    log.restart_clock()
    comm.restart_timing()
    evaluate_now()
    for t in range(total):
        lr = lr_at(a, t / spe, total_epochs)
        step = t + 1
        logging = step % train_every == 0 or step == total
        if sigma_every and step % sigma_every == 0:
            probe(t)
        for st in stages:
            st.want_reg = logging and l2 > 0
            st.forward(t)
        for st in reversed(stages):
            st.backward(t, lr)
        log.step = log.updates = step
        log.samples += data.size(t)
        log.epoch = step / spe
        value = None
        if last is not None:
            value = float(last.loss.detach())
            check_finite(value, f"step {step}")
        for st in stages:
            if st.sigma is not None:
                log.log("train", f"sigma/{st.k + 1}", st.sigma)
                st.sigma = None
        if logging:
            for st in stages:
                st.log_measurements()
                st.log_extra()
            if l2 > 0:
                if last is None:
                    links.send(stages[0].k, K - 1, REG, torch.tensor([stages[0].reg], dtype=torch.float64,
                                                                      device=stages[0].device))
                else:
                    reg = sum(st.reg for st in stages)
                    if world > 1:
                        reg += sum(float(links.recv(K - 1, j, REG, (1,), torch.float64, last.device)[0])
                                   for j in range(K - 1))
                    value += reg
            if last is not None:
                log.log("train", "train_loss", value)
                log.log("train", "lr", lr)
            ctx.progress.update(step, value, log.epoch)
        if evaluate.due(step):
            evaluate_now()
    for st in stages:
        st.finish(total)
    if links.pending():
        raise RuntimeError(f"pipeline: {links.pending()} message(s) sent and never received (a schedule bug)")
    comm.log_straggle_total()
    comm.barrier()
    if last is not None:
        log.log("event", "train_s", comm.elapsed_s())
