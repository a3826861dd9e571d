"""Bad inputs and bad result files (issue 25): one table row per case.

Inputs: exit 2, exactly one stderr line naming the key or file, the bad value and what is allowed, no
traceback, nothing written under results_dir. Files in a results directory: named in one line, the run
skipped and counted as unreadable, the other runs still listed and drawn, exit 0.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from torch import nn

import hdist.config as C
from hdist import models
from hdist.metrics import load_results, read_run_metrics, scan_runs

SMOKE = ("scale=smoke", "progress=quiet", "algo.max_steps=2")
IJCNN1 = ("dataset=ijcnn1", "model=linear", "dataset.verify=false")
GOOD_SVM = "1 1:0.5 2:-0.25\n-1 1:0.1 3:0.7\n1 2:0.9\n-1 1:-0.3 2:0.2\n"
DUAL = ("algo=dfsdca", "objective.l2=0.1", "model.num_classes=2", *IJCNN1)  # cross-entropy: no dual


def _write_libsvm(root: Path, tr: str = GOOD_SVM, val: str = GOOD_SVM, t: str = GOOD_SVM) -> None:
    d = root / "libsvm"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in (("ijcnn1.tr", tr), ("ijcnn1.val", val), ("ijcnn1.t", t)):
        (d / name).write_text(text)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _write_libsvm(root)
    monkeypatch.setenv("HDIST_DATA", str(root))
    return root


@pytest.fixture(scope="module")
def bad_conf(tmp_path_factory):
    """A copy of conf/ with three broken experiment files (the repository's conf/ stays untouched)."""
    conf = tmp_path_factory.mktemp("conf") / "conf"
    shutil.copytree(C.CONF_DIR, conf)
    head = "# @package _global_\n"
    (conf / "experiment" / "bench-badsyntax.yaml").write_text(head + "stem: bench-badsyntax\nsweep: [a, b\n")
    (conf / "experiment" / "bench-badtab.yaml").write_text(head + "stem: bench-badtab\nsweep:\n\t- {seed: 1}\n")
    (conf / "experiment" / "bench-badsweep.yaml").write_text(head + "stem: bench-badsweep\nsweep: {seed: 1}\n")
    (conf / "model" / "tokens2d.yaml").write_text("name: tokens2d\nnum_classes: 10\ninput_shape: [4, 8]\n")
    return conf


def tokens2d(num_classes: int = 10, input_shape=(4, 8)) -> nn.Sequential:
    """A model whose first block keeps per-token activations [T, D] (neither flat nor [C, H, W])."""
    t, d = input_shape
    return nn.Sequential(nn.Linear(d, d), nn.Flatten(), nn.Linear(t * d, num_classes))


# (id, verb and arguments ({R}: the results dir, {T}: a scratch folder), words the one line must hold)
INPUTS = [
    ("results_dir-regular-file", ["run", *SMOKE, "results_dir={T}/afile"], ["results_dir=", "regular file", "allowed"]),
    ("results_dir-dev-null", ["run", *SMOKE, "results_dir=/dev/null"], ["results_dir=/dev/null", "not a directory"]),
    ("results_dir-long-component", ["run", *SMOKE, "results_dir={T}/" + "a" * 300], ["results_dir=", "255 bytes"]),
    ("results_dir-read-only", ["run", *SMOKE, "results_dir={T}/ro/sub"], ["results_dir=", "not writable"]),
    ("results_dir-unset-env", ["run", *SMOKE, "results_dir=${oc.env:HDIST_TEST_UNSET_VAR}"],
     ["results_dir=${oc.env:HDIST_TEST_UNSET_VAR}", "cannot be resolved", "allowed"]),
    ("n_train-huge", ["run", *SMOKE, "dataset.n_train=1000000000000", "results_dir={R}"],
     ["dataset.n_train=1000000000000", "GB", "allowed"]),
    ("lr-long-number", ["run", *SMOKE, "algo.lr=" + "1" * 400, "results_dir={R}"],
     ["algo.lr=", "too large", "finite number > 0"]),
    ("seed-overflow", ["run", *SMOKE, "seed=99999999999999999999999", "results_dir={R}"],
     ["seed=99999999999999999999999", "0..4294967295"]),
    ("seed-above-32-bits", ["run", *SMOKE, "seed=4294967296", "results_dir={R}"], ["seed=4294967296", "0..4294967295"]),
    ("hydra-run-dir", ["run", *SMOKE, "hydra.run.dir={T}/h", "results_dir={R}"], ["hydra.run.dir=", "results_dir"]),
    ("experiment-syntax-run", ["run", *SMOKE, "experiment=bench-badsyntax", "results_dir={R}"],
     ["bench-badsyntax.yaml", "line 4", "not valid YAML"]),
    ("experiment-syntax-reproduce", ["reproduce", "bench-badsyntax", *SMOKE, "results_dir={R}"],
     ["bench-badsyntax.yaml", "line 4", "not valid YAML"]),
    ("experiment-tab-run", ["run", *SMOKE, "experiment=bench-badtab", "results_dir={R}"],
     ["bench-badtab.yaml", "line 4", "\\t"]),
    ("experiment-tab-reproduce", ["reproduce", "bench-badtab", *SMOKE, "results_dir={R}"],
     ["bench-badtab.yaml", "line 4", "\\t"]),
    ("experiment-sweep-not-list-run", ["run", *SMOKE, "experiment=bench-badsweep", "results_dir={R}"],
     ["bench-badsweep.yaml", "sweep=", "a list of arms"]),
    ("experiment-sweep-not-list-reproduce", ["reproduce", "bench-badsweep", *SMOKE, "results_dir={R}"],
     ["bench-badsweep.yaml", "sweep=", "a list of arms"]),
    ("libsvm-nan", ["run", *SMOKE, *IJCNN1, "results_dir={R}"], ["ijcnn1.tr line 5", "nan or inf", "finite"]),
    ("libsvm-inf-label", ["run", *SMOKE, *IJCNN1, "results_dir={R}"], ["ijcnn1.t line 1", "nan or inf"]),
    ("libsvm-empty", ["run", *SMOKE, *IJCNN1, "results_dir={R}"], ["ijcnn1.val", "no samples"]),
    *[(f"dfsdca-nonlinear-{b}", ["run", *SMOKE, *DUAL, f"backend={b}", f"topology.workers={w}", "results_dir={R}"],
       ["algo=dfsdca", "linear objective", "allowed"])
      for b, w in (("serial", 1), ("thread", 2), ("process", 2), ("sim", 2), ("torchdist", 2), ("mpi", 2))],
    # DNI's synthesizer takes flat or [C, H, W] activations: a cut where they are [T, D] is refused before launch
    # (on every backend that runs pipeline algorithms)
    *[(f"dni-synth-shape-{b}", ["run", *SMOKE, "algo=dni", "model=tokens2d", "topology.stages=2", "algo.cuts=[1]",
                                f"backend={b}", "results_dir={R}"],
       ["algo.cuts=[1]", "shape [4, 8]", "allowed", "[C, H, W]"]) for b in ("serial", "process", "sim", "torchdist")],
    ("cocoa-nonlinear-process", ["run", *SMOKE, *DUAL, "algo=cocoa_plus", "backend=process", "topology.workers=2",
                                 "results_dir={R}"], ["algo.objective=ridge", "model.num_classes=2", "allowed"]),
    ("figures-bad-override", ["figures", "results_dir={R}", "algo.lr=-1"], ["algo.lr=-1", "finite number > 0"]),
    ("report-bad-override", ["report", "results_dir={R}", "algo.lr=-1"], ["algo.lr=-1", "finite number > 0"]),
    ("ls-bad-override", ["ls", "results_dir={R}", "seed=-3"], ["seed=-3", "0..4294967295"]),
    ("figures-stem-dotdot", ["figures", "../tests", "results_dir={R}"], ["../tests", "unknown stem"]),
    ("figures-stem-slash", ["figures", "hdist/papers", "results_dir={R}"], ["hdist/papers", "unknown stem"]),
    ("reproduce-stem-dotdot", ["reproduce", "../huo17-fig1", "results_dir={R}"], ["../huo17-fig1", "unknown stem"]),
]

# LIBSVM contents per row (train, val, test)
LIBSVM = {
    "libsvm-nan": (GOOD_SVM + "1 1:nan\n", GOOD_SVM, GOOD_SVM),
    "libsvm-inf-label": (GOOD_SVM, GOOD_SVM, "inf 1:0.5\n" + GOOD_SVM),
    "libsvm-empty": (GOOD_SVM, "", GOOD_SVM),
}


@pytest.mark.parametrize("case, args, words", INPUTS, ids=[r[0] for r in INPUTS])
def test_bad_input_is_one_line_exit_2_nothing_written(case, args, words, cli, tmp_path, data_root, bad_conf,
                                                     monkeypatch):
    scratch, results = tmp_path / "scratch", tmp_path / "results"
    scratch.mkdir()
    (scratch / "afile").write_text("not a directory\n")
    if case == "results_dir-read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder: mode bits do not stop it")
        (scratch / "ro").mkdir(mode=0o555)
    if case.endswith("-mpi") and shutil.which("mpiexec") is None:
        pytest.skip("no mpiexec: backend=mpi is not available here")
    if case.startswith(("experiment-", "dni-")):
        monkeypatch.setattr(C, "CONF_DIR", bad_conf)
    if case.startswith("dni-"):
        monkeypatch.setitem(models.MODELS, "tokens2d", models.ModelSpec("tokens2d", tokens2d, 10, (4, 8), "test"))
    if case in LIBSVM:
        _write_libsvm(data_root, *LIBSVM[case])
    monkeypatch.delenv("HDIST_TEST_UNSET_VAR", raising=False)
    argv = [a.replace("{R}", str(results)).replace("{T}", str(scratch)) for a in args]
    before = sorted(p.name for p in scratch.iterdir())
    code, out, err = cli(*argv)
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("hdist: "), err
    assert "Traceback" not in err + out
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not results.exists(), sorted(results.rglob("*"))
    assert sorted(p.name for p in scratch.iterdir()) == before


