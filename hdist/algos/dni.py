"""DNI: decoupled neural interfaces with synthetic gradients (Jaderberg et al. 2017), as the thesis
compares it in 5.5.1 (figs. 17-19) and 6.5.1 (fig. 28, Table 6: "DNI").

Each stage k < K owns a synthesizer M_k that predicts the error gradient of its output from the
output and the label (thesis 5.5.1: "we also input label information into the synthetic
network"): three 5x5 convolutions with resolution-preserving padding (2), L filters where L is
the channels at the split, batch normalisation and ReLU after the two hidden ones (6.5.1), a
plain 5x5 convolution out; for flat activations the same with linear layers. One iteration t,
on stage k:

    h_k^t = F_k(h_{k-1}^t; w_k^t); send h_k^t to k+1                    # forward
    delta^_k^t = M_k(h_k^t, y^t)                                        # synthetic gradient: no wait
    backprop delta^_k^t through F_k; send d/dh_{k-1}^t to k-1; update w_k
    M_k <- M_k - step of || M_k(h_k^{t-1}, y^{t-1}) - delta_k^{t-1} ||^2  # the gradient stage k+1
                 sent in iteration t-1 (itself from k+1's synthesizer below the top: bootstrapped)

The last stage backpropagates its loss as BP does. No stage ever waits for a backward: the
synthesizer regresses onto the previous iteration's true gradient. Stage k holds one graph and
its previous output (memory O(L + K L_s), Table 6).

Choices the papers leave open, made here: M_k's output layer starts at zero (Jaderberg et al.:
the first synthetic gradients are 0); M_k predicts b x the gradient of the mini-batch mean loss
(a per-sample scale, the same for any batch size b) in units of a running RMS r of those targets
(an exponential average, weight ``RMS_DECAY``, started at the first non-zero target), and the
stage applies r M_k / b. Why the unit: an Adam step moves every weight by about the learning rate
whatever the target's scale, so a synthesizer regressing onto raw gradients (about 1e-2 per
element after ResNet-8's stem) overshoots them by far (measured here, ResNet-8 split after its
stem, Adam 1e-3, batch 64: relative error 2,400 after three steps on raw targets; with the unit
1.00, then 0.92 after 15 steps); the batch normalisation uses batch statistics always (no running
statistics: M_k only ever runs in training); labels enter as one-hot planes (a target value for
the squared loss); M_k trains with
``algo.optimizer`` at ``algo.synth_lr`` (null: ``algo.lr``), mean squared error. ``synth_loss/k``
logs || M_k - delta ||^2 / || delta ||^2 of the last regression step (1 at the start: it falls
as M_k learns).

Symbols -> config: the stages' optimizer = ``algo.optimizer`` (thesis 5.5.1: Adam, lr 1e-3,
batch 128), L = ``algo.synth_width`` (null: the split's channels), K = ``topology.stages`` cut at
``algo.cuts`` (thesis fig. 17: ResNet-8 split after layer 1, 3, 5 or 7 =
``algo.cuts=[1|2|3|4]``, :data:`hdist.models.resnet.RESNET8_SPLIT_POINTS`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hdist.algos import _pipeline as pipeline
from hdist.algos._pipeline import FORWARD_SHARE, make_optimizer
from hdist.algos.bp import BPStage
from hdist.rules import finite_pos, int_at_least, opt
from hdist.types import AlgoSpec, ConfigError, seed_for

FAMILIES = pipeline.FAMILIES

#: the value rules of this algorithm's own keys (hdist.rules)
KEYS = {
    **pipeline.KEYS,
    "algo.synth_lr": (opt(finite_pos), "null or a finite number > 0"),
    "algo.synth_width": (opt(int_at_least(1)), "null or an integer >= 1 (filters)"),
}
RMS_DECAY = 0.99  # weight of the old value in the running RMS of the synthesizer's targets


#: activation ranks (per sample) a synthesizer is built for: flat [D] (linear layers), [C, H, W] (convolutions)
SYNTH_RANKS = (1, 3)


def check_problem(cfg, problem) -> None:
    """Every cut falls where the activations have a shape a synthesizer is built for (run in the parent,
    before launch, on every backend: :func:`hdist.launch.check_problem`)."""
    outs = pipeline.stage_out_shapes(cfg, problem)
    for k, shape in enumerate(outs[:-1]):  # the last stage backpropagates its loss: no synthesizer
        if len(shape) not in SYNTH_RANKS:
            cuts = cfg.algo.get("cuts")
            where = f"algo.cuts={[int(c) for c in cuts]}" if cuts is not None else \
                f"algo.cuts=null (balanced over topology.stages={int(cfg.topology.stages)})"
            raise ConfigError(f"{where}: algo=dni's stage {k + 1} of model={problem.model_cfg.get('name')} outputs "
                              f"activations of shape {list(shape)}, which no synthesizer takes; allowed: cuts where "
                              f"the activations are flat [D] or [C, H, W]")


class Synthesizer(nn.Module):
    """M(h, y) -> b x dL/dh for an activation of per-sample ``shape`` ([C, H, W] or [D])."""

    def __init__(self, shape: tuple[int, ...], n_classes: int, width: int | None = None):
        super().__init__()
        self.n_classes = int(n_classes)
        cond = self.n_classes or 1  # one-hot planes, or the regression target
        if len(shape) == 3:
            c = int(shape[0])
            w = int(width or c)
            self.net = nn.Sequential(
                nn.Conv2d(c + cond, w, 5, padding=2), nn.BatchNorm2d(w, track_running_stats=False), nn.ReLU(),
                nn.Conv2d(w, w, 5, padding=2), nn.BatchNorm2d(w, track_running_stats=False), nn.ReLU(),
                nn.Conv2d(w, c, 5, padding=2))
        elif len(shape) == 1:
            d = int(shape[0])
            w = int(width or d)
            self.net = nn.Sequential(
                nn.Linear(d + cond, w), nn.BatchNorm1d(w, track_running_stats=False), nn.ReLU(),
                nn.Linear(w, w), nn.BatchNorm1d(w, track_running_stats=False), nn.ReLU(),
                nn.Linear(w, d))
        else:  # check_problem refuses such a split before launch
            raise ValueError(f"Synthesizer: activations of shape {list(shape)}; expected [C, H, W] or [D]")
        out = self.net[-1]
        nn.init.zeros_(out.weight)  # the first synthetic gradients are 0
        nn.init.zeros_(out.bias)

    def condition(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.n_classes:
            c = F.one_hot(y.long(), self.n_classes).to(like.dtype)
        else:
            c = y.to(like.dtype).reshape(-1, 1)
        if like.dim() == 4:
            c = c[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])
        return c

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([h, self.condition(y, h)], 1))


def synth_flops(synth: Synthesizer, shape: tuple[int, ...], n_classes: int) -> float:
    """Forward FLOPs of the synthesizer for one sample (two counted: batch statistics need two)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(synth.parameters()).device
    h = torch.zeros(2, *shape, device=device)
    y = torch.zeros(2, dtype=torch.long, device=device) if n_classes else torch.zeros(2, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        synth(h, y)
    return float(fc.get_total_flops()) / 2


class DNIStage(BPStage):
    """A DNI stage: BP's forward pass (BPStage.forward); the backward uses the synthetic gradient."""

    def __init__(self, env, k: int):
        super().__init__(env, k)
        self.synth = None
        self.prev = None  # (h_k^{t-1}, y^{t-1}, held): what the next regression step needs
        self.synth_err: float | None = None
        self.rms = 0.0  # running RMS r of the targets: the synthesizer's output unit (0 until the first)
        if self.last:
            return
        a = env.cfg.algo
        n_classes = int(env.outs[-1][0]) if self.problem.loss_name == "cross_entropy" else 0
        # Seeded by (seed, stage): the same synthesizer on every backend and device (built on the CPU from
        # the CPU generator, then moved to the stage's device).
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.manual_seed(seed_for(env.cfg.seed, 1000 + k))
            synth = Synthesizer(self.out_shape, n_classes, a.get("synth_width"))
        self.synth = synth.to(self.device, self.dtype)
        self.synth_opt = make_optimizer(a, self.synth.parameters(), 0.0, lr=a.get("synth_lr") or a.lr)
        total = env.total_flops
        self.synth_share = synth_flops(self.synth, self.out_shape, n_classes) / total if total > 0 else 0.0

    def backward(self, t: int, lr: float) -> None:
        h, out, token = self._fwd
        self._fwd = None
        n = h.shape[0]
        self.clear_grads()
        if self.last:
            self.backprop(out, None, n, free=(token,))
        else:
            y = self.data.y(t).to(self.device)
            with self.timed("backward", n, FORWARD_SHARE * self.synth_share), torch.no_grad():
                dhat = self.synth(out.detach(), y) * (self.rms / n)  # the synthetic gradient of the mean loss
            self.backprop(out, dhat, n, free=(token,))
        if not self.first:
            self.send_grad(h.grad, t)
        self.update(lr)
        if not self.last:
            self.regress(t, out.detach(), y)

    def regress(self, t: int, out: torch.Tensor, y: torch.Tensor) -> None:
        """One step of M_k onto the true gradient of iteration t-1 (sent by stage k+1 then)."""
        if self.prev is not None:
            h_prev, y_prev, held = self.prev
            delta, held_d = self.receive_grad(t - 1)
            m = h_prev.shape[0]
            target = delta * m
            ms = float(target.pow(2).mean())
            self.rms = math.sqrt(ms if self.rms == 0 else RMS_DECAY * self.rms ** 2 + (1 - RMS_DECAY) * ms)
            unit = self.rms if self.rms > 0 else 1.0
            with self.timed("backward", m, 3 * FORWARD_SHARE * self.synth_share):
                pred = self.synth(h_prev, y_prev)  # in units of the running RMS
                loss = F.mse_loss(pred, target / unit)
                self.synth_opt.zero_grad(set_to_none=True)
                loss.backward()
                self.synth_opt.step()
            norm = float(target.pow(2).sum())
            err = float((pred.detach() * unit - target).pow(2).sum())
            self.synth_err = err / norm if norm > 0 else None
            self.mem.free(held)
            self.mem.free(held_d)
        self.prev = (out, y, self.mem.hold([out]))

    def log_extra(self) -> None:
        if self.synth_err is not None:
            self.log.log("train", f"synth_loss/{self.k + 1}", self.synth_err)

    def finish(self, T: int) -> None:
        # Stage k+1's last iteration sent the true gradient of batch T-1: received, not used.
        if self.prev is not None:
            _, held = self.receive_grad(T - 1)
            self.mem.free(held)
            self.mem.free(self.prev[2])
            self.prev = None


def validate(cfg) -> None:
    pipeline.validate(cfg)


def run(ctx) -> None:
    pipeline.run(ctx, DNIStage)


SPEC = AlgoSpec(FAMILIES, run, validate=validate, check_problem=check_problem, keys=KEYS, precisions=("fp32", "bf16"))
