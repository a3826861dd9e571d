"""hdist as a Hydra application: per-scale settings composed by Hydra, ``--cfg job``, the sweeper plugin and
the launchers, bash completion, ``hydra.searchpath`` experiments and the installable wheel (issue 23)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hdist import config as C
from hdist.launch import prepare
from hdist.types import ConfigError
from tests.conftest import ROOT, run_subprocess

SMOKE = ["scale=smoke", "progress=quiet"]


def _run_dirs(root: Path, stem: str = "adhoc") -> list[Path]:
    d = root / stem
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def _status(run_dir: Path) -> str:
    return json.loads((run_dir / "status.json").read_text())["status"]


# ---------------------------------------------------------------------------------------------
# Per-scale settings: Hydra composes conf/at_scale/<stem>/<scale>.yaml
# ---------------------------------------------------------------------------------------------


def test_per_scale_settings_are_composed_by_hydra_and_the_command_line_wins():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(C.CONF_DIR), version_base="1.3"):
        raw = compose(config_name="config", overrides=["experiment=huo17-fig1", "scale=smoke"])
    # Hydra's own composition already holds the smoke settings: nothing is applied after it.
    assert (raw.dataset.n_train, raw.scale.epochs) == (500, 2)
    assert prepare(["experiment=huo17-fig1", "scale=smoke", "dataset.n_train=300"]).dataset.n_train == 300
    assert prepare(["experiment=huo17-fig1", "scale=paper"]).scale.epochs == 100
    assert not any(C.CONF_DIR.glob("experiment/*.yaml")) or all(
        "at_scale" not in OmegaConf.load(p) for p in C.CONF_DIR.glob("experiment/*.yaml"))


def test_an_old_at_scale_block_is_refused_in_one_line():
    cfg = C.compose(["scale=smoke"])
    cfg.at_scale = {"smoke": {"scale.epochs": 3}}
    with pytest.raises(ConfigError) as e:
        C.finalize(cfg)
    assert "at_scale" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 1611 compositions: about 10 minutes on 2 busy cores
def test_every_point_of_every_experiment_at_every_scale_keeps_its_run_id():
    """tests/data/run_ids_all_points.json: the run id of every point of every experiment at smoke, small and
    paper scale, written by the code before per-scale settings moved into Hydra's composition (at_scale
    blocks applied after it). Every run finished then is still found."""
    from tests.dump_configs import experiment_points, resolved

    want = json.loads((Path(__file__).parent / "data" / "run_ids_all_points.json").read_text())
    got = {label: resolved(ovs)[0] for label, ovs in experiment_points(["smoke", "small", "paper"])}
    old_stems = {label.split("@")[0] for label in want}
    got = {label: rid for label, rid in got.items() if label.split("@")[0] in old_stems}  # stems added since: new
    assert set(got) == set(want)
    assert {k: (want[k], v) for k, v in got.items() if want[k] != v} == {}


def test_a_run_finished_before_the_change_is_skipped(tmp_path):
    """A finished run stored under the id the older code gave it (tests/data/run_ids.json) is skipped."""
    from hdist.sweeps import experiment_runs, plan

    want = json.loads((Path(__file__).parent / "data" / "run_ids.json").read_text())
    old_id = want["huo17-fig1@smoke#0"]
    run_dir = tmp_path / "huo17-fig1" / old_id
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"status": "done", "reason": ""}))
    point = experiment_runs("huo17-fig1", ["scale=smoke"])[0]
    [p] = plan([*point, f"results_dir={tmp_path}"], [])
    assert (p.run_id, p.status) == (old_id, "done")


# ---------------------------------------------------------------------------------------------
# --cfg job: the config that runs
# ---------------------------------------------------------------------------------------------


def _cfg_job_equals_config_yaml(cli, tmp_path: Path, overrides: list[str]) -> None:
    code, printed, err = cli("run", "--cfg", "job", *overrides, f"results_dir={tmp_path}")
    assert code == 0, err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # --cfg writes nothing
    code, _, err = cli("run", *overrides, f"results_dir={tmp_path}")
    assert code == 0, err
    [stored] = [p for p in tmp_path.rglob("config.yaml")]
    assert printed == stored.read_text()


def test_cfg_job_prints_the_config_the_run_stores(cli, tmp_path):
    _cfg_job_equals_config_yaml(cli, tmp_path / "r", [*SMOKE, "experiment=huo17-fig1", "algo.beta=0.5"])


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the heaviest smoke runs (thesis-fig13) take minutes on 2 busy cores
@pytest.mark.parametrize("stem", C.group_options("experiment"))
def test_cfg_job_equals_config_yaml_on_every_experiment_at_smoke_scale(cli, tmp_path, stem):
    from hdist.sweeps import experiment_runs

    point = experiment_runs(stem, ["scale=smoke"])[0]
    _cfg_job_equals_config_yaml(cli, tmp_path / stem, [*point, "progress=quiet"])


def test_cfg_job_with_a_bad_value_is_the_one_line_error(sub, tmp_path):
    r = sub("run", "--cfg", "job", "algo.lr=-1", f"results_dir={tmp_path / 'r'}")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "algo.lr" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------
# Sweeps: the HdistSweeper plugin
# ---------------------------------------------------------------------------------------------


def test_no_private_hydra_api():
    for path in [*(ROOT / "hdist").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")]:
        assert "hydra._internal" not in path.read_text(), path


def test_a_bad_point_stops_the_sweep_before_anything_runs(sub, tmp_path):
    r = sub("run", "-m", "algo.lr=0.1,-1", *SMOKE, f"results_dir={tmp_path / 'r'}")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "algo.lr" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_sweep_prints_each_point_and_keeps_one_record_per_sweep(cli, tmp_path):
    args = ["run", "-m", "seed=0,1", *SMOKE, "algo.max_steps=2", f"results_dir={tmp_path}"]
    code, _, err = cli(*args)
    assert code == 0, err
    runs = _run_dirs(tmp_path)
    assert len(runs) == 2 and all(_status(r) == "done" for r in runs)
    for run in runs:  # each point's overrides beside its run id and status
        assert any(run.name in ln and "done" in ln and "seed=" in ln for ln in err.splitlines())
    [record] = list((tmp_path / "adhoc").glob("sweep-*.json"))
    rows = json.loads(record.read_text())["runs"]
    assert {r["run_id"] for r in rows} == {r.name for r in runs}
    assert {tuple(r["overrides"][:1]) for r in rows} == {("seed=0",), ("seed=1",)}
    assert {r["status"] for r in rows} == {"done"}

    code, _, err = cli(*args)  # resume: nothing relaunched, a second record beside the first
    assert code == 0
    assert "2 skipped" in err
    records = list((tmp_path / "adhoc").glob("sweep-*.json"))
    assert len(records) == 2 or record.name in {r.name for r in records}  # same second, same pid: rewritten
    assert len(_run_dirs(tmp_path)) == 2
    assert not (tmp_path / ".multirun" / "multirun.yaml").exists()


def _launcher_sweep(tmp_path: Path, launcher: list[str]) -> None:
    """A 2x2 sweep through a real launcher: four run directories, then the resume skips all four."""
    args = ["run", "-m", *launcher, "seed=0,1", "algo.lr=0.1,0.05", *SMOKE, "algo.max_steps=2",
            f"results_dir={tmp_path}"]
    r = run_subprocess(*args, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = _run_dirs(tmp_path)
    assert len(runs) == 4 and all(_status(d) == "done" for d in runs)
    for d in runs:
        assert (d / "config.yaml").is_file() and list(d.glob("metrics-r*.parquet"))
    mtimes = {d.name: (d / "status.json").stat().st_mtime_ns for d in runs}
    r = run_subprocess(*args, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 skipped" in r.stderr
    assert {d.name: (d / "status.json").stat().st_mtime_ns for d in _run_dirs(tmp_path)} == mtimes


@pytest.mark.slow
def test_a_2x2_sweep_through_submitit_local_and_its_resume(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    _launcher_sweep(tmp_path, ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"])


@pytest.mark.slow
def test_a_2x2_sweep_through_joblib_and_its_resume(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    _launcher_sweep(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])


def test_the_slurm_launcher_composes_with_hdist_settings(cli, tmp_path):
    """hydra/launcher=slurm (conf/hydra/launcher/slurm.yaml) is submitit_slurm with the settings docs/clusters.md
    names; Hydra composes it (no cluster needed to check that)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    code, out, err = cli("run", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                         "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
                         "hydra.launcher.timeout_min=30", f"results_dir={tmp_path}", "--cfg", "hydra", "-p",
                         "hydra.launcher")
    assert code == 0, err
    launcher = OmegaConf.create(out)
    assert "SlurmLauncher" in launcher._target_
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node, launcher.timeout_min) == \
        ("gpu", 4, 4, 30)