def test_epochs_takes_a_fraction_and_whole_floats_keep_the_run_id():
    from hdist.launch import prepare

    half = prepare(["scale=smoke", "scale.epochs=0.5"])
    assert half.scale.epochs == 0.5
    one, one_float = prepare(["scale=smoke", "scale.epochs=1"]), prepare(["scale=smoke", "scale.epochs=1.0"])
    assert C.run_id(one) == C.run_id(one_float) != C.run_id(half)


def _run_dirs(results: Path) -> set[str]:
    return {p.name for p in (results / "adhoc").iterdir()} if (results / "adhoc").exists() else set()


def test_changed_data_is_a_new_run_older_runs_are_kept(cli, tmp_path, data_root):
    args = ("run", *SMOKE, *IJCNN1, f"results_dir={tmp_path}")
    assert cli(*args)[0] == 0
    (run_dir,) = (tmp_path / "adhoc").iterdir()
    recorded = json.loads((run_dir / "meta.json").read_text())["data_files"]
    assert {Path(p).name for p in recorded} == {"ijcnn1.tr", "ijcnn1.val", "ijcnn1.t"}
    code, _, err = cli(*args)
    assert code == 0 and "skip" in err
    _write_libsvm(data_root, val=GOOD_SVM + "1 1:0.25\n")  # the data is fixed after the run
    code, _, err = cli(*args)
    assert code == 0 and "skip" not in err, err
    assert len(_run_dirs(tmp_path)) == 2  # a new run id; the old run is kept as it was
    assert json.loads((run_dir / "meta.json").read_text())["data_files"] == recorded


