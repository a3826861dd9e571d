"""Shared analysis and drawing for the thesis' model-parallel accuracy and memory results (ch. 5-6):
Table 5, figs. 26-28, Tables 6-7 and benchmark (b) (``bench-pipeline-memory``).

Pure functions of the tidy DataFrame of :func:`hdist.metrics.load_results` (one exception:
:func:`stage_sizes` builds the model named in the runs, to know each stage's input, output and
saved-parameter bytes for Table 6's memory model).

- :func:`runs`: one row per run with its configuration (algo, model, dataset, stages K, batch);
- :func:`memory`: per run, the peak bytes each stage held (``peak_mem_bytes/<k>``, cumulative
  peaks, so the last value) and their sum: the activation memory of the whole pipeline, as the
  thesis' fig. 27 adds its K GPUs;
- :func:`memory_model`: Table 6's O(.) terms made concrete for one (model, K, batch), predicted
  from the BP run's per-stage peaks and the stages' sizes, against what each algorithm held;
- :func:`best_eval`: per run, the best (lowest) test error and the best top-1 accuracy;
- :func:`md_table`: a markdown table (``tables(df)`` of the stems).
"""

from __future__ import annotations

import ast
import math
from functools import lru_cache

import numpy as np
import pandas as pd

from hdist.plots import legend

ALGO_ORDER = ["bp", "dni", "ddg", "fr"]
ALGO_LABEL = {"bp": "BP", "dni": "DNI", "ddg": "DDG", "fr": "FR"}
STYLE = {"bp": {"color": "k"}, "dni": {"color": "tab:purple"}, "ddg": {"color": "tab:blue"},
         "fr": {"color": "tab:red"}}
#: Bytes per float32 element (every pipeline here trains in float32).
F32 = 4


def _col(df: pd.DataFrame, name: str, default=None) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index)


def runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: run_id, algo, model, dataset, K (``stages``), batch, cuts, status."""
    if df.empty:
        return pd.DataFrame(columns=["run_id", "algo", "model", "dataset", "K", "batch", "cuts", "status"])
    d = pd.DataFrame({"run_id": df["run_id"], "algo": _col(df, "algo"), "model": _col(df, "model"),
                      "dataset": _col(df, "dataset"), "K": _col(df, "stages", 1),
                      "batch": _col(df, "algo.batch_size"), "cuts": _col(df, "algo.cuts"),
                      "status": _col(df, "status", "done")})
    d = d.drop_duplicates("run_id").reset_index(drop=True)
    d["K"] = d["K"].fillna(1).astype(int)
    return d


def stage_rows(df: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Rows of the per-stage metric ``prefix/<k>`` with an integer column ``stage`` (1..K)."""
    d = df[df["metric"].str.startswith(prefix + "/")].copy()
    d["stage"] = d["metric"].str[len(prefix) + 1:].astype(int)
    return d


