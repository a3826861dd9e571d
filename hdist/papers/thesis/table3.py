"""Thesis Table 3 (ch. 5.3.2): the time model -- BP T_F + T_B, DDG T_F + T_B / K per iteration -- against
measured per-stage forward and backward times.

T_F and T_B are BP's forward and backward time per iteration on one device (the ``forward_s`` and
``backward_s`` timers of its single stage over its steps), per backend (real processes; the sim). For every
BP and DDG run on K devices the measured time per iteration (the last stage's clock at the last step over
the steps, evaluations excluded) is set beside the model's; the K-stage runs' own per-stage timers are
listed too (they should add up to the one-device T_F and T_B: the cut moves work, it adds none).

Left panel(s): measured vs model per (method, K), one per backend. Table ``model``: the same numbers, with
the thesis' formulas.

Claims:
- BP on K devices takes T_F + T_B (backward locking: no stage overlaps another): measured / model in
  ``BP_BAND`` (communication may add a little);
- DDG on K devices takes no more than T_F + T_B / K (the thesis' model; a pipelined schedule can beat
  it, since the stages' forwards overlap too): measured / model <= ``DDG_MAX``;
- the K-stage runs' forward and backward timers sum to the one-device T_F + T_B within ``SUM_TOL``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hdist.claims import Claim, not_checked
from hdist.papers.thesis.pipeline_time import NAMES, md_table, run_times, table3_model
from hdist.plots import data_note, figure, name_claims, run_as

BP_BAND = (0.85, 1.35)
DDG_MAX = 1.15
SUM_TOL = 0.25
#: The network and batch of the stem at paper scale (ResNet-20: the thesis names none; batch 128, 5.5.2): titles
#: and claims name the model and batch run where they differ.
NETWORK, BATCH = "ResNet-20", 128


def rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per (backend, algo, K): medians of the time per iteration, the model's, per-stage times per iteration."""
    t = run_times(df)
    if t.empty:
        return t
    t = t.assign(it_s=t["train_s"] / t["steps"], tf=t["T_F"] / t["steps"], tb=t["T_B"] / t["steps"])
    t["stages_f"] = [[f / n for f in fw] for fw, n in zip(t["forward"], t["steps"])]
    t["stages_b"] = [[b / n for b in bw] for bw, n in zip(t["backward"], t["steps"])]
    out = []
    for (b, algo, K), g in t.groupby(["backend", "algo", "K"], sort=True):
        base = t[(t["backend"] == b) & (t["algo"] == "bp") & (t["K"] == 1)]
        tf, tb = (float(base["tf"].median()), float(base["tb"].median())) if len(base) else (math.nan, math.nan)
        m = table3_model(tf, tb, int(K))
        out.append({"backend": b, "algo": algo, "K": int(K), "it_s": float(g["it_s"].median()),
                    "model": m["ddg"] if algo == "ddg" else m["bp"], "T_F": tf, "T_B": tb,
                    "sum_fb": float((g["tf"] + g["tb"]).median()),
                    "stages_f": list(np.median(np.array(list(g["stages_f"])), axis=0)),
                    "stages_b": list(np.median(np.array(list(g["stages_b"])), axis=0)), "runs": len(g)})
    r = pd.DataFrame(out)
    r["ratio"] = r["it_s"] / r["model"]
    return r


def plot(df: pd.DataFrame):
    r = rows(df)
    backends = sorted(r["backend"].unique(), key=lambda b: b == "sim") if len(r) else ["(no runs)"]
    fig, axes = figure(len(backends), width=5.0, title="thesis Table 3: time model vs measured, "
                       f"{run_as(df, NETWORK, batch=BATCH)}" + data_note(df))
    for ax, b in zip(axes, backends):
        part = r[r["backend"] == b] if len(r) else r
        x = np.arange(len(part))
        ax.bar(x - 0.2, part["it_s"] * 1e3 if len(part) else [], 0.4, label="measured")
        ax.bar(x + 0.2, part["model"] * 1e3 if len(part) else [], 0.4, label="Table 3 model")
        labels = [f"{NAMES.get(a, a)} K={k}" for a, k in zip(part.get("algo", []), part.get("K", []))]
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("ms per iteration" + (" (virtual)" if b == "sim" else ""))
        ax.set_title("sim" if b == "sim" else f"real ({b})", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def check(df: pd.DataFrame) -> list[Claim]:
    r = rows(df)
    if r.empty or not r["T_F"].notna().any():
        none = not_checked("Table 3: BP T_F + T_B, DDG T_F + T_B/K", "model", "needs a one-device BP run")
        return name_claims([none], df, NETWORK, batch=BATCH)
    out = []
    for _, x in r[r["K"] > 1].iterrows():
        where = f"{'sim' if x['backend'] == 'sim' else 'real, ' + x['backend']}, K={x['K']}"
        if x["algo"] == "bp":
            out.append(Claim(f"BP takes T_F + T_B per iteration on K devices ({where})", "T_F + T_B",
                             f"{x['it_s'] * 1e3:.4g} ms measured vs {x['model'] * 1e3:.4g} ms (ratio {x['ratio']:.2f}, "
                             f"band {BP_BAND[0]}-{BP_BAND[1]})", bool(BP_BAND[0] <= x["ratio"] <= BP_BAND[1]),
                             timed=x["backend"] != "sim"))
        elif x["algo"] == "ddg":
            out.append(Claim(f"DDG takes at most T_F + T_B/K per iteration ({where})", "T_F + T_B/K",
                             f"{x['it_s'] * 1e3:.4g} ms measured vs {x['model'] * 1e3:.4g} ms (ratio {x['ratio']:.2f}, "
                             f"at most {DDG_MAX})", bool(x["ratio"] <= DDG_MAX), timed=x["backend"] != "sim"))
        one = x["T_F"] + x["T_B"]
        rel = abs(x["sum_fb"] - one) / one
        out.append(Claim(f"{NAMES.get(x['algo'], x['algo'])}'s stages' forward + backward add up to one device's "
                         f"T_F + T_B ({where})", "the cut moves work, adds none",
                         f"{x['sum_fb'] * 1e3:.4g} ms vs {one * 1e3:.4g} ms (difference {rel:.0%}, tolerance "
                         f"{SUM_TOL:.0%})", bool(rel <= SUM_TOL), timed=x["backend"] != "sim"))
    return name_claims(out, df, NETWORK, batch=BATCH)


def tables(df: pd.DataFrame) -> dict[str, str]:
    r = rows(df)
    out = []
    for _, x in r.iterrows():
        formula = "T_F + T_B" if x["algo"] == "bp" or x["K"] == 1 else f"T_F + T_B/{x['K']}"
        stages = "; ".join(f"{f * 1e3:.3g}/{b * 1e3:.3g}" for f, b in zip(x["stages_f"], x["stages_b"]))
        out.append([x["backend"], NAMES.get(x["algo"], x["algo"]), x["K"], x["T_F"] * 1e3, x["T_B"] * 1e3, formula,
                    x["model"] * 1e3, x["it_s"] * 1e3, x["ratio"], stages, x["runs"]])
    return {"model": md_table(["backend", "method", "K", "T_F (ms)", "T_B (ms)", "thesis formula", "model (ms)",
                               "measured (ms)", "measured / model", "per stage forward/backward (ms)", "runs"], out)}
