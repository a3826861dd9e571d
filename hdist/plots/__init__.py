"""Plot helpers shared by every experiment: pure functions of a results DataFrame.

- :func:`curves`: a metric against epochs / wall time / updates, one line per group, seeds
  aggregated as a mean line and a min-max band.
- :func:`speedup`: speedup against workers with the ideal (linear) line.
- :func:`table`: a table drawn as a figure (for the papers' tables).
- :func:`run_as` / :func:`name_claims`: the paper's network in titles and claims, with the model, batch
  and worker count the runs actually used where they differ (read from the runs' config columns).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping

import matplotlib

matplotlib.use("Agg")  # figures are files; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

X_LABELS = {"epoch": "epochs", "wall_s": "wall time (s)", "sim_s": "simulated time (s)",
            "updates": "updates", "step": "steps", "samples": "samples"}


def figure(n_panels: int = 1, width: float = 4.2, height: float = 3.3, title: str | None = None):
    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, list(axes[0])


def label_of(keys: tuple | str, names: Iterable[str]) -> str:
    keys = keys if isinstance(keys, tuple) else (keys,)
    names = list(names)
    if len(names) == 1:
        return str(keys[0])
    return ", ".join(f"{n}={k}" for n, k in zip(names, keys))


def aggregate(df: pd.DataFrame, x: str, metric: str, by: list[str]) -> pd.DataFrame:
    """Mean, min and max of ``metric`` over runs (seeds) at each ``x``, per group ``by``."""
    d = df[df["metric"] == metric]
    if d.empty:
        return pd.DataFrame(columns=[*by, x, "mean", "lo", "hi", "n"])
    # Runs of one group may log at slightly different x (time): bin on the rounded x.
    g = d.groupby([*by, x])["value"]
    out = g.agg(mean="mean", lo="min", hi="max", n="count").reset_index()
    return out.sort_values([*by, x])


def curves(ax, df: pd.DataFrame, metric: str, x: str = "epoch", by: list[str] | str = "algo",
           logy: bool = False, ylabel: str | None = None, styles: dict | None = None) -> None:
    by = [by] if isinstance(by, str) else list(by)
    agg = aggregate(df, x, metric, by)
    for keys, g in agg.groupby(by, sort=True):
        lab = label_of(keys, by)
        kw = (styles or {}).get(lab, {})
        line, = ax.plot(g[x], g["mean"], label=lab, **kw)
        if (g["n"] > 1).any():
            ax.fill_between(g[x], g["lo"], g["hi"], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(ylabel or metric)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    legend(ax)


def legend(ax, fontsize: float = 7) -> None:
    """A legend on ``ax`` if anything on it has a label (matplotlib warns on an empty one)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize)


