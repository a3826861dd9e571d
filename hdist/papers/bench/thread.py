"""bench-thread: real seconds per update of AsySG-con on the thread backend (1 worker, and 2 for
reference) against the same run on the serial backend, MLP 784-100-10, batch 10.

One thread worker does serial's work plus the thread backend's own: its launcher, lock and
abort checks. A rank thread that made a second OpenMP team on cores the first one keeps busy
cost 3.6x here before rank 0 ran on the calling thread; this benchmark keeps that in view.

The goal, <= 1.25x, is set to catch that, not the backend's own cost: its lock, abort check and
shared update counters (torch tensors, so that the process backend can share them) cost ~20-25 us
per update on this ~0.25 ms step, 1.10x serial as measured in one process (medians of 7)."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.bench.common import ratio_panel, ratio_text
from hdist.plots import figure

GOAL = 1.25  # see the docstring: a guard against a second OpenMP team (3.6x), above the lock's ~1.10x
SERIAL, T1, T2 = "serial", "thread, 1 worker", "thread, 2 workers"
ORDER = [SERIAL, T1, T2]


def per_update(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: training seconds (common start to the last worker done) per update, and its side."""
    t = df[df["metric"] == "train_s"].groupby("run_id")[["backend", "workers", "value"]].first()
    upd = df[df["metric"] == "updates_total"].groupby("run_id")["value"].sum()
    t = t.join(upd.rename("updates"))
    t["s_per_update"] = t["value"] / t["updates"]
    t["side"] = [SERIAL if b == "serial" else f"thread, {int(w)} worker{'s' if int(w) > 1 else ''}"
                 for b, w in zip(t["backend"], t["workers"])]
    return t.reset_index()[["run_id", "side", "s_per_update"]]


def plot(df: pd.DataFrame):
    t = per_update(df)
    fig, (ax,) = figure(1, width=5.0, title="bench-thread: AsySG-con, MLP, batch 10")
    ratio_panel(ax, t, "s_per_update", ORDER, T1, SERIAL, "real microseconds per update (bar: median)",
                "thread (1 worker) / serial", GOAL, scale=1e6)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    t = per_update(df)
    what = f"one thread worker costs <= {GOAL}x the serial backend per update"
    r, text = ratio_text(t, "s_per_update", T1, SERIAL, unit_scale=1e6, unit=" us/update")
    out = [Claim(what, f"<= {GOAL}", text, r <= GOAL) if r is not None else not_checked(what, f"<= {GOAL}", text)]
    r2, text2 = ratio_text(t, "s_per_update", T2, SERIAL, unit_scale=1e6, unit=" us/update")
    if r2 is not None:
        out.append(Claim("for reference: 2 thread workers vs serial, per update (the GIL serialises small steps)",
                         "(no goal)", text2, None))
    return out
