"""Features Replay, thesis Algorithm 11 (eqs. 6.6-6.9); figs. 26-28, Tables 6-7 ("FR").

Algorithm 11, in the thesis' order (modules k = 1..K; here stage index k - 1):

    for t = 0, 1, ..., T-1:
        sample (x^t, y^t); h_{L_0}^t = x^t                                      # line 3
        for k = 1..K:                                                           # forward ("play")
            store h_{L_{k-1}}^t in the memory (a history of size K-k+1)         # line 5
            h_{L_k}^t = F_G(k)(h_{L_{k-1}}^t; w_G(k)^t); send it to k+1         # lines 6-7
        f(w^t) = f(h_{L_K}^t, y^t)                                              # line 9
        for k = 1..K in parallel:                                               # backward
            h~_{L_k}^t = F_G(k)(h_{L_{k-1}}^{t+k-K}; w_G(k)^t)                  # line 11: replay
            g_G(k)^t from eqs. 6.8-6.9 with delta_k^t (eq. 6.7: the error gradient the
                   module k+1 sent in iteration t-1; the loss itself for k = K)  # line 12
            w_G(k)^{t+1} = w_G(k)^t - gamma_t g_G(k)^t                          # line 13
            send d f / d h_{L_{k-1}}^{t+k-K} to module k-1                      # line 14

While t+k-K < 0 the replayed input is 0 and no error gradient has come yet (delta = 0): the
gradient is 0, applied as a step (as eq. 5.8 for DDG). The play needs no graph (the replay makes
it again); the last module's replay input is its play input, so its play graph is used (the same
numbers: the weights have not changed in between). A replay leaves BatchNorm's running statistics
as the play left them. Memory: module k holds K-k+1 inputs and one graph at a time, O(L + K^2)
(Table 6).

Symbols -> config: gamma_t = ``algo.lr`` x the schedule (thesis 6.5.1: SGD, ``algo.momentum``
0.9, lr 0.01 divided by 10 at epochs 150 and 225: ``algo.schedule: step``, ``algo.milestones``,
``algo.decay_gamma``); the update is ``algo.optimizer`` (any torch.optim name); weight decay =
``objective.l2`` (thesis: 5e-4); K = ``topology.stages`` cut at ``algo.cuts``; sigma of
Assumption 6.4.1 every ``algo.sigma_every`` steps (thesis fig. 26).
"""

from __future__ import annotations

from collections import deque

from hdist.algos import _pipeline as pipeline
from hdist.algos._pipeline import FORWARD_SHARE, Stage
from hdist.types import AlgoSpec

FAMILIES = pipeline.FAMILIES


class FRStage(Stage):
    @staticmethod
    def batch_of(k: int, K: int, t: int) -> int:
        return t - (K - 1 - k)  # iteration t + k - K in the thesis' 1-based k

    def __init__(self, env, k: int):
        super().__init__(env, k)
        self.delay = self.K - 1 - k
        self.history: deque = deque()  # (s, h_{L_{k-1}}^s, held) for s = t+k-K .. t: K-k+1 inputs
        self._graph = None

    def forward(self, t: int) -> None:
        h = self.receive_input(t)
        self.history.append((t, h, self.mem.hold([h])))  # line 5
        n = h.shape[0]
        if self.last:
            if not self.first:
                h.requires_grad_(True)
            with self.timed("forward", n, FORWARD_SHARE * self.share):
                out, token = self.play(h)  # line 6, kept for the replay of the same input
                self._graph = (self.set_loss(out, t), token)  # line 9
        else:
            with self.timed("forward", n, FORWARD_SHARE * self.share):
                out, _ = self.play(h, grad=False)  # line 6: play
            self.send_output(out)  # line 7

    def backward(self, t: int, lr: float) -> None:
        s = t - self.delay  # the replayed batch: t + k - K
        self.clear_grads()
        if s >= 0:
            s0, h, held_h = self.history.popleft()
            assert s0 == s, (s0, s)
            if self.last:
                loss, token = self._graph
                self._graph = None
                self.backprop(loss, None, h.shape[0], free=(token,))  # line 12 with the loss
            else:
                delta, held_d = self.receive_grad(s)  # eq. 6.7: sent by module k+1 in iteration t-1
                if not self.first:
                    h = h.detach().requires_grad_(True)
                n = h.shape[0]
                saved = self.save_buffers()
                with self.timed("backward", n, FORWARD_SHARE * self.share):
                    out, token = self.play(h)  # line 11: replay through the current weights w^t
                self.backprop(out, delta, n, free=(token, held_d))  # line 12: eqs. 6.8-6.9
                self.restore_buffers(saved)  # the replay leaves BatchNorm's statistics as the play left them
            self.mem.free(held_h)
            if not self.first:
                self.send_grad(h.grad, s)  # line 14 (the values do not depend on line 13's update)
        else:
            self.zero_grads()  # t + k - K < 0: a zero input and no error gradient yet
        self.update(lr)  # line 13

    def finish(self, T: int) -> None:
        # Module k+1's last iteration sent the error gradient for iteration T's update, which
        # never comes: received (the link is left empty), not applied.
        s = T - self.delay
        if not self.last and s >= 0:
            _, held = self.receive_grad(s)
            self.mem.free(held)
        while self.history:
            self.mem.free(self.history.popleft()[2])
        if self._graph is not None:
            self.mem.free(self._graph[1])
            self._graph = None



def validate(cfg) -> None:
    pipeline.validate(cfg)


def run(ctx) -> None:
    pipeline.run(ctx, FRStage)


SPEC = AlgoSpec(FAMILIES, run, validate=validate, keys=pipeline.KEYS, precisions=("fp32", "bf16"))
