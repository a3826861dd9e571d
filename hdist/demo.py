"""The headline command on a CPU: ``hdist run algo=clars model=resnet50`` sized to learn visibly.

Written as is, that command trains ResNet-50 for 1000 classes at batch 128: on a 2-core CPU a few
steps take minutes and the loss cannot move. When the run will be on a CPU and the user gave none of
the sizing keys (:data:`SIZING_KEYS`), a data-parallel run (mNAG, LARS, CLARS) of an ImageNet-sized
model (1000 classes) on the synthetic data keeps its model and algorithm and is resized
(:data:`CPU_SIZE`): 10 classes, batch 8, the model's 64x64 input, :data:`STEPS` steps on a small
training set seen several times, ``train_loss`` and ``layer_lr`` logged at every step. It says so in
one line at start. A GPU (``topology.devices=cuda``) or any sizing key on the command line runs the
command as written.
"""

from __future__ import annotations

import sys

#: keys (and groups) the user sets to choose a size: any of them on the command line turns the demo off
SIZING_KEYS = frozenset({
    "scale", "scale.epochs", "scale.n_train", "scale.n_test", "model.num_classes", "model.input_shape",
    "algo.batch_size", "algo.accum_steps", "algo.max_steps", "algo.budget_gflop", "algo.subsample",
    "log.train_every", "log.layer_every", "log.evals_per_epoch", "log.eval_max_samples", "topology.workers",
})
DP_ALGOS = ("mnag", "lars", "clars")  # hdist/algos/dp.py
FULL_CLASSES = 1000  # an ImageNet-sized model: its default classifier
STEPS = 60

#: the resized run, dotted key -> value
CPU_SIZE = {
    "model.num_classes": 10,
    "algo.batch_size": 8,
    "algo.accum_steps": 1,
    "algo.base_batch": None,        # gamma_scale = algo.lr: scaled down to B=8 it is 1/16, too small for 60 steps
    "algo.subsample": 2,            # CLARS's |J|: per-sample gradients cost ~8 batched ones (hdist/algos/dp.py)
    "algo.max_steps": STEPS,
    "algo.budget_gflop": None,      # the step count above is the cap
    "scale.n_train": 96,            # 12 steps an epoch: each sample seen 5 times, so that the loss can fall
    "scale.n_test": 32,
    "scale.epochs": 5,
    "log.train_every": 1,
    "log.layer_every": 1,
    "log.m_k_samples": 0,           # M_k costs per-sample gradients of 128 samples at every logged step
    "log.evals_per_epoch": 0.0,     # evaluate at start and end only
    "log.eval_max_samples": 32,
}

_SAID: set[str] = set()


def applies(cfg, user_keys: set[str]) -> bool:
    """Whether ``cfg`` (composed, before resolution) is a run the demo resizes."""
    if cfg.get("stem") != "adhoc" or cfg.algo.get("name") not in DP_ALGOS:
        return False
    if cfg.dataset.get("name") != "synthetic" or int(cfg.model.get("num_classes") or 0) != FULL_CLASSES:
        return False
    if str(cfg.topology.get("devices")) == "cuda" or user_keys & SIZING_KEYS:
        return False
    return True


def apply(cfg, user_keys: set[str]) -> bool:
    """Resize ``cfg`` in place when :func:`applies`; says so once (on stderr). Returns whether it did."""
    from omegaconf import OmegaConf

    if not applies(cfg, user_keys):
        return False
    for key, value in CPU_SIZE.items():
        OmegaConf.update(cfg, key, value, merge=False)
    shape = "x".join(str(s) for s in list(cfg.model.input_shape)[1:])
    line = (f"[hdist] on a CPU, {cfg.model.name} with {cfg.algo.name} is sized to learn in minutes: "
            f"{CPU_SIZE['model.num_classes']} classes, batch {CPU_SIZE['algo.batch_size']}, {shape} input, "
            f"{STEPS} steps (topology.devices=cuda, or any of scale / model.num_classes / algo.batch_size / "
            f"algo.max_steps, runs it as written)")
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr, flush=True)
    return True