def speedup(ax, workers: Iterable[float], values: Iterable[float], label: str = "measured",
            paper: Iterable[float] | None = None, paper_workers: Iterable[float] | None = None) -> None:
    """Speedup vs workers with the ideal line y = x (and the paper's values when given)."""
    w = np.asarray(list(workers), dtype=float)
    v = np.asarray(list(values), dtype=float)
    ax.plot(w, v, "o-", label=label)
    if paper is not None:
        pw = np.asarray(list(paper_workers if paper_workers is not None else w), dtype=float)
        ax.plot(pw, list(paper), "s--", label="paper", alpha=0.8)
    top = max(w.max() if len(w) else 1, 1)
    ax.plot([1, top], [1, top], "k:", label="ideal")
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def table(rows: list[list], columns: list[str], title: str | None = None, width: float = 7.0):
    """A table drawn as a figure (rows of cells, already formatted or numbers)."""
    fig, ax = plt.subplots(figsize=(width, 0.4 + 0.3 * (len(rows) + 1)))
    ax.axis("off")
    cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    t = ax.table(cellText=cells or [["" for _ in columns]], colLabels=columns, loc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def data_note(df: pd.DataFrame) -> str:
    """'(synthetic stand-in)' when any run used a stand-in dataset: figures say so in their title."""
    if "stand_in_for" in df.columns:
        names = sorted({s for s in df["stand_in_for"].dropna().unique() if s})
        if names:
            return f" [synthetic stand-in for {', '.join(names)}]"
    return ""


def _key(model) -> str:
    """A model's name compared loosely: "ResNet-110", "resnet110" and "vgg11_bn" / "VGG-11-BN" match."""
    return re.sub(r"[^a-z0-9]", "", str(model).lower())


def batch_of(df: pd.DataFrame) -> pd.Series:
    """The batch B of each row, as the papers count it, from the runs' stored config: ``algo.batch_size``
    (samples per worker step); for data-parallel large-batch runs (those with ``algo.accum_steps``) the global
    batch ``batch_size x accum_steps x workers`` (thesis ch. 4's B = 8192 is 128 x 64 on one worker)."""
    if "algo.batch_size" not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    b = pd.to_numeric(df["algo.batch_size"], errors="coerce").astype(float)
    if "algo.accum_steps" in df.columns:
        acc = pd.to_numeric(df["algo.accum_steps"], errors="coerce").astype(float)
        w = pd.to_numeric(df["workers"], errors="coerce").astype(float).fillna(1.0) if "workers" in df.columns else 1.0
        b = b.where(acc.isna(), b * acc.fillna(1.0) * w)
    return b


def models_run(df: pd.DataFrame) -> pd.Series:
    """The model of each row as the runs' config names it: ``model``, with ``model.depth`` where the config has
    one the name does not say (vgg at depth 11: "vgg11")."""
    m = df["model"].astype(object)
    if "model.depth" in df.columns:
        d = pd.to_numeric(df["model.depth"], errors="coerce")
        m = pd.Series([f"{a}{int(b)}" if pd.notna(b) and not str(a).endswith(str(int(b))) else a for a, b in zip(m, d)],
                      index=df.index, dtype=object)
    return m.where(df["model"].notna())


def _values(s: pd.Series) -> list[int]:
    return sorted({int(v) for v in pd.to_numeric(s, errors="coerce").dropna()})


def _span(v: list[int]) -> str:
    return "/".join(map(str, v if len(v) <= 4 else [v[0], v[1], "...", v[-1]]))


def _ints(v: int | Iterable[int]) -> list[int]:
    return sorted({int(v)} if isinstance(v, (int, np.integer)) else {int(x) for x in v})


def stand_ins(df: pd.DataFrame, models: Iterable[str] = (), batch: int | Iterable[int] | None = None,
              workers: int | Iterable[int] | None = None) -> list[str]:
    """What the runs in ``df`` ran in place of the paper's setting, read from their stored config: their models
    that are none of the paper's ``models``, batches (:func:`batch_of`) outside the paper's ``batch`` and worker
    counts outside its ``workers`` (each one value, or the values the paper sweeps). [] when they ran the
    paper's."""
    if not len(df):
        return []
    out = []
    paper = {_key(m) for m in models}
    if paper and "model" in df.columns:
        other = sorted({m for m in models_run(df).dropna() if _key(m) not in paper})
        if other:
            out.append(", ".join(other))
    b = _values(batch_of(df)) if batch is not None else []
    if b and not set(b) <= set(_ints(batch)):
        out.append(f"B={_span(b)} not {_span(_ints(batch))}")
    if workers is not None and "workers" in df.columns:
        want = _ints(workers)
        w = _values(df["workers"])
        if w and not set(w) <= set(want):
            out.append(f"{_span(w)} workers not {_span(want)}")
    return out


def run_as(df: pd.DataFrame, name: str, models: Iterable[str] | None = None,
           batch: int | Iterable[int] | None = None, workers: int | Iterable[int] | None = None) -> str:
    """``name`` (the paper's network or setting), with " (run as resnet8, B=8 not 128)" when the runs in ``df``
    used another model, batch or worker count (:func:`stand_ins`; ``models``: the paper's, by default ``name``
    itself): titles and claims name what actually ran. The one helper every stem labels with."""
    parts = stand_ins(df, [name] if models is None else models, batch, workers)
    return f"{name} (run as {', '.join(parts)})" if parts else name


def model_label(df: pd.DataFrame, model: str | None, paper: Mapping[str, str], batch: int | Iterable[int] | None = None,
                workers: int | Iterable[int] | None = None) -> str:
    """:func:`run_as` for the runs of one ``model`` in ``df`` (None: all of them) in a stem whose paper has several
    networks (``paper``: model key -> the paper's name). A model that is none of the paper's stands for all of
    them: "ResNet-164/101 (run as resnet8, B=8 not 128)"."""
    d = df if model is None or "model" not in df.columns else df[df["model"] == model]
    names = list(paper.values())
    heads = {n.split("-")[0] for n in names}
    every = (names[0].split("-")[0] + "-" + "/".join(n.split("-", 1)[1] for n in names)
             if len(heads) == 1 and all("-" in n for n in names) else "/".join(names))
    return run_as(d, paper.get(str(model), every), models=paper, batch=batch, workers=workers)


def name_claims(claims: list, df: pd.DataFrame, name: str, models: Iterable[str] | None = None,
                batch: int | Iterable[int] | None = None, workers: int | Iterable[int] | None = None) -> list:
    """``claims`` with :func:`run_as`'s label before each claim's text, when the runs in ``df`` used a model,
    batch or worker count other than the paper's (a claim already holding the label is left as it is): a
    claim about a stand-in says so. Unchanged when the runs used the paper's setting."""
    label = run_as(df, name, models, batch, workers)
    if label == name:
        return list(claims)
    return [c if label in c.claim else dataclasses.replace(c, claim=f"{label}: {c.claim}") for c in claims]