# ---------------------------------------------------------------------------------------------
# Bash completion
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def complete(tmp_path):
    """TAB at the end of a line in bash, with the script ``hdist run --shell-completion install=bash`` wrote
    (``hdist`` on PATH as the console script would be): the candidates bash offers."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "hdist"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m hdist.cli \"$@\"\n")
    exe.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    script = subprocess.run(["hdist", "run", "--shell-completion", "install=bash"], capture_output=True, text=True,
                            env=env, timeout=120, check=True).stdout
    assert "complete -o nospace -o default -F hydra_bash_completion hdist" in script
    (tmp_path / "comp.sh").write_text(script)

    def call(line: str) -> list[str]:
        words = line.split(" ")
        driver = textwrap.dedent(f"""\
            source {tmp_path / 'comp.sh'}
            COMP_LINE={line!r}
            COMP_POINT=${{#COMP_LINE}}
            COMP_WORDS=({' '.join(repr(w) for w in words)})
            COMP_CWORD={len(words) - 1}
            hydra_bash_completion
            printf '%s\\n' "${{COMPREPLY[@]}}"
            """)
        r = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, env=env, timeout=120,
                           cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return [w for w in r.stdout.split() if w]

    return call


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_config_groups(complete):
    assert set(complete("hdist run algo=k")) == {"algo=kavg", "algo=kavg_probe"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_verbs_keys_and_options(complete):
    assert {"run", "reproduce"} <= set(complete("hdist r"))
    assert "algo.lr=" in complete("hdist run algo.l")
    assert "scale=smoke" in complete("hdist run algo=sgd scale=sm")


# ---------------------------------------------------------------------------------------------
# A user's own configs: hydra.searchpath
# ---------------------------------------------------------------------------------------------


def _user_experiment(root: Path) -> Path:
    (root / "experiment").mkdir(parents=True)
    (root / "experiment" / "my-sgd.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        stem: my-sgd
        algo:
          lr: 0.05
        sweep:
          - {seed: "0,1"}
        """))
    (root / "at_scale" / "my-sgd").mkdir(parents=True)
    (root / "at_scale" / "my-sgd" / "smoke.yaml").write_text("# @package _global_\nalgo:\n  max_steps: 3\n")
    return root


