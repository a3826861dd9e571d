"""bench-sim-vs-real: the calibrated sim's time to target against the measured process and mpi backends.

Each real backend is paired with the sim in the same architecture: process (shared memory + a lock)
with ``backend.ps=shared``, mpi (a server rank) with ``backend.ps=server``, under topologies
calibrated on this machine at 1 and at 2 workers (``laptop_<backend>_w<P>``, ``make calibrate``).
Time to target is read on each run's own clock (real seconds, or the sim's virtual seconds),
interpolated between evaluations (:mod:`hdist.analysis.speedup`); the target is one loss every run
reaches. The prediction error of a pairing is |T_sim - T_real| / T_real on the medians over seeds.
Two reference arms (``, no core costs``, in the table, without a claim) run the 1-worker process and
mpi calibrations at 2 workers with the costs of sharing cores switched off (handoff, wake-up, jitter,
and the wait of a message for a core, ``link.desched_s``): what they add.
"""

from __future__ import annotations

import pandas as pd

from hdist.analysis.speedup import choose_target, time_to_target
from hdist.claims import Claim, not_checked
from hdist.plots import curves, data_note, figure

GOAL = 0.15
NO_CORE_COSTS = ", no core costs"  # side suffix of the reference runs without the costs of sharing cores
ARCH = {"process": "shared", "mpi": "server"}  # real backend -> the sim's backend.ps in the same architecture


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``side`` (process, mpi, or the sim's architecture and calibration, e.g. ``sim shared,
    cal. w1``, with ``, no core costs`` for the reference arm) and ``time`` (the run's own clock)."""
    d = df.copy()

    def col(key, default):
        return d[key] if key in d.columns else pd.Series([default] * len(d), index=d.index)

    ps, topo = col("backend.ps", None), col("topology.name", "")
    # The reference arm: a calibrated topology with the costs of sharing cores switched off.
    bare = (col("topology.sim.wake_s", None) == 0) & col("topology.sim.handoff_Bps", None).isna() \
        & (col("topology.sim.compute.jitter", None) == 0) & (col("topology.sim.link.desched_s", 0.0).fillna(0.0) == 0)
    d["side"] = [f"sim {p or 'server'}, cal. {str(t).rsplit('_', 1)[-1]}{NO_CORE_COSTS if n else ''}" if b == "sim"
                 else b for b, p, t, n in zip(d["backend"], ps, topo, bare)]
    d["time"] = d["sim_s"].where(d["backend"] == "sim", d["wall_s"])
    return d


def table(df: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Median time to target per side and worker count, and the target."""
    d = labelled(df)
    target = choose_target(d)
    t = time_to_target(d, target, x="time").rename("t")
    runs = d.drop_duplicates("run_id").set_index("run_id")[["side", "workers"]].join(t)
    med = runs.groupby(["workers", "side"])["t"].median().unstack("side")
    return med, target


def pairs(med: pd.DataFrame, references: bool = True) -> list[tuple[str, str]]:
    """(real side, sim side) in the same architecture, for every calibration present (and the
    reference arm, unless ``references`` is False: it carries no claim)."""
    return [(real, sim) for real, ps in ARCH.items() if real in med.columns
            for sim in med.columns if sim.startswith(f"sim {ps},") and (references or NO_CORE_COSTS not in sim)]


def errors(med: pd.DataFrame) -> dict[tuple[str, str, int], float]:
    out = {}
    for real, sim in pairs(med):
        for w in med.index:
            r, s = med.loc[w, real], med.loc[w, sim]
            if pd.notna(r) and pd.notna(s) and r > 0:
                out[(real, sim, int(w))] = abs(s - r) / r
    return out


def plot(df: pd.DataFrame):
    d = labelled(df)
    med, target = table(df)
    workers = sorted(d["workers"].unique())
    fig, axes = figure(len(workers) + 1, width=4.0, title="bench-sim-vs-real: AsySG-con, MLP, batch 10; "
                       f"target loss {target:.3g}" + data_note(df))
    for ax, w in zip(axes, workers):
        curves(ax, d[d["workers"] == w], "train_loss_full", x="time", by="side",
               ylabel=f"{w} worker(s): training loss", logy=True)
        ax.axhline(target, color="k", lw=0.6, ls=":")
        ax.set_xlabel("seconds (sim: virtual)")
    ax = axes[-1]
    sides = list(med.columns)
    width = 0.8 / max(1, len(sides))
    for i, side in enumerate(sides):
        ax.bar([j + i * width for j in range(len(med.index))], med[side].values, width=width, label=side)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(med.index))], [f"{w} worker(s)" for w in med.index])
    ax.set_ylabel("time to target (s, median)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def tables(df: pd.DataFrame) -> dict[str, str]:
    med, target = table(df)
    err = errors(med)
    lines = [f"Time to target (training loss {target:.4g}), median over seeds, seconds (sim: virtual; "
             "cal. wP = the topology calibrated on P real workers).", "",
             "| workers | " + " | ".join(med.columns) + " |", "|---" * (1 + len(med.columns)) + "|"]
    for w in med.index:
        cells = [f"{med.loc[w, c]:.3f}" if pd.notna(med.loc[w, c]) else "-" for c in med.columns]
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    lines += ["", "| real | sim | workers | prediction error |", "|---|---|---|---|"]
    for (real, sim, w), e in sorted(err.items()):
        lines.append(f"| {real} | {sim} | {w} | {e:.1%}{' (reference, no claim)' if NO_CORE_COSTS in sim else ''} |")
    return {"times": "\n".join(lines) + "\n"}


def check(df: pd.DataFrame) -> list[Claim]:
    med, target = table(df)
    err = errors(med)
    out = []
    for real, sim in pairs(med, references=False):
        for w in sorted(med.index):
            what = f"the sim ({sim}) predicts {real}'s time to target at {w} worker(s) within {GOAL:.0%}"
            if (real, sim, int(w)) not in err:
                if pd.notna(med.loc[w, sim]):  # a sim run at this worker count, but no real one to compare
                    out.append(not_checked(what, f"<= {GOAL:.0%}", "a side has no run that reached the target"))
                continue
            e = err[(real, sim, int(w))]
            out.append(Claim(what, f"<= {GOAL:.0%}",
                             f"{e:.1%} (sim {med.loc[w, sim]:.3f} s vs {real} {med.loc[w, real]:.3f} s)", e <= GOAL))
    return out