def test_data_root_with_other_contents_is_a_new_run_id(cli, tmp_path, monkeypatch):
    """Two data roots with LIBSVM files at the same relative paths: other contents are another run id, the
    same contents the same id (the files' names and md5s are the data's identity, not where they lie)."""
    from hdist.launch import check_problem, prepare, run_paths

    a, b, same = tmp_path / "a", tmp_path / "b", tmp_path / "same"
    _write_libsvm(a)
    _write_libsvm(b, tr=GOOD_SVM.replace("0.5", "0.75"))
    _write_libsvm(same)

    def rid(root: Path) -> str:
        monkeypatch.setenv("HDIST_DATA", str(root))
        cfg = prepare([*SMOKE, *IJCNN1, f"results_dir={tmp_path / 'r'}"])
        check_problem(cfg)
        return run_paths(cfg)[0]

    assert rid(a) != rid(b)
    assert rid(a) == rid(same)
    # end to end: the same command after HDIST_DATA moved to other contents runs again under a new id
    results = tmp_path / "results"
    args = ("run", *SMOKE, *IJCNN1, f"results_dir={results}")
    monkeypatch.setenv("HDIST_DATA", str(a))
    assert cli(*args)[0] == 0
    monkeypatch.setenv("HDIST_DATA", str(b))
    code, _, err = cli(*args)
    assert code == 0 and "skip" not in err and len(_run_dirs(results)) == 2, err
    monkeypatch.setenv("HDIST_DATA", str(same))
    code, _, err = cli(*args)
    assert code == 0 and "skip" in err and len(_run_dirs(results)) == 2, err


