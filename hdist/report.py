"""``hdist report``: REPORT.md, per stem its figure, its markdown tables, claims tables and run count.

The paper's claims (PASS / FAIL / inconclusive / n/a, with the stand-in a claim's runs used) are counted and
tabled apart from hdist's own sanity checks and benchmarks (:mod:`hdist.claims`): a sanity check that passes
reproduces nothing."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from hdist.claims import counts, verdict
from hdist.figures import _summary_rows, data_line, draw_all, stems_with_results
from hdist.metrics import atomic_write_text, scan_runs


def write_report(results_dir: Path, redraw: bool = True, every_run: bool = False) -> Path:
    """``every_run``: draw every finished run of a stem, not only its last ``hdist reproduce``'s."""
    results_dir = Path(results_dir)
    drawn = draw_all(results_dir, every_run=every_run) if redraw else {}
    lines = ["# hdist report", "",
             f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} from `{results_dir}`.", ""]
    stems = stems_with_results(results_dir)
    if not stems:
        lines.append("No results yet: `hdist run` or `hdist reproduce STEM` writes some.")
    summary = []
    totals = {"PASS": 0, "FAIL": 0, "inconclusive": 0, "n/a": 0, "stand-in": 0}
    for stem in stems:
        out = drawn.get(stem)
        readable, bad = scan_runs(results_dir, [stem])
        n_runs = len(readable)
        claims = out["claims"] if out else []
        paper = counts(claims, "paper")
        own = {k: counts(claims, k) for k in ("sanity", "bench")}
        own_cell = " ".join(f"{k} {v['PASS']}/{sum(v.values())}" for k, v in own.items() if sum(v.values())) or "-"
        summary.append(f"| {stem} | {n_runs} | {len(bad)} | {paper['PASS']} | {paper['FAIL']} | "
                       f"{paper['inconclusive']} | {paper['n/a']} | {paper['stand-in']} | {own_cell} |")
        for k in totals:
            totals[k] += paper[k]
        n_drawn = out["runs"] if out else 0
        sweep = " (of its last `hdist reproduce`; `hdist report --all` draws every finished run)" \
            if out and out["sweep"] else ""
        unreadable = f"; unreadable: {len(bad)} (named below, skipped)" if bad else ""
        not_drawn = f"; not drawn: {out['error']}" if out and "error" in out else ""
        lines += [f"## {stem}", "", f"Runs: {n_runs}; drawn: {n_drawn} finished{sweep}{unreadable}{not_drawn}", ""]
        lines += [data_line(_summary_rows(results_dir, stem)), ""]
        lines += [f"- unreadable: `{b}`" for b in bad] + ([""] if bad else [])
        if n_drawn:
            lines += [f"![{stem}](figures/{stem}.png)", ""]
            for path in out.get("tables", {}).values():
                lines += [path.read_text().rstrip("\n"), ""]
        papers_ = [c for c in claims if c.get("kind", "paper") == "paper"]
        if papers_:
            lines += ["Paper claims:", "", "| claim | paper | measured | result | why | stand-in |",
                      "|---|---|---|---|---|---|"]
            lines += [_row(c, ("claim", "paper", "measured"), verdict(c), c.get("reason", ""), c.get("stand_in", ""))
                      for c in papers_]
            lines.append("")
        others = [c for c in claims if c.get("kind", "paper") != "paper"]
        if others:
            lines += ["Sanity checks and benchmarks of hdist itself (not reproductions):", "",
                      "| kind | check | expected | measured | result |", "|---|---|---|---|---|"]
            lines += [_row(c, ("kind", "claim", "paper", "measured"), verdict(c)) for c in others]
            lines.append("")
    if summary:
        head = ["## Summary", "",
                f"Paper claims: {totals['PASS']} PASS, {totals['FAIL']} FAIL, {totals['inconclusive']} inconclusive, "
                f"{totals['n/a']} n/a ({totals['stand-in']} of them run on a synthetic stand-in of the named "
                "dataset, the rest not checked). PASS and FAIL are on real data only. Sanity checks and benchmarks "
                "of hdist itself are counted apart.", "",
                "| stem | runs | unreadable | PASS | FAIL | inconclusive | n/a | of which stand-in | "
                "sanity / bench (PASS/total) |",
                "|---|---|---|---|---|---|---|---|---|", *summary, ""]
        lines[4:4] = head
    path = results_dir / "REPORT.md"
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _row(c: dict, keys: tuple, *extra: str) -> str:
    cells = [str(c.get(k, "")) for k in keys] + [str(e) for e in extra]
    return "| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |"
