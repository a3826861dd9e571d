"""Figures and claim checks from result files: each experiment stem's figure module in :mod:`hdist.papers`.

Each figure module defines ``plot(df) -> matplotlib Figure`` and ``check(df) -> list[Claim]``
(pure functions of the DataFrame from :func:`hdist.metrics.load_results`), and optionally
``tables(df) -> {name: markdown}``, written next to the figure as ``<stem>-<name>.md``. Runs
outside any experiment (``adhoc``) get a generic convergence figure.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from hdist import papers
from hdist.claims import Claim, finalize, from_dict, verdict
from hdist.config import NON_IDENTITY_KEYS
from hdist.metrics import atomic_write_bytes, atomic_write_json, atomic_write_text, load_results, scan_runs
from hdist.rundir import holder
from hdist.types import ConfigError


def load_experiment(stem: str) -> ModuleType:
    """The figure module of a known stem (:func:`hdist.papers.module_for`); ConfigError for any other name."""
    return importlib.import_module(papers.module_for(stem))


def check_stems(results_dir: Path, stems: list[str]) -> None:
    """ConfigError (one line) unless each stem is a known one or a folder of runs under ``results_dir``
    (``adhoc``: runs outside any experiment)."""
    allowed = sorted({*papers.stems(), *stems_with_results(results_dir)})
    for stem in stems:
        if stem not in allowed:
            raise ConfigError(f"{stem}: unknown stem; allowed: {', '.join(allowed)}")


def stems_with_results(results_dir: Path) -> list[str]:
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return []
    return sorted(p.name for p in results_dir.iterdir()
                  if p.is_dir() and p.name != "figures" and any(p.glob("*/config.yaml")))


def data_kind(dataset: str | None, stand_in_for: str | None) -> str:
    """What a run trained on: ``real``, ``synthetic`` (a generated dataset) or ``synthetic stand-in for X``."""
    from hdist.data.root import REQUIRED  # the datasets read from files

    if stand_in_for:
        return f"synthetic stand-in for {stand_in_for}"
    return "real" if dataset in REQUIRED else "synthetic"


def data_line(rows) -> str:
    """``data: synthetic stand-in for mnist; scale: smoke``: the data and scale of some runs, for ``hdist ls``,
    figure titles and REPORT.md. ``rows``: dicts with ``dataset``, ``stand_in_for`` and ``scale``."""
    rows = list(rows)
    kinds = sorted({data_kind(r.get("dataset"), r.get("stand_in_for")) for r in rows})
    scales = sorted({str(r.get("scale")) for r in rows if r.get("scale") is not None})
    return f"data: {', '.join(kinds) or '-'}; scale: {', '.join(scales) or '-'}"


def _rows_data(summaries: list[dict]) -> list[dict]:
    return [{"dataset": s.get("dataset.name"), "stand_in_for": s.get("stand_in_for"), "scale": s.get("scale.name")}
            for s in summaries]


def _summary_rows(results_dir: Path, stem: str) -> list[dict]:
    """The data and scale of a stem's readable runs (an unreadable one is named by ``scan_runs``' callers)."""
    return _rows_data(scan_runs(results_dir, [stem])[0])


def frame_data_line(df) -> str:
    """:func:`data_line` of a results frame (its ``dataset``, ``stand_in_for`` and ``scale`` columns)."""
    cols = [c for c in ("dataset", "stand_in_for", "scale") if c in df.columns]
    return data_line(df[cols].drop_duplicates().to_dict("records"))


def _title_data_line(fig, line: str) -> None:
    """Every stem's figure says what it was drawn from: the data line under its title."""
    # matplotlib keeps the suptitle as a private attribute and offers no getter
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    fig.suptitle(f"{title}\n{line}" if title else line, fontsize=9)


