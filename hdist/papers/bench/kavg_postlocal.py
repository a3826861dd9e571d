"""bench-kavg-postlocal: hdist's K-AVG against PyTorch's PostLocalSGDOptimizer, epoch time, 2 ranks on torchdist."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.bench.common import ratio_panel, ratio_text
from hdist.plots import figure

GOAL = 1.0
SIDES = {"kavg": "hdist K-AVG", "bench_postlocal": "PyTorch PostLocalSGD"}


def epoch_times(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: side and training seconds per epoch."""
    t = df[df["metric"] == "train_s"].drop_duplicates("run_id")
    return pd.DataFrame({"side": t["algo"].map(SIDES).values,
                         "epoch_s": (t["value"] / t["scale.epochs"].astype(float)).values})


def plot(df: pd.DataFrame):
    t = epoch_times(df)
    fig, (ax,) = figure(1, width=5.0, title="bench-kavg-postlocal: MLP, K=16, B=16, 2 ranks (gloo)")
    ratio_panel(ax, t, "epoch_s", list(SIDES.values()), SIDES["kavg"], SIDES["bench_postlocal"],
                "seconds per epoch (bar: median)", "hdist / PyTorch", GOAL)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    t = epoch_times(df)
    what = f"hdist's K-AVG epoch time <= {GOAL}x PyTorch's PostLocalSGDOptimizer (same model, data, K, 2 ranks)"
    r, text = ratio_text(t, "epoch_s", SIDES["kavg"], SIDES["bench_postlocal"], unit=" s")
    if r is None:
        return [not_checked(what, f"<= {GOAL}", text)]
    return [Claim(what, f"<= {GOAL}", text, r <= GOAL)]
