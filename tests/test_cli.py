"""The command line end to end: run, rerun skipped, multirun, reproduce, figures, ls, report, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hdist.claims import Claim
from hdist.metrics import load_results

SMOKE = ("scale=smoke", "scale.epochs=1", "progress=quiet")


def _runs(root, stem="adhoc"):
    d = root / stem
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.exists() else []


def test_help_lists_the_verbs(sub):
    r = sub("--help")
    assert r.returncode == 0
    for verb in ("run", "reproduce", "figures", "ls", "report"):
        assert verb in r.stdout


def test_run_help_is_hydras_with_the_config_groups(sub):
    r = sub("run", "--help")
    assert r.returncode == 0
    for group in ("algo:", "model:", "dataset:", "backend:", "topology:", "scale:", "experiment:"):
        assert group in r.stdout


def test_run_then_rerun_is_skipped(sub, tmp_path):
    r = sub("run", *SMOKE, f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "results:" in r.stdout
    (run_dir,) = _runs(tmp_path)
    for name in ("config.yaml", "meta.json", "status.json", "metrics-r0.parquet"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "status.json").read_text())["status"] == "done"
    meta = json.loads((run_dir / "meta.json").read_text())
    for key in ("hdist", "python", "torch", "numpy", "git_commit", "git_dirty", "host", "cpu_count", "backend",
                "n_params", "start", "end"):
        assert key in meta, key
    assert meta["n_params"] == 79510
    mtime = (run_dir / "metrics-r0.parquet").stat().st_mtime_ns
    r2 = sub("run", *SMOKE, f"results_dir={tmp_path}")
    assert r2.returncode == 0
    assert "skip" in r2.stderr
    assert (run_dir / "metrics-r0.parquet").stat().st_mtime_ns == mtime


def test_multirun_runs_every_point_once(cli, tmp_path):
    args = ("run", "-m", "seed=0,1,2", "algo.lr=0.1,0.01", *SMOKE, f"results_dir={tmp_path}")
    code, _, err = cli(*args)
    assert code == 0, err
    assert len(_runs(tmp_path)) == 6
    code, _, err = cli(*args)
    assert code == 0
    assert "6 skipped" in err
    assert len(_runs(tmp_path)) == 6


@pytest.mark.slow  # > 5 s: the default suite stays under 5 minutes
def test_bad_input_exits_2_with_one_line_and_writes_nothing(sub, tmp_path):
    for args in (["algo=nope"], ["algo.lr=-1"], ["model=resnet20", "dataset=mnist"], ["-m", "algo.lr=0.1,-1"]):
        r = sub("run", *args, f"results_dir={tmp_path}")
        assert r.returncode == 2, (args, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("hdist: "), r.stderr
        assert "Traceback" not in r.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_missing_real_data_is_one_line_exit_2(cli, tmp_path):
    code, _, err = cli("run", "dataset=mnist", *SMOKE, f"results_dir={tmp_path}")
    assert code == 2
    assert "mnist" in err and "expected" in err
    assert not any(tmp_path.iterdir())


def test_bad_verb_and_bad_stem(cli):
    assert cli("frobnicate")[0] == 2
    code, _, err = cli("reproduce", "no-such-figure")
    assert code == 2 and "no-such-figure" in err


def test_stems_outside_the_registry_are_one_line_exit_2(cli, tmp_path):
    """A stem names a figure module only through hdist.papers' registry: a path, or a name no conf/experiment
    file has, loads no code and gets one line naming it and the allowed stems."""
    for verb in ("reproduce", "figures"):
        for stem in ("../experiments/huo17-fig1", "huo17-fig1/..", "..", "no-such-figure"):
            code, out, err = cli(verb, stem, f"results_dir={tmp_path}")
            assert code == 2, (verb, stem, err)
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert len(lines) == 1 and stem in lines[0] and "allowed: bench-clars" in lines[0], err
            assert "Traceback" not in err and not out
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.slow  # > 5 s: the default suite stays under 5 minutes
def test_reproduce_figures_ls_report(cli, tmp_path):
    fast = ("scale=smoke", "scale.epochs=1", "progress=quiet", f"results_dir={tmp_path}")
    code, out, err = cli("reproduce", "huo17-fig1", *fast)
    assert code == 0, err
    n = len(_runs(tmp_path, "huo17-fig1"))
    assert n == 8  # SGD's 4-point tuning grid, SVRG and SGD_SVRG at 2 learning rates each
    png = tmp_path / "figures" / "huo17-fig1.png"
    assert png.exists() and png.stat().st_size > 1000
    assert (tmp_path / "figures" / "huo17-fig1.pdf").exists()
    claims = json.loads((tmp_path / "huo17-fig1" / "claims.json").read_text())
    assert claims and set(claims[0]) == set(Claim.__dataclass_fields__)
    # SGD's training loss falls, but on a stand-in of MNIST: n/a, never PASS for the paper's claim.
    assert claims[0]["status"] == "n/a" and claims[0]["stand_in"] == "mnist" and claims[0]["passed"] is None
    # The stand-in is labelled: no MNIST in the (empty) data root.
    df = load_results(tmp_path, "huo17-fig1")
    assert (df["stand_in_for"] == "mnist").all()
    # Resumable: a second reproduce runs nothing.
    code, _, err = cli("reproduce", "huo17-fig1", *fast)
    assert code == 0 and f"{n} skipped" in err
    # A run of another config in the stem's folder (as an earlier version of the experiment, or of
    # a topology it uses, leaves behind) is not drawn by reproduce, and reproduce says so.
    code, _, err = cli("run", "experiment=huo17-fig1", "algo=sgd", "algo.lr=0.123", *fast)
    assert code == 0, err
    assert len(_runs(tmp_path, "huo17-fig1")) == n + 1
    code, _, err = cli("reproduce", "huo17-fig1", *fast)
    assert code == 0 and f"drawn from this sweep's {n} run(s); 1 other run(s)" in err

    code, out, _ = cli("run", *SMOKE, f"results_dir={tmp_path}")
    assert code == 0
    code, out, err = cli("figures", f"results_dir={tmp_path}")
    assert code == 0 and "huo17-fig1" in out and "adhoc" in out
    assert (tmp_path / "figures" / "adhoc.png").exists()
    # figures draws a stem from its last reproduce's runs too (sweep.json), and --all from every run
    assert f"huo17-fig1.png  ({n} run(s))" in out and "1 other run(s)" in err and "--all" in err
    assert json.loads((tmp_path / "huo17-fig1" / "sweep.json").read_text())["run_ids"] == \
        sorted(p.name for p in _runs(tmp_path, "huo17-fig1") if "0.123" not in (p / "config.yaml").read_text())
    code, out, _ = cli("figures", "--all", f"results_dir={tmp_path}")
    assert code == 0 and f"huo17-fig1.png  ({n + 1} run(s))" in out
    # --no-figures still records the sweep (a later `figures` draws it)
    (tmp_path / "huo17-fig1" / "sweep.json").unlink()
    code, out, _ = cli("reproduce", "huo17-fig1", "--no-figures", *fast)
    assert code == 0 and "figure:" not in out and (tmp_path / "huo17-fig1" / "sweep.json").exists()
    code, _, err = cli("figures", "--every", f"results_dir={tmp_path}")
    assert code == 2 and "--every" in err and "--all" in err and "Traceback" not in err
    code, out, _ = cli("ls", f"results_dir={tmp_path}")
    assert code == 0 and "huo17-fig1" in out and "adhoc" in out
    code, out, _ = cli("ls", "huo17-fig1", f"results_dir={tmp_path}")
    assert code == 0 and out.count("done") == n + 1 and "algo.lr" in out
    code, out, _ = cli("report", f"results_dir={tmp_path}")
    assert code == 0
    report = (tmp_path / "REPORT.md").read_text()
    assert "## huo17-fig1" in report and "figures/huo17-fig1.png" in report
    assert "| PASS |" in report and f"Runs: {n + 1}; drawn: {n} finished (of its last `hdist reproduce`" in report
    code, out, _ = cli("report", "--all", f"results_dir={tmp_path}")
    assert code == 0 and f"Runs: {n + 1}; drawn: {n + 1} finished\n" in (tmp_path / "REPORT.md").read_text()


def test_diverged_run_is_marked_and_the_sweep_goes_on(cli, tmp_path):
    code, _, err = cli("run", "-m", "algo.lr=1e6,0.05", *SMOKE, "log.train_every=1", f"results_dir={tmp_path}")
    assert code == 0, err
    statuses = sorted(json.loads((d / "status.json").read_text())["status"] for d in _runs(tmp_path))
    assert statuses == ["diverged", "done"]
    df = load_results(tmp_path)
    assert set(df["status"]) == {"diverged", "done"}


def test_models_and_data_verbs(cli):
    code, out, _ = cli("models")
    assert code == 0 and "mlp" in out and "79,510" in out
    code, out, _ = cli("data")
    assert code == 0 and "mnist" in out


def test_benchmark_is_an_experiment(cli, tmp_path):
    stem = "bench-overhead"
    code, out, err = cli("reproduce", stem, "scale=smoke", "algo.steps=50", "algo.reps=2", "progress=quiet",
                         f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path, stem)
    med = df[df["metric"] == "steps_per_s"].groupby(["algo.batch_size", "role"])["value"].median()
    assert set(med.index.get_level_values("role")) == {"hdist", "raw"}
    assert (med > 0).all()
    claims = json.loads((tmp_path / stem / "claims.json").read_text())
    assert len(claims) == 2 and all(isinstance(c["passed"], bool) for c in claims)
    assert isinstance(df, pd.DataFrame)


@pytest.mark.slow  # a benchmark's plumbing at smoke scale: minutes on a loaded 2-core box (make test-slow)
def test_data_and_model_benchmark(cli, tmp_path):
    code, out, err = cli("reproduce", "bench-data-models", "scale=smoke", "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path, "bench-data-models")
    load = df[df["metric"] == "samples_per_s"]
    assert {"mnist", "ijcnn1"} <= set(load["role"]) and (load["value"] > 0).all()
    assert set(df[df["metric"] == "step_s"]["role"]) == {"resnet20"}
    assert (tmp_path / "figures" / "bench-data-models.png").exists()


def _fake_mnist(root, n=20):
    import gzip
    import struct

    d = root / "mnist"
    d.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        (d / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 784)))
        (d / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(struct.pack(">II", 2049, n) + bytes(n)))
    return d


@pytest.mark.slow  # > 5 s: the default suite stays under 5 minutes
def test_bad_data_files_are_one_line_exit_2(sub, tmp_path):
    root = tmp_path / "data"
    d = _fake_mnist(root)
    out = tmp_path / "results"
    env = {"HDIST_DATA": str(root), "HDIST_OFFLINE": "1"}
    # Not the published files: the checksum check refuses them.
    r = sub("run", "dataset=mnist", "scale=smoke", f"results_dir={out}", env=env)
    assert r.returncode == 2 and "md5" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    # With verification off, a truncated file is still caught by the idx parser.
    raw = (d / "train-images-idx3-ubyte.gz").read_bytes()
    import gzip

    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(raw)[:-100]))
    r = sub("run", "dataset=mnist", "dataset.verify=false", "scale=smoke", f"results_dir={out}", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() or not any(out.iterdir())
    # Unknown dataset and a missing root.
    r = sub("run", "dataset=nope", f"results_dir={out}", env=env)
    assert r.returncode == 2 and "dataset=nope" in r.stderr
    r = sub("run", "dataset=mnist", f"dataset.root={tmp_path / 'absent'}", f"results_dir={out}", env=env)
    assert r.returncode == 2 and "absent" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