def generic_plot(df):
    """Convergence of ad-hoc runs: train loss and test error against epochs, one line per run."""
    from hdist.plots import curves, figure

    metrics = [m for m in ("train_loss", "test_error") if (df["metric"] == m).any()]
    fig, axes = figure(max(1, len(metrics)), title="ad-hoc runs")
    by = swept_keys(df) or ["algo"]
    # as text: a key some runs lack (NA) is a series of its own, not dropped by the grouping
    df = df.assign(**{k: df[k].astype(str).replace({"<NA>": "-", "nan": "-"}) for k in by})
    for ax, m in zip(axes, metrics):
        curves(ax, df, m, x="epoch", by=by)
        if df.drop_duplicates(by).shape[0] > 6 and ax.get_legend() is not None:  # beside the data, not on it
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def check_claims(mod: ModuleType, df) -> list[Claim]:
    """A figure module's claims on ``df`` with the rules every stem obeys applied
    (:func:`hdist.claims.finalize`: stand-ins, untrained runs, ties, load)."""
    claims = [c if isinstance(c, Claim) else from_dict(c) for c in mod.check(df)]
    if mod.__name__.startswith(f"{papers.__name__}.bench."):
        # The bench stems measure hdist itself: their claims are benchmarks, not a paper's results.
        claims = [replace(c, kind="bench") if c.kind == "paper" else c for c in claims]
    return finalize(claims, df)


#: columns of a results frame that are no config key a sweep sets
_NOT_SWEPT = {"run_id", "rank", "role", "kind", "step", "updates", "epoch", "samples", "wall_s", "sim_s", "metric",
              "value", "status", "stand_in_for", "stem"}


def swept_keys(df) -> list[str]:
    """The config columns whose value differs between the frame's runs (the keys a legend tells runs apart by),
    short names (algo, model, ...) first."""
    runs = df.drop_duplicates("run_id")
    return [c for c in runs.columns if c not in _NOT_SWEPT and runs[c].astype(str).nunique() > 1]


def _save(fig, out_dir: Path, stem: str) -> dict:
    import io

    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=120, bbox_inches="tight")
        path = out_dir / f"{stem}.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        paths[ext] = path
    plt.close(fig)
    return paths


def draw_stem(results_dir: Path, stem: str, run_ids: set[str] | None = None) -> dict | None:
    """Draw one stem's figure and write its claims; None when it has no finished runs.

    ``run_ids``: draw only these runs (``hdist reproduce``: the runs of the experiment as it is
    now, not those an earlier version of its config or topology left in the same folder)."""
    results_dir = Path(results_dir)
    df = load_results(results_dir, [stem])
    others = 0
    if run_ids is not None and not df.empty:
        others = int((~df["run_id"].drop_duplicates().isin(run_ids)).sum())
        df = df[df["run_id"].isin(run_ids)]
    if df.empty:
        return None
    mod = load_experiment(stem) if stem in papers.stems() and papers.has_figure(stem) else None
    if mod is None:
        fig, claims, tables = generic_plot(df), [], {}
    else:
        fig = mod.plot(df)
        claims = check_claims(mod, df)
        tables = dict(mod.tables(df)) if hasattr(mod, "tables") else {}
    _title_data_line(fig, frame_data_line(df))
    paths = _save(fig, results_dir / "figures", stem)
    table_paths = {}
    for name, text in tables.items():
        table_paths[name] = results_dir / "figures" / f"{stem}-{name}.md"
        atomic_write_text(table_paths[name], text)
    claims_d = [c.to_dict() for c in claims]
    atomic_write_json(results_dir / stem / "claims.json", claims_d)
    return {"png": paths["png"], "pdf": paths["pdf"], "claims": claims_d, "runs": int(df["run_id"].nunique()),
            "tables": table_paths, "others": others}


SWEEP_FILE = "sweep.json"  # in a stem's folder: the run ids of its last `hdist reproduce`


def write_sweep(results_dir: Path, stem: str, run_ids: set[str], overrides: list[str]) -> Path:
    """Record the runs of the stem's sweep as ``hdist reproduce`` just ran it (what ``figures`` draws)."""
    import datetime as _dt

    path = Path(results_dir) / stem / SWEEP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"run_ids": sorted(run_ids), "overrides": list(overrides),
                             "written": f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M:%S UTC}"})
    return path


