"""bench-sim-cost: real seconds per update of a sim run (8 workers) vs the same gradients computed
serially without a simulator (8 replicas, round-robin), and vs one-model serial SGD (reference).

Two workloads, one panel and one claim each: the MLP 784-100-10 at batch 10 (a ~0.3 ms step: the worst case,
where the sim's fixed cost per event is a large share) and lian15's CIFAR10-full network at batch 10 (a ~12 ms
step, as the lian15 stems run it). The ratio's excess over 1, times the no-sim time per update, is the sim's
own cost per update, reported in microseconds. Where the MLP also ran with 1 sim worker vs 1 replica, that
cost is split: the part already there at 1 worker (the parameter-server frame's bookkeeping, and the sim's
clock and cost model: a fixed cost per update; one worker's requests are served in place, with no event or
switch) and the part 8 workers add (the simulated server's queue and the
switches between 8 ranks). Two references split it further: AsySG-con on the serial backend (the
algorithm's own frame with no simulator: what the 1-worker part is made of), and the 8-replica loop with
untimed interpreter work between its updates (algo.interleave): how much slower torch's calls run after
Python code of the kind the sim's events are, which the sim pays on top of running that code. A last one
takes asynchrony itself with no simulator: the 8-replica loop applying each gradient 7 updates late
(algo.delay), the staleness the 8-worker sim logs, so that 8 gradients are alive at once. With the serial
backend's frame it gives what the goal leaves any simulator that runs the algorithm's code."""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.bench.common import ratio_text, sides_panel
from hdist.plots import figure

GOAL = 1.10
SIM8, RR8, SGD = "sim, 8 workers", "8 replicas, no sim", "serial SGD, 1 model"
SIM1, RR1 = "sim, 1 worker", "1 replica, no sim"
SER1, RR8_PY = "AsySG-con on serial, no sim", "8 replicas, Python between updates"
RR8_LATE = "8 replicas, updates 7 late"
ORDER = [SIM8, RR8, RR8_LATE, RR8_PY, SIM1, SER1, RR1, SGD]


def _set(v) -> bool:
    return not pd.isna(v) and bool(int(v))


def side(algo: str, workers: int, replicas, backend: str = "sim", interleave=0, delay=0) -> str:
    """The bar a run belongs to: the sim by worker count, the no-sim loop by replica count."""
    if algo == "asysg_con":
        if backend == "serial":
            return SER1
        return SIM1 if workers == 1 else f"sim, {workers} workers"
    if algo == "bench_round_robin":
        n = int(replicas)
        if _set(interleave) and n == 8:
            return RR8_PY
        if _set(delay) and n == 8:
            return f"8 replicas, updates {int(delay)} late"
        return RR1 if n == 1 else f"{n} replicas, no sim"
    return SGD if algo == "sgd" else algo


