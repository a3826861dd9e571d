"""bench-data-models: loader throughput and per-step model time (medians over repetitions)."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.plots import figure

# Reference from the large-batch issue: "a ResNet-50 step at batch 8 and 64x64 costs ~120 ms with
# 2 threads here". Regressions show as a step time far above it.
RESNET50_STEP_S = 0.120


def medians(df: pd.DataFrame, metric: str) -> pd.Series:
    d = df[df["metric"] == metric]
    return d.groupby("role")["value"].median().sort_index()


def plot(df: pd.DataFrame):
    fig, (ax1, ax2) = figure(2, title="bench-data-models: loaders and model steps")
    load = medians(df, "samples_per_s")
    ax1.barh(list(load.index), list(load.values / 1e3))
    ax1.set_xlabel("thousand samples/s (load + parse, median)")
    step = medians(df, "step_s")
    ax2.barh(list(step.index), list(step.values * 1e3), color="tab:orange")
    ax2.set_xlabel("ms per training step (median)")
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    step = medians(df, "step_s")
    load = medians(df, "samples_per_s")
    out = []
    if "resnet50" in step.index:
        v = float(step["resnet50"])
        out.append(Claim("a resnet50 training step at batch 8, 3x64x64, 2 threads takes about 120 ms (within 2x)",
                         "~0.120 s", f"{v:.3f} s", v <= 2 * RESNET50_STEP_S))
    else:
        out.append(not_checked("resnet50 step time about 120 ms", "~0.120 s", "resnet50 not timed at this scale"))
    for name in ("mnist", "ijcnn1"):
        if name in load.index:
            out.append(Claim(f"{name} loads faster than 10,000 samples/s", ">= 1e4 samples/s",
                             f"{load[name]:.3g} samples/s", bool(load[name] >= 1e4)))
    return out