@pytest.mark.parametrize("contents, skipped", [("same", True), ("other", False), ("unrecorded", True)])
def test_a_real_data_run_under_its_older_id_is_found_when_its_files_are_the_same(cli, tmp_path, data_root, contents,
                                                                                  skipped):
    """A run of files finished by an older hdist lies under the id of its config alone: found and skipped when
    the files are the same by name and md5 (or when it recorded none), else the data is new: a new run id."""
    from hdist import config as Cfg
    from hdist.launch import prepare

    results = tmp_path / "results"
    args = ("run", *SMOKE, *IJCNN1, f"results_dir={results}")
    assert cli(*args)[0] == 0
    (new_dir,) = (results / "adhoc").iterdir()
    old_dir = new_dir.with_name(Cfg.run_id(prepare(list(args[1:]))))  # the config-only id
    assert old_dir != new_dir
    new_dir.rename(old_dir)
    meta = json.loads((old_dir / "meta.json").read_text())
    if contents == "other":
        meta["data_files"] = {k: "0" * 32 for k in meta["data_files"]}
    elif contents == "unrecorded":
        del meta["data_files"]
    (old_dir / "meta.json").write_text(json.dumps(meta))
    code, _, err = cli(*args)
    assert code == 0, err
    assert ("skip" in err) == skipped and _run_dirs(results) == ({old_dir.name} if skipped else
                                                                   {old_dir.name, new_dir.name}), err


def test_synthetic_data_records_its_generator(cli, tmp_path):
    assert cli("run", *SMOKE, f"results_dir={tmp_path}")[0] == 0
    (run_dir,) = (tmp_path / "adhoc").iterdir()
    assert "generator" in json.loads((run_dir / "meta.json").read_text())["data_files"]


# ---------------------------------------------------------------------------------------------
# Bad files in a results directory
# ---------------------------------------------------------------------------------------------


def _laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for c in "bcdefghi":
        lines.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = c
    return "\n".join(lines) + "\n"


def _garbage_parquet(path: Path) -> None:
    path.write_bytes(b"PAR1 this is not parquet")


def _wrong_schema(path: Path) -> None:
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), path)


