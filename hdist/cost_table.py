"""``make cost-table``: the "Cost table" of docs/reproduction.md, one row per stem from
``hdist reproduce STEM scale=paper --estimate`` (:mod:`hdist.estimate`).

    python -m hdist.cost_table DOC [STEM ...] [--timing-limit=S]    (no STEM: every stem)

``--timing-limit=S``: each timing run's limit in seconds (default 60; a network whose few steps take
longer is not estimated under it).

Only the rows of the stems named are rewritten (the others stay as they were), each as soon as its
estimate is done, so an interrupted table keeps the rows it finished. The rows live between two
markers in DOC; everything outside them is left alone.
"""

from __future__ import annotations

import datetime as _dt
import socket
import sys
from pathlib import Path

from hdist.types import ConfigError

BEGIN = "<!-- cost-table: the rows below are written by `make cost-table`; edits between the markers are replaced -->"
END = "<!-- /cost-table -->"
HEADER = ("| stem | runs at paper | estimated CPU hours at paper | peak RSS |", "|---|---:|---:|---:|")


def _block(text: str, doc: Path) -> tuple[int, int]:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"cost-table: {doc} has no `{BEGIN}` ... `{END}` block; allowed: a markdown file with "
                          f"both markers (docs/reproduction.md has them under its Cost table heading)")
    return start + len(BEGIN), end


def read_rows(doc: Path) -> dict[str, str]:
    """The rows now in DOC's block, by stem."""
    text = doc.read_text()
    start, end = _block(text, doc)
    rows = {}
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("stem", "") and not set(cells[0]) <= set("-: "):
            rows[cells[0]] = line.strip()
    return rows


def write_rows(doc: Path, rows: dict[str, str], order: list[str], note: str) -> None:
    """Replace DOC's block with ``rows`` (in ``order``, unknown stems last) under ``note``, atomically."""
    from hdist.metrics import atomic_write_text

    text = doc.read_text()
    start, end = _block(text, doc)
    ranked = sorted(rows, key=lambda s: (order.index(s) if s in order else len(order), s))
    body = ["", note, "", *HEADER, *(rows[s] for s in ranked), ""]
    atomic_write_text(doc, text[:start] + "\n".join(body) + text[end:])


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def main(argv: list[str]) -> int:
    from hdist.estimate import TIMING_LIMIT_S, cores, estimate, format_md_row, timing_limit
    from hdist.papers import stems

    limit_s = TIMING_LIMIT_S
    for flag in [a for a in argv if a.startswith("-")]:
        if not flag.startswith("--timing-limit="):
            raise ConfigError(f"cost-table: unknown flag {flag}; allowed: --timing-limit=SECONDS")
        limit_s = timing_limit(flag.split("=", 1)[1], "cost-table --timing-limit")
    argv = [a for a in argv if not a.startswith("-")]

    if not argv:
        raise ConfigError("cost-table: expected DOC [STEM ...]; allowed: python -m hdist.cost_table "
                          "docs/reproduction.md [STEM ...]")
    doc, wanted = Path(argv[0]), argv[1:]
    known = stems()
    bad = [s for s in wanted if s not in known]
    if bad:
        raise ConfigError(f"cost-table {bad[0]}: unknown stem; allowed: {', '.join(known)}")
    if not doc.is_file():
        raise ConfigError(f"cost-table: {doc}: no such file; allowed: a markdown file with the cost-table markers")
    rows = read_rows(doc)
    note = (f"Last rows written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} on {socket.gethostname()} "
            f"({cores()} cores), hdist {_commit()}.")
    for stem in wanted or known:
        print(f"[hdist] cost table: {stem}", file=sys.stderr, flush=True)
        try:
            rows[stem] = format_md_row(estimate(stem, ["scale=paper"], limit_s=limit_s))
        except ConfigError as e:
            # A stem that cannot be planned at paper scale is named in its row, not a stop of the table.
            rows[stem] = f"| {stem} | ? | not estimated: {str(e).replace('|', '/')} | - |"
        write_rows(doc, rows, known, note)
        print(rows[stem], flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ConfigError as e:
        print(f"hdist: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM while a stem is timed: the rows written so far stay
        print("hdist: cost table interrupted; the rows written before it are kept", file=sys.stderr)
        sys.exit(130)
