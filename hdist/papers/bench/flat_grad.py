"""bench-flat-grad: FlatModel.grad (scale as the backward pass's seed, autograd's engine called
directly) vs ``torch.cat(torch.autograd.grad(scale * loss))``, real microseconds per gradient,
measured side by side in one process per model."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.bench.common import ratio_panel, ratio_text
from hdist.plots import figure

GOAL = 1.0
# The goal is checked where the call's fixed cost can show: on the MLP's ~0.2 ms gradient. On CIFAR10-full's
# ~12 ms gradient the same ~40 us is 0.3%, under the spread of repetitions: reported, no goal.
GOAL_MODELS = ("mlp",)
SIDES = {"hdist": "FlatModel.grad", "public": "torch.autograd.grad(scale * loss)"}


def per_rep(df: pd.DataFrame) -> pd.DataFrame:
    """One row per repetition and side: model, side label, microseconds per gradient."""
    d = df[df["metric"] == "us_per_step"]
    return pd.DataFrame({"model": d["model"].values, "side": d["role"].map(SIDES).values,
                         "us_per_step": d["value"].values})


def plot(df: pd.DataFrame):
    t = per_rep(df)
    models = sorted(t["model"].unique()) if len(t) else ["(no runs)"]
    fig, axes = figure(len(models), width=4.5, title="bench-flat-grad: a flat, scaled gradient, batch 10, 1 thread")
    for ax, m in zip(axes, models):
        ratio_panel(ax, t[t["model"] == m], "us_per_step", list(SIDES.values()), SIDES["hdist"], SIDES["public"],
                    "real microseconds per gradient (bar: median)", f"{m}: hdist / public", GOAL)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    t = per_rep(df)
    out = []
    for m in sorted(t["model"].unique()):
        part = t[t["model"] == m]
        what = f"{m}: FlatModel.grad costs <= {GOAL}x the public autograd call per gradient"
        r, text = ratio_text(part, "us_per_step", SIDES["hdist"], SIDES["public"], unit=" us")
        if r is None:
            out.append(not_checked(what, f"<= {GOAL}", text))
            continue
        med = part.groupby("side")["us_per_step"].median()
        saved = med[SIDES["public"]] - med[SIDES["hdist"]]
        measured = f"{text}; {saved:.1f} us saved per gradient"
        if m in GOAL_MODELS:
            out.append(Claim(what, f"<= {GOAL}", measured, r <= GOAL))
        else:
            out.append(Claim(f"for reference, {m}: FlatModel.grad vs the public autograd call per gradient",
                             "(no goal: the saving is under the noise of a long step)", measured, None))
    return out
