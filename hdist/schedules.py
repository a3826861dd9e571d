"""Learning-rate schedules: pure functions of progress, shared by every algorithm."""

from __future__ import annotations


def lr_at(algo_cfg, epoch: float) -> float:
    """Learning rate in force during (integer part of) ``epoch``.

    constant: alpha. poly (huo17): alpha / (1 + s)^beta with s the epoch number.
    """
    alpha = float(algo_cfg.lr)
    kind = algo_cfg.get("schedule", "constant")
    if kind == "constant":
        return alpha
    if kind == "poly":
        return alpha / (1.0 + int(epoch)) ** float(algo_cfg.get("beta", 0.0))
    raise ValueError(f"algo.schedule={kind!r}: expected constant or poly")
