"""bench-gpu-overhead: hdist's serial SGD steps/s against a minimal torch loop on the same device, per model.

The claim (>= 0.95x the raw loop, from the GPU issue) is about a GPU: on a run whose device was the CPU it is
n/a ("no GPU"), and where hdist's model was not on the run's device it fails (that hdist trained elsewhere)."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.bench.overhead import ratio_medians
from hdist.plots import figure

GOAL = 0.95  # minimum median ratio hdist / raw on a GPU, from the GPU issue


def _flag(df: pd.DataFrame, metric: str) -> pd.Series:
    """Per model: whether every run's ``metric`` row (1/0) is 1."""
    d = df[df["metric"] == metric]
    return d.groupby("model")["value"].min() >= 1


def medians(df: pd.DataFrame) -> pd.DataFrame:
    """Per model: the batch, the median steps/s of each side, their ratio and its min-max over repetitions."""
    d = df[df["metric"] == "steps_per_s"]
    med = ratio_medians(d, "model")
    med["batch"] = d.groupby("model")["algo.batch_size"].first()
    med["on_cuda"] = _flag(df, "on_cuda").reindex(med.index, fill_value=False)
    med["hdist_on_device"] = _flag(df, "hdist_on_device").reindex(med.index, fill_value=False)
    return med


def plot(df: pd.DataFrame):
    med = medians(df)
    where = "GPU" if len(med) and med["on_cuda"].all() else "CPU (smoke: plumbing only)"
    fig, (ax1, ax2) = figure(2, title=f"bench-gpu-overhead: serial SGD vs a raw torch loop, on the {where}")
    x = list(range(len(med)))
    labels = [f"{m}\nbatch {int(b)}" for m, b in zip(med.index, med["batch"])]
    w = 0.38
    ax1.bar([i - w / 2 for i in x], med["raw"], w, label="raw torch loop")
    ax1.bar([i + w / 2 for i in x], med["hdist"], w, label="hdist serial SGD")
    ax1.set_xticks(x, labels, fontsize=7)
    ax1.set_ylabel("steps/s (median)")
    ax1.legend(fontsize=7)
    ax2.bar(x, med["ratio"], color="tab:green")
    ax2.errorbar(x, med["ratio"], yerr=[med["ratio"] - med["ratio_min"], med["ratio_max"] - med["ratio"]],
                 fmt="none", color="k", capsize=3)
    ax2.hlines([GOAL] * len(x), [i - 0.4 for i in x], [i + 0.4 for i in x], colors="r", linestyles="--")
    ax2.set_xticks(x, labels, fontsize=7)
    ax2.set_ylabel("hdist / raw (median; bars: min-max)")
    ax2.set_ylim(0, 1.2)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    out = []
    for m, row in medians(df).iterrows():
        text = f"{row['ratio']:.3f} ({row['hdist']:.1f} vs {row['raw']:.1f} steps/s)"
        claim = Claim(f"{m} at batch {int(row['batch'])}: hdist's serial SGD runs at >= {GOAL:.2f}x a raw torch "
                      "loop on the same GPU", f">= {GOAL:.2f}", text, bool(row["ratio"] >= GOAL), kind="bench")
        if not row["on_cuda"]:
            claim = claim.not_applicable("no GPU")
        elif not row["hdist_on_device"]:
            claim = Claim(claim.claim, claim.paper, f"{text}; hdist's model was not on the GPU", False, kind="bench")
        out.append(claim)
    return out