def memory(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: ``mem_k`` (list of per-stage peaks, bytes, stage 1..K), ``total`` (their sum) and
    ``max_stage`` (the largest), joined to :func:`runs`."""
    d = stage_rows(df, "peak_mem_bytes")
    info = runs(df)
    if d.empty:
        return info.assign(mem_k=None, total=np.nan, max_stage=np.nan).iloc[0:0]
    per = d.groupby(["run_id", "stage"])["value"].max().reset_index()
    rows = []
    for run_id, g in per.groupby("run_id"):
        v = [float(x) for x in g.sort_values("stage")["value"]]
        rows.append({"run_id": run_id, "mem_k": v, "total": float(sum(v)), "max_stage": float(max(v))})
    return info.merge(pd.DataFrame(rows), on="run_id")


def best_eval(df: pd.DataFrame, metric: str = "test_error") -> pd.DataFrame:
    """Per run: ``best_error`` (lowest ``metric`` over evaluations, after the initial one),
    ``best_top1`` = 1 - best_error, ``final_loss`` (the last train_loss_full) and ``diverged``
    (a non-finite loss, or a run that did not finish)."""
    info = runs(df)
    ev = df[(df["metric"] == metric) & (_col(df, "kind", "eval") == "eval")]
    trained = ev[ev["updates"].fillna(0) > 0]
    best = (trained if len(trained) else ev).groupby("run_id")["value"].min().rename("best_error")
    tl = df[df["metric"] == "train_loss_full"].sort_values("updates").groupby("run_id")["value"].last()
    out = info.merge(best.reset_index(), on="run_id", how="left").merge(
        tl.rename("final_loss").reset_index(), on="run_id", how="left")
    out["best_top1"] = 1.0 - out["best_error"]
    out["diverged"] = ~np.isfinite(out["final_loss"].astype(float)) | (out["status"].fillna("done") != "done")
    return out


def md_table(rows: list[list], columns: list[str]) -> str:
    """A markdown table; floats as given (format before)."""
    head = "| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|\n"
    return head + "".join("| " + " | ".join(str(c) for c in r) + " |\n" for r in rows)


def mib(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x / 2 ** 20:.2f}"


def parse_cuts(v) -> list[int] | None:
    """``algo.cuts`` as stored in the results (a list, its string, or null)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):  # typed frames hold NA
        return None
    if isinstance(v, str):
        if v.strip().lower() in ("", "none", "null", "nan"):
            return None
        v = ast.literal_eval(v)
    v = list(v)
    return [int(c) for c in v] if v else None


