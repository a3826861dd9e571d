"""The small verbs are instant: --help, ls, data and report import no torch; data is a table; ls, figures and
REPORT.md say what data and scale the runs had; one `results:` line per job."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Each verb in turn in one fresh interpreter (one start-up, not four), then whether torch was imported.
PROBE = ("import sys\nfrom hdist.cli import main\nfor verb in sys.argv[1:]:\n    try:\n        main(verb.split())\n"
         "    except SystemExit:\n        pass\n"
         "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\n")


def _verbs(*verbs: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", PROBE, *verbs], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def stand_in_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HDIST_OFFLINE": "1",
           "HDIST_DATA": str(tmp_path_factory.mktemp("no-data"))}
    r = subprocess.run([sys.executable, "-m", "hdist.cli", "run", "dataset=mnist", "dataset.fallback=synthetic",
                        "scale=smoke", "progress=quiet", f"results_dir={d}"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("results: ") == 1
    return d


def test_small_verbs_import_no_torch(stand_in_results):
    r = _verbs("--help", "data", f"ls results_dir={stand_in_results}", f"report results_dir={stand_in_results}")
    assert r.stderr.strip().splitlines()[-1] == "no torch", r.stderr
    assert "report: " in r.stdout  # every verb ran (--help exits first: it is checked alone below)
    assert _verbs("--help").stderr.strip().splitlines()[-1] == "no torch"


def test_data_is_a_table():
    r = _verbs("data")
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:5] == ["dataset", "source", "present", "checksum", "files"]
    mnist = next(line for line in lines if line.startswith("mnist "))
    assert mnist.split()[1:4] == ["real", "absent", "absent"] and "{" not in r.stdout


def test_ls_figures_and_report_say_stand_in_and_scale(stand_in_results, cli):
    line = "data: synthetic stand-in for mnist; scale: smoke"
    code, out, _ = cli("ls", f"results_dir={stand_in_results}")
    assert code == 0 and line in out
    code, out, _ = cli("ls", "adhoc", f"results_dir={stand_in_results}")
    assert "mnist (synthetic stand-in)" in out
    code, _, _ = cli("report", f"results_dir={stand_in_results}")
    assert code == 0 and line in (stand_in_results / "REPORT.md").read_text()


def test_figures_names_a_stem_it_cannot_draw_and_draws_the_others(stand_in_results, cli, monkeypatch, tmp_path):
    import shutil

    from hdist import figures

    results = tmp_path / "results"
    shutil.copytree(stand_in_results, results)
    real = figures.draw_stem

    def draw(results_dir, stem, run_ids=None):
        if stem == "broken":
            raise ValueError("cannot plot this frame\nsecond line")
        return real(results_dir, stem, run_ids)

    monkeypatch.setattr(figures, "stems_with_results", lambda d: ["broken", "adhoc"])
    monkeypatch.setattr(figures, "draw_stem", draw)
    code, out, err = cli("figures", f"results_dir={results}")
    assert code == 1 and "Traceback" not in err
    assert "broken: not drawn: ValueError: cannot plot this frame" in out and "second line" not in out
    assert (results / "figures" / "adhoc.png").is_file() and "adhoc: " in out
    from hdist import report

    monkeypatch.setattr(report, "stems_with_results", lambda d: ["broken", "adhoc"])
    code, _, err = cli("report", f"results_dir={results}")
    text = (results / "REPORT.md").read_text()
    assert code == 0 and "Traceback" not in err
    assert "not drawn: ValueError: cannot plot this frame" in text and "![adhoc](figures/adhoc.png)" in text


def test_results_line_is_printed_by_world_rank_0_only(monkeypatch, capsys):
    from hdist import cli
    from hdist.launch import RunResult

    done = [RunResult("abc", ROOT / "results" / "adhoc" / "abc", "done", "")]
    monkeypatch.setenv("PMI_RANK", "1")
    cli._summarise(done, False)
    assert "results:" not in capsys.readouterr().out
    monkeypatch.setenv("PMI_RANK", "0")
    cli._summarise(done, False)
    assert capsys.readouterr().out.count("results: ") == 1


@pytest.mark.slow
def test_bench_startup_times_the_small_verbs(cli, tmp_path):
    import json

    from hdist.metrics import load_results

    code, _, err = cli("reproduce", "bench-startup", "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path, "bench-startup")
    assert set(df[df["metric"] == "startup_s"]["role"]) == {"python", "help", "ls", "data"}
    claims = json.loads((tmp_path / "bench-startup" / "claims.json").read_text())
    assert len(claims) == 2 and all(isinstance(c["passed"], bool) for c in claims)
