"""``hdist report``: REPORT.md, per stem its figure, its markdown tables, claims table (PASS/FAIL) and run count."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from hdist.figures import _summary_rows, data_line, draw_all, stems_with_results, verdict
from hdist.metrics import atomic_write_text, iter_runs


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
    for stem in stems:
        out = drawn.get(stem)
        n_runs = sum(1 for _ in iter_runs(results_dir, [stem]))
        claims = out["claims"] if out else []
        n_pass = sum(1 for c in claims if c["passed"] is True)
        n_fail = sum(1 for c in claims if c["passed"] is False)
        summary.append(f"| {stem} | {n_runs} | {n_pass} | {n_fail} | {len(claims) - n_pass - n_fail} |")
        n_drawn = out["runs"] if out else 0
        sweep = " (of its last `hdist reproduce`; `hdist report --all` draws every finished run)" \
            if out and out["sweep"] else ""
        lines += [f"## {stem}", "", f"Runs: {n_runs}; drawn: {n_drawn} finished{sweep}", "",
                  f"{data_line(_summary_rows(results_dir, stem))}", ""]
        if n_drawn:
            lines += [f"![{stem}](figures/{stem}.png)", ""]
            for path in out.get("tables", {}).values():
                lines += [path.read_text().rstrip("\n"), ""]
        if claims:
            lines += ["| claim | paper | measured | result |", "|---|---|---|---|"]
            for c in claims:
                cells = [str(c[k]).replace("|", "\\|").replace("\n", " ") for k in ("claim", "paper", "measured")]
                lines.append(f"| {cells[0]} | {cells[1]} | {cells[2]} | {verdict(c['passed'])} |")
            lines.append("")
    if summary:
        head = ["## Summary", "", "| stem | runs | PASS | FAIL | n/a |", "|---|---|---|---|---|", *summary, ""]
        lines[4:4] = head
    path = results_dir / "REPORT.md"
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