def test_hdist_reproduce_runs_a_user_experiment_from_its_own_directory(cli, tmp_path):
    user = _user_experiment(tmp_path / "my-configs")
    out = tmp_path / "results"
    code, stdout, err = cli("reproduce", "my-sgd", f"hydra.searchpath=[file://{user}]", *SMOKE, f"results_dir={out}")
    assert code == 0, err
    runs = _run_dirs(out, "my-sgd")
    assert len(runs) == 2 and all(_status(r) == "done" for r in runs)
    cfgs = [OmegaConf.load(r / "config.yaml") for r in runs]
    assert {c.seed for c in cfgs} == {0, 1}
    assert all(c.algo.lr == 0.05 and c.algo.max_steps == 3 and c.stem == "my-sgd" for c in cfgs)
    code, _, err = cli("reproduce", "my-sgd", *SMOKE, f"results_dir={out}")  # without the search path: unknown
    assert code == 2 and "my-sgd" in err


# ---------------------------------------------------------------------------------------------
# The wheel
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path):
    """Build the wheel, install it in a fresh venv (system site-packages for torch and friends: no download),
    and run ``hdist run scale=smoke`` from a directory that is not the repository."""
    wheels = tmp_path / "wheels"
    # The build backend this environment has, when it is recent enough (pyproject: setuptools>=68); else pip
    # fetches one into an isolated build environment (a package registry is needed then).
    try:
        import setuptools

        local = int(setuptools.__version__.split(".")[0]) >= 68
    except ImportError:
        local = False
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels),
                    *(["--no-build-isolation"] if local else [])], check=True, timeout=300, capture_output=True)
    [wheel] = list(wheels.glob("hdist-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
                    str(wheel)], check=True,
                   timeout=300, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import hdist.config as C; print(C.CONF_DIR)"], capture_output=True,
                           text=True, env=env, cwd=elsewhere, timeout=120, check=True).stdout.strip()
    assert where.startswith(str(venv)) and Path(where, "experiment", "huo17-fig1.yaml").is_file()
    r = subprocess.run([str(venv / "bin" / "hdist"), "run", "scale=smoke", "progress=quiet", "algo.max_steps=3"],
                       capture_output=True, text=True, env=env, cwd=elsewhere, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    [run] = _run_dirs(elsewhere / "results")
    assert _status(run) == "done"
    r = subprocess.run([str(venv / "bin" / "hdist"), "run", "-m", "seed=0,1", "scale=smoke", "progress=quiet",
                        "algo.max_steps=3"], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]  # the sweeper plugin ships in the wheel too
    assert len(_run_dirs(elsewhere / "results")) == 2
