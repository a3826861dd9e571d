"""Learning-rate schedules: pure functions of progress, shared by every algorithm."""

from __future__ import annotations


class Plain(dict):
    """A config section as a plain dict with attribute access: read on every step of a hot loop,
    where OmegaConf's checked access costs microseconds a key."""

    __getattr__ = dict.__getitem__


def plain(section) -> Plain:
    from omegaconf import DictConfig, OmegaConf

    return Plain(OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else section)


def lr_at(algo_cfg, epoch: float, total_epochs: float | None = None) -> float:
    """Learning rate in force during (integer part of) ``epoch``.

    constant: alpha. poly (huo17): alpha / (1 + s)^beta with s the epoch number.
    The large-batch schedules of thesis ch. 4 (fig. 11) read the fractional ``epoch`` and start
    with a linear warmup over ``algo.warmup_epochs`` (0 = none): ``warmup`` (then constant),
    ``poly_decay`` (then (1 - progress)^``algo.power`` down to 0 at ``total_epochs``) and
    ``step`` (then times ``algo.decay_gamma`` at each epoch in ``algo.milestones``).
    """
    alpha = float(algo_cfg.lr)
    kind = algo_cfg.get("schedule", "constant")
    if kind == "constant":
        return alpha
    if kind == "poly":
        return alpha / (1.0 + int(epoch)) ** float(algo_cfg.get("beta", 0.0))
    if kind in LARGE_BATCH:
        return alpha * large_batch_factor(algo_cfg, epoch, total_epochs)
    raise ValueError(f"algo.schedule={kind!r}: expected constant, poly, {', '.join(LARGE_BATCH)}")


#: The schedules of thesis ch. 4: each starts with a linear warmup over ``algo.warmup_epochs``.
LARGE_BATCH = ("warmup", "poly_decay", "step")


def linear_warmup(epoch: float, warmup_epochs: float) -> float:
    """Factor of the gradual warmup (Goyal et al. 2017): epoch / warmup_epochs, rising linearly
    from 0 to 1 over ``warmup_epochs`` (fractional epochs), then 1. No warmup when 0."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return 1.0
    return max(0.0, float(epoch)) / float(warmup_epochs)


def poly_decay(epoch: float, total_epochs: float, power: float = 2.0, start: float = 0.0) -> float:
    """Factor (1 - (epoch - start) / (total_epochs - start))^power: 1 at ``start`` (the end of the
    warmup), 0 at ``total_epochs`` (the last epoch), as LARS's reference schedule [106]."""
    if epoch <= start:
        return 1.0
    span = float(total_epochs) - float(start)
    if span <= 0:
        return 1.0
    return max(0.0, 1.0 - (float(epoch) - start) / span) ** float(power)


def step_decay(epoch: float, milestones, gamma: float = 0.1) -> float:
    """Factor gamma^m, m = the number of milestones (epochs) already reached."""
    return float(gamma) ** sum(1 for m in (milestones or ()) if float(epoch) >= float(m))


def large_batch_factor(algo_cfg, epoch: float, total_epochs: float | None) -> float:
    """The factor a ``warmup`` / ``poly_decay`` / ``step`` schedule multiplies the rate by."""
    kind = algo_cfg.get("schedule")
    warm = float(algo_cfg.get("warmup_epochs") or 0.0)
    f = linear_warmup(epoch, warm)
    if kind == "poly_decay":
        if total_epochs is None:
            raise ValueError("algo.schedule=poly_decay needs the run's total epochs")
        f *= poly_decay(epoch, total_epochs, float(algo_cfg.get("power", 2.0)), start=warm)
    elif kind == "step":
        f *= step_decay(epoch, algo_cfg.get("milestones"), float(algo_cfg.get("decay_gamma", 0.1)))
    return f
