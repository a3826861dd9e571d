"""DDG: decoupled parallel backpropagation with delayed gradients, thesis Algorithm 9 (SGD-DDG) and
Algorithm 10 (Adam-DDG) with eq. 5.8; figs. 17-23, 26-28, Tables 3, 5-7 ("DDG").

Algorithm 9 / 10, in the thesis' order (modules k = 1..K; here stage index k - 1):

    for t = 0, 1, ..., T-1:
        for k = 1..K in parallel:
            g_k^t <- [grad f_{G(k), x_{i(t-K+k)}}(w^{t-K+k})]_{G(k)}     # line 3, eq. 5.8:
                       the gradient of the batch of iteration t-K+k at the weights of that
                       iteration; 0 while t-K+k < 0
            w_{G(k)}^{t+1} <- w_{G(k)}^t - gamma_t g_k^t               # Alg. 9 line 4 (SGD)
            [Adam-DDG: m, v <- beta1, beta2 moments of g_k^t; bias-corrected step]  # Alg. 10 lines 4-8

On the pipeline of :mod:`hdist.algos._pipeline`: every iteration, stage k runs the forward of batch t
(its graph kept, with a snapshot of the weights the graph uses), then the backward of batch
t-K+k with the error gradient stage k+1 sent in the previous iteration (delay K-k: 0 for the
last stage, K-1 for the first), sends its input's gradient down, and steps. No stage waits for
another's backward of the same iteration: T_F + T_B / K per iteration on K devices (Table 3).
Stage k holds K-k+1 graphs (memory O(LK + K^2), Table 6).

Symbols -> config: gamma_t = ``algo.lr`` x the schedule (``algo.schedule``, ``algo.milestones``,
``algo.decay_gamma``, ...; :mod:`hdist.schedules`); Algorithm 9 = ``algo.optimizer: sgd`` (with
``algo.momentum`` > 0: the thesis' 5.5.2 SGD with momentum), Algorithm 10 = ``adam`` (beta1,
beta2 = 0.9, 0.999, epsilon = 1e-8 by default; ``algo.optimizer_args`` to change them); any
other torch.optim name applies the delayed gradients the same way; K = ``topology.stages``, the
modules G(k) = the stages cut at ``algo.cuts``. The zero gradient of eq. 5.8 is applied as a step
(the optimizer's state counts iterations, so Adam's bias correction uses t+1 as in Alg. 10);
``objective.l2`` enters as the optimizer's weight decay at the current weights.
"""

from __future__ import annotations

from collections import deque

from hdist.algos import _pipeline as pipeline
from hdist.algos._pipeline import FORWARD_SHARE, Stage
from hdist.types import AlgoSpec

FAMILIES = pipeline.FAMILIES


class DDGStage(Stage):
    @staticmethod
    def batch_of(k: int, K: int, t: int) -> int:
        return t - (K - 1 - k)  # iteration t - K + k in the thesis' 1-based k

    def __init__(self, env, k: int):
        super().__init__(env, k)
        self.delay = self.K - 1 - k
        self.inflight: deque = deque()  # (s, input, output or loss, held graph) of batches not yet backpropagated

    def forward(self, t: int) -> None:
        h = self.receive_input(t)
        if not self.first:
            h.requires_grad_(True)
        with self.timed("forward", h.shape[0], FORWARD_SHARE * self.share):
            # The weights change before this graph's backward (delay > 0): it keeps their values.
            out, token = self.play(h, stale=self.delay > 0)
            if self.last:
                out = self.set_loss(out, t)
        if not self.last:
            self.send_output(out)
        self.inflight.append((t, h, out, token))

    def backward(self, t: int, lr: float) -> None:
        s = t - self.delay  # line 3: the batch whose gradient this iteration applies
        self.clear_grads()
        if s >= 0:
            s0, h, out, token = self.inflight.popleft()
            assert s0 == s, (s0, s)
            if self.last:
                self.backprop(out, None, h.shape[0], free=(token,))
            else:
                delta, held = self.receive_grad(s)  # sent by stage k+1 in iteration t-1
                self.backprop(out, delta, h.shape[0], free=(token, held))
            if not self.first:
                self.send_grad(h.grad, s)
        else:
            self.zero_grads()  # eq. 5.8: 0 while t-K+k < 0
        self.update(lr)  # Alg. 9 line 4 / Alg. 10 lines 4-8

    def finish(self, T: int) -> None:
        # Stage k+1's last iteration sent the error gradient of batch T - delay: Algorithm 9 stops
        # after T iterations, so it is received (the link is left empty) and not applied.
        s = T - self.delay
        if not self.last and s >= 0:
            _, held = self.receive_grad(s)
            self.mem.free(held)
        while self.inflight:
            self.mem.free(self.inflight.popleft()[3])


def validate(cfg) -> None:
    pipeline.validate(cfg)


def run(ctx) -> None:
    pipeline.run(ctx, DDGStage)


SPEC = AlgoSpec(FAMILIES, run, validate=validate, keys=pipeline.KEYS, precisions=("fp32", "bf16"))
