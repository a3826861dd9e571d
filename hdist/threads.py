"""How many torch intra-op threads a rank gets when the config leaves it to hdist (null).

The rule: the configured number (``backend.threads`` or ``backend.threads_per_rank``) when set;
else 1 when the model's forward step is small (below :data:`SMALL_STEP_FLOP`), because a pool's
hand-off costs more than it saves there and, on a machine whose cores are busy, a pool thread
waits for a core at every operation; else the cores shared out among the ranks (at least 1), so
that ranks never oversubscribe the machine. ``bench-pool`` (hdist/bench/pool.py) measures the
steps per second of 1 and 2 threads on a tiny and a big model: the threshold sits between them.

A forward step = the forward FLOPs of one sample of the run's model (counted on the meta device:
no memory, no arithmetic) x the run's mini-batch (``algo.batch_size``).
"""

from __future__ import annotations

import os
from functools import lru_cache

#: forward FLOPs of a step below which a rank runs with 1 thread (bench-pool: the MLP's ~1e6-FLOP
#: step gains nothing from a pool, ResNet-20's and ResNet-50's >= 1e10-FLOP steps do)
SMALL_STEP_FLOP = 1e9


def rule_threads(cores: int, ranks: int, step_flop: float | None) -> int:
    """The rule itself: 1 for a small step, else cores // ranks (also when the step could not be counted)."""
    if step_flop is not None and step_flop < SMALL_STEP_FLOP:
        return 1
    return max(1, int(cores) // max(1, int(ranks)))


@lru_cache(maxsize=32)
def _sample_flop(model_json: str) -> float | None:
    import json

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hdist.models import build_model, get_spec

    kw = json.loads(model_json)
    name = kw.pop("name")
    shape = tuple(kw.get("input_shape") or get_spec(name).input_shape)
    try:
        with torch.device("meta"):
            model = build_model(name, **kw)
            x = torch.empty((1, *shape))
            with FlopCounterMode(display=False) as fc:
                model(x)
    except Exception:  # a model the meta device cannot run: not counted (the cores shared out, as before the rule)
        return None
    return float(fc.get_total_flops())


def step_flop(cfg) -> float | None:
    """Forward FLOPs of one mini-batch of ``cfg``'s model; None when they cannot be counted."""
    import json

    from omegaconf import OmegaConf

    model = OmegaConf.to_container(cfg.model, resolve=True)
    per_sample = _sample_flop(json.dumps(model, sort_keys=True))
    if per_sample is None:
        return None
    return per_sample * int(cfg.algo.get("batch_size") or 1)


def threads_for(cfg, ranks: int, key: str = "threads_per_rank") -> int:
    """Torch threads of each of ``ranks`` ranks of ``cfg`` on this machine: ``backend.<key>`` or the rule."""
    n = cfg.backend.get(key)
    if n:
        return int(n)
    return rule_threads(os.cpu_count() or 1, ranks, step_flop(cfg))