def last_sweep(results_dir: Path, stem: str) -> set[str] | None:
    """The run ids of the stem's last ``hdist reproduce``; None when it has none (or it is unreadable)."""
    path = Path(results_dir) / stem / SWEEP_FILE
    try:
        return set(json.loads(path.read_text())["run_ids"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def draw_all(results_dir: Path, stems: list[str] | None = None, every_run: bool = False) -> dict[str, dict]:
    """Draw each stem (default: every stem with results). A stem that ``hdist reproduce`` ran is
    drawn from that sweep's runs (``sweep`` in its result: their number), unless ``every_run``:
    a folder also holds the runs of earlier configs, topologies or scales, and of single
    ``hdist run`` calls, whose medians must not mix with the sweep's. A stem none of whose sweep
    runs has finished is left out (``{"runs": 0, ...}``). A stem whose drawing fails (its figure code, or
    results it cannot plot) is named on stderr and left out with ``"error"``; the others are drawn."""
    out = {}
    for stem in stems or stems_with_results(results_dir):
        ids = None if every_run else last_sweep(results_dir, stem)
        try:
            res = draw_stem(results_dir, stem, ids)
        except Exception as e:  # noqa: BLE001 - one stem's figure code or results must not stop the others
            import matplotlib.pyplot as plt

            plt.close("all")
            reason = f"{type(e).__name__}: {e}".splitlines()[0]
            print(f"[hdist] {stem}: not drawn: {reason}", file=sys.stderr)
            out[stem] = {"runs": 0, "sweep": ids is not None, "error": reason, "claims": [], "tables": {}}
            continue
        if res is not None:
            out[stem] = {**res, "sweep": ids is not None}
        elif ids is not None:
            out[stem] = {"runs": 0, "sweep": True, "sweep_runs": len(ids), "claims": [], "tables": {}}
    return out


def print_claims(stem: str, claims: list[dict], file=None) -> None:
    file = file or sys.stdout
    for c in claims:
        kind = "" if c.get("kind", "paper") == "paper" else f" ({c['kind']})"
        why = f"  ({c['reason']})" if c.get("reason") else ""
        print(f"  [{verdict(c)}]{kind} {c['claim']}  paper: {c['paper']}  measured: {c['measured']}{why}", file=file)


def list_stems(results_dir: Path) -> str:
    lines = [f"{'stem':24s} runs  done  diverged  failed  running  unreadable  data and scale"]
    bad_lines = []
    for stem in stems_with_results(results_dir):
        summaries, bad = scan_runs(results_dir, [stem])
        counts: dict[str, int] = {}
        for s in summaries:
            # a run whose lock a live process holds is running, whatever its status file says
            st = "running" if holder(Path(s["run_dir"])) else s["status"]
            counts[st] = counts.get(st, 0) + 1
        lines.append(f"{stem:24s} {len(summaries):4d}  {counts.get('done', 0):4d}  {counts.get('diverged', 0):8d}  "
                     f"{counts.get('failed', 0):6d}  {counts.get('running', 0):7d}  {len(bad):10d}  "
                     f"{data_line(_rows_data(summaries))}")
        bad_lines += [f"  unreadable: {b}" for b in bad]
    if len(lines) == 1:
        return f"no results under {results_dir}/"
    return "\n".join(lines + bad_lines)


def _owned(row: dict) -> dict:
    """A run whose lock a live process holds is running, whatever its status file says (a rerun that
    has not rewritten it yet); one that says running with no owner was left by a killed process."""
    owner = holder(Path(row["run_dir"]))
    if owner:
        row["status"] = "running"
        row["reason"] = f"running elsewhere, pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"
    elif row["status"] == "running" and not row.get("reason"):
        row["reason"] = "no process owns it (its owner was killed): the next run of it redoes it"
    return row


def list_runs(results_dir: Path, stem: str) -> str:
    rows, bad = scan_runs(results_dir, [stem])
    rows = [_owned(r) for r in rows]
    unreadable = [f"unreadable: {len(bad)}", *(f"  {b}" for b in bad)] if bad else []
    if not rows:
        return "\n".join([f"{stem}: no runs under {Path(results_dir) / stem}/", *unreadable])
    keys = ["run_id", "status", "algo.name", "model.name", "dataset.name", "backend.name",
            "topology.workers", "seed", "scale.name"]
    skip = {"run_dir", "reason", "stand_in_for", "load_1m_start", "load_1m_end", "cpu_count", *NON_IDENTITY_KEYS}
    varying = sorted(k for k in set().union(*rows) - set(keys) - skip
                     if len({json.dumps(r.get(k), default=str) for r in rows}) > 1)
    cols = keys + varying
    for r in rows:  # a stand-in run is not a run on the dataset it stands in for
        if r.get("stand_in_for"):
            r["dataset.name"] = f"{r['dataset.name']} (synthetic stand-in)"
    table = [[str(r.get(k, "")) for k in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    out += ["  ".join(v.ljust(w) for v, w in zip(t, widths)) for t in table]
    for r in rows:
        if r.get("reason"):
            out.append(f"  {r['run_id']}: {r['status']}: {r['reason']}")
    return "\n".join(out + unreadable)
