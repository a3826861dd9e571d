"""SGD_SVRG: Shared-AsySVRG started from an SGD-pretrained model (huo17, section "Experiments").

huo17: "SVRG method is sensitive to initial point, and it is slower than SGD at first few
iterations. Thus, we apply Shared-AsySVRG on a pre-trained model learned by SGD" (10 epochs of
SGD for MNIST, fig. 1; 1 epoch for the CIFAR-10 features, fig. 3):

    x^0 <- x after ``algo.pretrain_epochs`` epochs of mini-batch SGD (step ``algo.pretrain_lr``)
    then Algorithm 1 (Shared-AsySVRG, :mod:`hdist.algos.svrg`) from x^0

The pretraining is one serial SGD run (worker 0, its own sample order from the run seed) written
into the shared x as one update; the other workers wait for it. Like the paper's curves, the
x axis counts the SVRG epochs only: the evaluation at update 0 is the untrained model and the
next one (update 1) the pretrained model; the pretraining time is in ``wall_s``/``sim_s`` and
its step count in the event row ``pretrain_steps``. Every other key is Shared-AsySVRG's.
"""

from __future__ import annotations

from hdist.algos import svrg
from hdist.algos._vr import run_frame
from hdist.types import AlgoSpec, ConfigError

FAMILIES = svrg.FAMILIES


def validate(cfg) -> None:
    svrg.validate(cfg)
    if not float(cfg.algo.get("pretrain_epochs") or 0) > 0:
        raise ConfigError(f"algo.pretrain_epochs={cfg.algo.get('pretrain_epochs')!r}: not allowed; expected a "
                          "number > 0 (SGD_SVRG starts from SGD; use algo=svrg for none)")


def run(ctx) -> None:
    run_frame(ctx, svrg.worker_loop)


SPEC = AlgoSpec(FAMILIES, run, validate=validate, keys=svrg.KEYS, precisions=("fp32", "bf16"))