# (id, file to spoil, how, whether the run is then unreadable)
FILES = [
    ("stray-metrics-file", "metrics-r0.parquet", lambda p: p.write_text("not parquet\n"), True),
    ("wrong-schema-metrics", "metrics-r0.parquet", _wrong_schema, True),
    ("garbage-part-of-finished-run", "metrics-r0.p00001.parquet", _garbage_parquet, False),
    ("stray-rank-name", "metrics-rX.parquet", lambda p: p.write_text("junk\n"), False),
    ("config-not-yaml", "config.yaml", lambda p: p.write_text("algo: [1, 2\n"), True),
    ("config-billion-laughs", "config.yaml", lambda p: p.write_text(_laughs()), True),
    ("config-empty", "config.yaml", lambda p: p.write_text(""), True),
    ("config-scalar", "config.yaml", lambda p: p.write_text("42\n"), True),
    ("config-wrong-schema", "config.yaml", lambda p: p.write_text("a: 1\nb: [2]\n"), True),
    ("config-over-1MB", "config.yaml", lambda p: p.write_text("# pad\n" * 200_000 + "algo: {name: sgd}\n"), True),
    ("status-list", "status.json", lambda p: p.write_text('["done"]\n'), True),
    ("status-not-json", "status.json", lambda p: p.write_text("{done\n"), True),
    ("meta-scalar", "meta.json", lambda p: p.write_text("7\n"), True),
]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A results dir with two finished runs (made once; each test copies it)."""
    from hdist.launch import execute, prepare

    root = tmp_path_factory.mktemp("two-runs")
    for seed in (0, 1):
        assert execute(prepare([*SMOKE, f"seed={seed}", f"results_dir={root}"])).status == "done"
    return root


@pytest.mark.parametrize("case, name, spoil, unreadable", FILES, ids=[r[0] for r in FILES])
def test_bad_run_file_is_named_and_skipped(case, name, spoil, unreadable, two_runs, cli, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(two_runs, root)
    bad_run, good_run = sorted((root / "adhoc").iterdir())
    spoil(bad_run / name)
    t0 = time.perf_counter()
    summaries, bad = scan_runs(root, ["adhoc"])
    assert time.perf_counter() - t0 < 30  # a billion laughs would not finish (no timing claim beyond that)
    assert [s["run_id"] for s in summaries] == ([good_run.name] if unreadable else [bad_run.name, good_run.name])
    assert len(bad) == int(unreadable) and all(str(bad_run / name) in b for b in bad)

    code, out, err = cli("ls", f"results_dir={root}")
    assert code == 0 and "Traceback" not in out + err
    row = next(line for line in out.splitlines() if line.startswith("adhoc"))
    assert row.split()[1:7] == (["1", "1", "0", "0", "0", "1"] if unreadable else ["2", "2", "0", "0", "0", "0"])
    code, out, err = cli("ls", "adhoc", f"results_dir={root}")
    assert code == 0 and good_run.name in out and (("unreadable: 1" in out) == unreadable)
    code, out, err = cli("figures", f"results_dir={root}")
    assert code == 0 and "Traceback" not in out + err
    assert f"({1 if unreadable else 2} run(s))" in out
    assert (str(bad_run / name) in err) == unreadable
    code, out, err = cli("report", f"results_dir={root}")
    report = (root / "REPORT.md").read_text()
    assert code == 0 and ("unreadable: 1" in report) == unreadable and "| adhoc | " in report


def test_load_results_reads_parts_only_of_unfinished_runs(two_runs, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(two_runs, root)
    run_dir = sorted((root / "adhoc").iterdir())[0]
    full = read_run_metrics(run_dir)
    # A killed run: its rank's parts and no final file.
    pq.write_table(full.slice(0, 3), run_dir / "metrics-r0.p00001.parquet")
    pq.write_table(full.slice(3, 2), run_dir / "metrics-r0.p00002.parquet")
    assert len(load_results(root, "adhoc")) == 2 * len(full)  # done: the final file, the parts left alone
    (run_dir / "metrics-r0.parquet").unlink()
    (run_dir / "status.json").write_text('{"status": "running", "reason": ""}\n')
    assert read_run_metrics(run_dir, parts=False).num_rows == 0
    every = load_results(root, "adhoc", status=None)
    assert (every["run_id"] == run_dir.name).sum() == 5


def test_read_only_results_dir_is_refused_even_where_mode_bits_do_not_stop_root(cli, tmp_path, monkeypatch):
    # Root (as in CI containers) writes through mode 0555, so the row above is skipped there; the
    # refusal itself is what os.access reports, as on a read-only mount.
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real_access(p, mode, **kw))
    code, out, err = cli("run", *SMOKE, f"results_dir={ro}/sub")
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "not writable" in err and f"{ro}" in err
    assert not list(ro.iterdir())
