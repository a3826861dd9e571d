"""BP: ordinary backpropagation across the K stages of a pipeline, the baseline of thesis ch. 5-6
(figs. 17-23 and 26-28, Tables 3, 5-7: "BP").

One iteration t (thesis 5.2, eqs. 5.3-5.5), on the pipeline of :mod:`hdist.algos._pipeline`:

    for k = 1..K:   h_k^t = F_k(h_{k-1}^t; w_k^t), h_0^t = x^t          # forward, eq. 5.3
    f = loss(h_K^t, y^t)
    for k = K..1:   delta_{k-1} = dh_k/dh_{k-1} delta_k,  g_k = dh_k/dw_k delta_k   # eqs. 5.4-5.5
                    w_k^{t+1} = optimizer_k(w_k^t, g_k)                  # each stage its own

Stage k waits for delta_k from stage k + 1 (the backward locking that DDG and FR remove), so the
stages of a K-rank world take turns: T_F + T_B per iteration (Table 3, first row).

Symbols -> config: gamma_t = ``algo.lr`` x the schedule (``algo.schedule`` ...,
:mod:`hdist.schedules`), the optimizer = ``algo.optimizer`` (sgd | adam | any torch.optim name,
``algo.momentum``, ``algo.optimizer_args``), the l2 weight decay = ``objective.l2``, batch =
``algo.batch_size``, K = ``topology.stages`` cut at ``algo.cuts`` (null: balanced).
"""

from __future__ import annotations

from hdist.algos import _pipeline as pipeline
from hdist.algos._pipeline import FORWARD_SHARE, Stage
from hdist.types import AlgoSpec

FAMILIES = pipeline.FAMILIES


class BPStage(Stage):
    def forward(self, t: int) -> None:
        h = self.receive_input(t)
        if not self.first:
            h.requires_grad_(True)
        n = h.shape[0]
        with self.timed("forward", n, FORWARD_SHARE * self.share):
            out, token = self.play(h)  # eq. 5.3
            if self.last:
                out = self.set_loss(out, t)
        if not self.last:
            self.send_output(out)
        self._fwd = (h, out, token)

    def backward(self, t: int, lr: float) -> None:
        h, out, token = self._fwd
        self._fwd = None
        self.clear_grads()
        if self.last:
            self.backprop(out, None, h.shape[0], free=(token,))
        else:
            delta, held = self.receive_grad(t)  # locked until stage k + 1's backward is done
            self.backprop(out, delta, h.shape[0], free=(token, held))  # eqs. 5.4-5.5
        if not self.first:
            self.send_grad(h.grad, t)
        self.update(lr)


def validate(cfg) -> None:
    pipeline.validate(cfg)


def run(ctx) -> None:
    pipeline.run(ctx, BPStage)


SPEC = AlgoSpec(FAMILIES, run, validate=validate, keys=pipeline.KEYS, precisions=("fp32", "bf16"))