def per_update(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: real seconds per update (training only)."""
    rows = []
    for run_id, g in df.groupby("run_id"):
        first = g.iloc[0]
        if first["algo"] == "bench_round_robin":
            v = float(g[g["metric"] == "s_per_update"]["value"].iloc[0])
        else:
            last = g[g["metric"] == "train_loss_full"].sort_values("updates").iloc[-1]
            v = float(last["wall_s"] / last["updates"])
        label = side(first["algo"], int(first["workers"]), first.get("algo.replicas", 8), first["backend"],
                     first.get("algo.interleave", 0), first.get("algo.delay", 0))
        rows.append({"run_id": run_id, "model": first["model"], "side": label, "s_per_update": v})
    return pd.DataFrame(rows)


def overhead_us(part: pd.DataFrame, sim: str, no_sim: str) -> float | None:
    """The sim's own real microseconds per update: median(sim) - median(no sim), None if a side is missing."""
    med = part.groupby("side")["s_per_update"].median()
    if sim not in med.index or no_sim not in med.index:
        return None
    return float(med[sim] - med[no_sim]) * 1e6


def floor_text(part: pd.DataFrame) -> str | None:
    """The goal's budget over the 8-replica loop, less two costs no simulator removes: asynchrony's late
    updates (8 replicas, 7 late) and the algorithm's frame (AsySG-con on serial vs 1 replica); both measured
    with no simulator, apart, and added (an estimate: they may overlap). None when a side is missing."""
    med = part.groupby("side")["s_per_update"].median()
    if any(s not in med.index for s in (RR8, RR8_LATE, SER1, RR1)):
        return None
    budget = (GOAL - 1) * med[RR8] * 1e6
    late, frame = overhead_us(part, RR8_LATE, RR8), overhead_us(part, SER1, RR1)
    floor = (med[RR8] * 1e6 + late + frame) / (med[RR8] * 1e6)
    return (f"{budget:.0f} us per update over the 8-replica loop; late updates take {late:+.0f} us and the algorithm's "
            f"frame {frame:+.0f} us, leaving the simulator {budget - late - frame:+.0f} us: a simulator costing "
            f"nothing would measure {floor:.2f}x")


def plot(df: pd.DataFrame):
    t = per_update(df)
    models = sorted(t["model"].unique()) if len(t) else ["(no runs)"]
    fig, axes = figure(len(models), width=6.0, title="bench-sim-cost: 8 sim workers vs the same gradients, no sim")
    for ax, m in zip(axes, models):
        part = t[t["model"] == m]
        sides_panel(ax, part, "s_per_update", ORDER, "real microseconds per update (bar: median)", scale=1e6)
        r, _ = ratio_text(part, "s_per_update", SIM8, RR8)
        ax.set_title(f"{m}, batch 10" + (f": sim / no-sim = {r:.3f} (goal <= {GOAL})" if r is not None else ""),
                     fontsize=8)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    t = per_update(df)
    out = []
    for m, part in (t.groupby("model", sort=True) if len(t) else []):
        r, text = ratio_text(part, "s_per_update", SIM8, RR8, unit_scale=1e6, unit=" us/update")
        if r is not None:
            extra, fixed = overhead_us(part, SIM8, RR8), overhead_us(part, SIM1, RR1)
            split = (f" ({fixed:.0f} us already with 1 worker, {extra - fixed:.0f} us added at 8 workers)"
                     if fixed is not None else "")
            out.append(Claim(f"{m}: simulating 8 workers costs <= {GOAL}x computing the same gradients serially "
                             "(8 replicas, no simulator)", f"<= {GOAL}",
                             f"{text}; the sim's own cost {extra:.0f} us per update{split}", r <= GOAL))
        r, text = ratio_text(part, "s_per_update", SIM1, RR1, unit_scale=1e6, unit=" us/update")
        if r is not None:
            out.append(Claim(f"{m}, for reference: the sim's cost at 1 worker (1 replica, no simulator)", "(no goal)",
                             f"{text}; {overhead_us(part, SIM1, RR1):.0f} us per update", None))
        r, text = ratio_text(part, "s_per_update", SIM1, SER1, unit_scale=1e6, unit=" us/update")
        if r is not None:
            out.append(Claim(f"{m}, for reference: the sim at 1 worker vs the same algorithm on the serial backend",
                             "(no goal)", f"{text}; {overhead_us(part, SIM1, SER1):+.0f} us per update", None))
        r, text = ratio_text(part, "s_per_update", RR8_PY, RR8, unit_scale=1e6, unit=" us/update")
        if r is not None:
            between = df[(df["metric"] == "interleaved_s_per_update") & (df["model"] == m)]["value"].median() * 1e6
            out.append(Claim(f"{m}, for reference: the 8-replica updates with untimed Python run between them",
                             "(no goal)", f"{text}; {overhead_us(part, RR8_PY, RR8):+.0f} us per update in the "
                             f"updates themselves, after {between:.0f} us of Python", None))
        r, text = ratio_text(part, "s_per_update", RR8_LATE, RR8, unit_scale=1e6, unit=" us/update")
        if r is not None:
            out.append(Claim(f"{m}, for reference: the 8-replica updates applied 7 late, as 8 asynchronous workers' "
                             "are (no simulator)", "(no goal)",
                             f"{text}; {overhead_us(part, RR8_LATE, RR8):+.0f} us per update", None))
            left = floor_text(part)
            if left is not None:
                out.append(Claim(f"{m}, for reference: what the {GOAL}x goal leaves a simulator that runs the "
                                 "algorithm's code", "(no goal)", left, None))
        r, text = ratio_text(part, "s_per_update", SIM8, SGD, unit_scale=1e6, unit=" us/update")
        if r is not None:
            out.append(Claim(f"{m}, for reference: sim (8 workers) vs one-model serial SGD", "(no goal)", text, None))
    return out
