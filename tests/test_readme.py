"""The README's commands are true: every `hdist` line of its code blocks names a verb and valid keys, and the
quickstart's lines run, in order, at smoke scale."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"


def _blocks() -> dict[str, list[str]]:
    """section title -> the lines of the code blocks under it (comments cut)."""
    out: dict[str, list[str]] = {}
    section, inside = "", False
    for line in README.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("```"):
            inside = not inside
        elif inside and line.strip():
            out.setdefault(section, []).append(line.split("#", 1)[0].strip())
    return out


def hdist_lines(section: str | None = None) -> list[list[str]]:
    lines = [ln for sec, lns in _blocks().items() if section is None or sec.startswith(section) for ln in lns]
    return [shlex.split(ln)[1:] for ln in lines if ln.startswith("hdist ")]


def quickstart() -> list[list[str]]:
    return hdist_lines("Quickstart")


def test_the_readme_is_short_and_has_a_quickstart():
    assert len(README.read_text().splitlines()) <= 150
    assert len(quickstart()) >= 5
    assert "../shared" not in README.read_text()


def test_every_readme_command_names_a_verb_and_valid_keys():
    from hdist.cli import VERBS
    from hdist.launch import prepare
    from hdist.sweeps import experiment_runs

    for args in hdist_lines():
        assert args[0] in VERBS, args
        ovs = [a for a in args[1:] if "=" in a and not a.startswith("-")]
        if args[0] == "run" and "-m" not in args:
            prepare(ovs)  # composes and validates: a bad key or value raises ConfigError
        elif args[0] == "reproduce":
            assert experiment_runs(args[1], ovs)


def _at_smoke(args: list[str]) -> list[str]:
    if args[0] in ("run", "reproduce") and not any(a.startswith("scale=") for a in args):
        args = [*args, "scale=smoke"]
    return args


@pytest.mark.slow
def test_the_quickstart_runs_at_smoke_scale(cli, tmp_path):
    for args in quickstart():
        quiet = ["progress=quiet"] if args[0] in ("run", "reproduce") else []
        code, out, err = cli(*_at_smoke(args), *quiet, f"results_dir={tmp_path}")
        assert code == 0, (args, err)
    assert (tmp_path / "REPORT.md").exists() and (tmp_path / "figures" / "huo17-fig1.png").exists()
    assert re.search(r"huo17-fig1 .*data: synthetic stand-in for mnist; scale: smoke",
                     cli("ls", f"results_dir={tmp_path}")[1])