# ---------------------------------------------------------------------------------------------
# Table 6's memory model
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def stage_sizes(model: str, K: int, cuts: tuple | None, batch: int) -> dict:
    """Bytes per stage k = 1..K at ``batch`` samples: ``in`` (its input), ``out`` (its output) and
    ``params`` (the parameters its autograd graph saves: what a delayed graph snapshots). Built
    from the zoo as the runs built it (the sizes do not depend on the weights)."""
    import torch

    from hdist.algos._pipeline import profile
    from hdist.models import build_model, get_spec, split_stages

    spec = get_spec(model)
    net = build_model(model)
    parts = split_stages(net, K, list(cuts) if cuts else None)
    sample = torch.zeros(1, *spec.input_shape)
    ins, outs, _ = profile(parts, sample)
    saved = []
    for part in parts:
        ptrs = {p.untyped_storage().data_ptr(): p.numel() for p in part.parameters()}
        seen: dict[int, int] = {}

        def pack(x, ptrs=ptrs, seen=seen):
            p = x.untyped_storage().data_ptr()
            if p in ptrs:
                seen[p] = ptrs[p]
            return x.detach()  # not x: a saved output holding its grad_fn is a cycle gc cannot free

        h = torch.zeros(2, *ins[len(saved)], requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            part(h)
        saved.append(F32 * sum(seen.values()))
    b = int(batch)
    return {"in": [F32 * b * math.prod(s) for s in ins], "out": [F32 * b * math.prod(s) for s in outs],
            "params": saved}


FORMULA = {"bp": "O(L)", "dni": "O(L + K L_s)", "ddg": "O(LK + K^2)", "fr": "O(L + K^2)"}


def predicted(algo: str, bp_k: list[float], sizes: dict) -> float:
    """Table 6's terms for one (model, K, batch), in bytes, from BP's per-stage peaks a_k (a
    stage's graph plus the error gradient it receives) and the stages' sizes:

    - BP  O(L):         sum_k a_k
    - DNI O(L + K L_s): sum_k a_k (the previous output a synthesizer regresses on is the next
                        graph's saved input; L_s, the synthesizers' own activations, are not
                        among the bytes a stage stores for the pipeline, so not counted here)
    - DDG O(LK + K^2):  sum_k [(K-k+1) (a_k - d_k) + d_k] + sum_{k<K} (K-k+1) P_k (stage k keeps
                        K-k+1 graphs, each with a snapshot of the P_k bytes of weights it saved, and
                        one received gradient d_k at a time)
    - FR  O(L + K^2):   sum_k a_k + sum_k (K-k) in_k (stage k keeps K-k+1 inputs, one of them
                        the replay graph's own)
    """
    K = len(bp_k)
    if algo in ("bp", "dni"):
        return float(sum(bp_k))
    if algo == "ddg":
        d = [*sizes["out"][:-1], 0.0]  # the error gradient a stage k < K receives (one at a time)
        return float(sum((K - k) * (a - dk) + dk for k, (a, dk) in enumerate(zip(bp_k, d)))
                     + sum((K - k) * p for k, p in enumerate(sizes["params"][:-1])))
    if algo == "fr":
        return float(sum(bp_k) + sum((K - 1 - k) * i for k, i in enumerate(sizes["in"])))
    raise ValueError(algo)


def memory_model(df: pd.DataFrame) -> pd.DataFrame:
    """Per run of a (model, dataset, K, batch, cuts) that has a BP run: ``predicted`` (Table 6's
    terms, :func:`predicted`), ``measured`` (total of the stages' peaks), ``ratio`` (measured /
    predicted), ``vs_bp`` (measured / BP's measured) and the formula."""
    m = memory(df)
    if m.empty:
        return m.assign(predicted=np.nan, measured=np.nan, ratio=np.nan, vs_bp=np.nan, formula="")
    m = m.copy()
    m["cuts_key"] = m["cuts"].map(lambda c: str(parse_cuts(c)))
    keys = ["model", "dataset", "K", "batch", "cuts_key"]
    out = []
    for _, g in m.groupby(keys, dropna=False):
        bp = g[g["algo"] == "bp"]
        for _, r in g.iterrows():
            row = r.to_dict()
            row["measured"] = r["total"]
            row["formula"] = FORMULA.get(r["algo"], "?")
            if bp.empty:
                row.update(predicted=np.nan, ratio=np.nan, vs_bp=np.nan)
            else:
                b = bp.iloc[0]
                sizes = stage_sizes(str(r["model"]), int(r["K"]),
                                    tuple(parse_cuts(r["cuts"]) or ()) or None, int(r["batch"]))
                row["predicted"] = predicted(str(r["algo"]), list(b["mem_k"]), sizes)
                row["ratio"] = r["total"] / row["predicted"] if row["predicted"] > 0 else np.nan
                row["vs_bp"] = r["total"] / b["total"] if b["total"] > 0 else np.nan
            out.append(row)
    res = pd.DataFrame(out)
    res["order"] = res["algo"].map({a: i for i, a in enumerate(ALGO_ORDER)}).fillna(9)
    return res.sort_values(["model", "dataset", "K", "order"]).drop(columns=["order"]).reset_index(drop=True)


def ratio_at(mm: pd.DataFrame, algo: str, K: int, model: str | None = None) -> pd.Series:
    """``vs_bp`` of ``algo`` at K (per model when ``model`` is None)."""
    d = mm[(mm["algo"] == algo) & (mm["K"] == K)]
    if model is not None:
        d = d[d["model"] == model]
    return d.groupby("model")["vs_bp"].max()


def memory_panel(ax, mm: pd.DataFrame, model: str, y: str = "measured") -> None:
    """Memory (MiB) of each algorithm against K for one model; BP's line in black."""
    g = mm[mm["model"] == model]
    for algo in [a for a in ALGO_ORDER if a in set(g["algo"])]:
        ga = g[g["algo"] == algo].groupby("K")[y].max().sort_index()
        ax.plot(ga.index, ga.values / 2 ** 20, "o-", label=ALGO_LABEL.get(algo, algo), **STYLE.get(algo, {}))
    ax.set_xlabel("modules K")
    ax.set_ylabel("peak activation memory (MiB)")
    ax.set_title(model, fontsize=9)
    if len(g):
        ax.set_xticks(sorted(int(k) for k in g["K"].unique()))
    ax.grid(alpha=0.3)
    legend(ax)
