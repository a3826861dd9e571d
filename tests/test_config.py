"""Every config option of every group composes; bad input is one line and exit 2, nothing written."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from hdist import config as C
from hdist.launch import prepare
from hdist.types import ConfigError


def _all_options():
    for group in ("dataset", "model", "algo", "backend", "topology", "scale", "experiment"):
        for opt in C.group_options(group):
            yield group, opt


@pytest.mark.parametrize("group,opt", list(_all_options()))
def test_every_option_composes_and_resolves(group, opt):
    cfg = C.finalize(C.compose([f"{group}={opt}"]))
    assert cfg.seed == 0
    assert OmegaConf.select(cfg, f"{group}.name" if group != "experiment" else "stem") is not None
    if group == "experiment":
        assert cfg.stem == opt


# Every sweep point composed and validated: smoke scale in the default suite (it is what the
# smoke tests run); small and paper scale (hundreds of points, ~0.3 s each) under the slow marker.
@pytest.mark.parametrize("scale", ["smoke", pytest.param("small", marks=pytest.mark.slow),
                                   pytest.param("paper", marks=pytest.mark.slow)])
@pytest.mark.parametrize("opt", C.group_options("experiment"))
def test_every_experiment_validates_at_every_scale(opt, scale):
    from hdist.sweeps import experiment_runs

    runs = experiment_runs(opt, [f"scale={scale}"])
    assert runs
    # Points that differ only in their seed validate alike: one of each is enough.
    seen = set()
    for ovs in runs:
        key = tuple(o for o in ovs if not o.startswith("seed="))
        if key not in seen:
            seen.add(key)
            prepare(ovs)
            # compose() applies the values itself on the groups' composition: it must give Hydra's own
            # config for all the overrides (every point under the slow marker; the first at smoke).
            if scale != "smoke" or len(seen) == 1:
                assert OmegaConf.to_yaml(C.compose(ovs)) == OmegaConf.to_yaml(C._compose_raw(ovs)), ovs


@pytest.mark.parametrize("overrides", [
    ["experiment=bench-sim-cost", "algo=bench_round_robin", "algo.delay=7", "scale.n_train=1000", "seed=3",
     "dataset=cifar10", "dataset.fallback=synthetic", "dataset.download=false", "topology.sim.link.desched_s=1e-4"],
    ["experiment=lian15-table-con", "backend=sim", "topology.workers=32", "algo.lr=0.5", "log.train_every=7"],
    ["model=linear", "model.input_shape=[10]", "dataset=pca", "dataset.d=10", "algo=dfsdca"],
    ["algo.lr=1", "scale=paper", "scale.epochs=2", "topology.workers=4", "backend=thread", "dataset=mnist",
     "dataset.fallback=synthetic", "dataset.fallback=null"],
    ["hydra.job.name=x", "algo.lr=0.1"],
])
def test_compose_equals_hydra_composing_every_override(overrides):
    """compose() applies value overrides on the groups' composition itself (one composition, not two):
    the config must be Hydra's own for all the overrides (here: values of several types, a key set twice,
    hydra.* settings; every experiment's points: test_every_experiment_validates_at_every_scale)."""
    mine, ref = C.compose(overrides), C._compose_raw(overrides)
    assert OmegaConf.to_yaml(mine) == OmegaConf.to_yaml(ref)
    assert OmegaConf.is_struct(mine) == OmegaConf.is_struct(ref)


def test_compositions_are_kept_until_a_conf_file_changes(tmp_path, monkeypatch):
    """Compositions are cached by the conf files' state and overrides: a file changed in the process
    (calibrate writes topology files) is read again, and callers get copies they may change."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(C.CONF_DIR, conf)
    monkeypatch.setattr(C, "CONF_DIR", conf)
    monkeypatch.setattr(C, "_RAW_CACHE", {})
    first = C.compose(["topology=laptop"])
    first.topology.workers = 99  # the caller's copy only
    assert C.compose(["topology=laptop", "topology.workers=5"]).topology.workers == 5  # values go on a copy too
    assert C.compose(["topology=laptop"]).topology.workers == 1
    path = conf / "topology" / "laptop.yaml"
    text = path.read_text()
    assert "\nworkers: " in text
    path.write_text(text.replace("\nworkers: ", "\nworkers: 7  # changed in this process\nold_workers: ", 1))
    assert C.compose(["topology=laptop"]).topology.workers == 7


def test_defaults_are_the_documented_ones():
    cfg = C.finalize(C.compose([]))
    assert (cfg.dataset.name, cfg.model.name, cfg.algo.name, cfg.backend.name, cfg.scale.name) == (
        "synthetic", "mlp", "sgd", "serial", "small")
    assert cfg.seed == 0 and cfg.results_dir == "results"
    for key in ("topology.workers", "topology.stages", "algo.lr", "algo.batch_size"):
        assert OmegaConf.select(cfg, key) is not None, key


def test_every_yaml_key_has_a_comment():
    """Every knob in conf/ carries a one-line comment (meaning and unit)."""
    missing = []
    for path in sorted(C.CONF_DIR.rglob("*.yaml")):
        if path.parent.name == "experiment" or path.relative_to(C.CONF_DIR).parts[0] == "at_scale":
            continue  # experiments (and their per-scale files) list deltas; their header says what they are
        for n, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#") or s.startswith("- ") or s.endswith(":") or s.startswith("defaults"):
                continue
            if "#" not in line:
                missing.append(f"{path.relative_to(C.CONF_DIR)}:{n}: {s}")
    assert not missing, "\n".join(missing)


def test_run_id_is_stable_and_ignores_output_paths():
    a = C.finalize(C.compose(["results_dir=/tmp/a", "progress=quiet"]))
    b = C.finalize(C.compose(["results_dir=/tmp/b"]))
    c = C.finalize(C.compose(["seed=1"]))
    assert C.run_id(a) == C.run_id(b) != C.run_id(c)
    assert len(C.run_id(a)) == 12


def test_at_scale_applies_but_command_line_wins():
    cfg = prepare(["experiment=huo17-fig1", "scale=smoke"])
    assert cfg.dataset.n_train == 500
    cfg = prepare(["experiment=huo17-fig1", "scale=smoke", "dataset.n_train=300"])
    assert cfg.dataset.n_train == 300


def test_sweep_expansion_uses_hydra_grammar():
    combos = C.expand_sweep(["seed=0,1,2", "algo.lr=0.1,0.01"])
    assert len(combos) == 6
    assert ["seed=range(2)"] != C.expand_sweep(["seed=range(2)"])


BAD = [
    (["algo=nope"], "algo=nope"),
    (["model=resnet9000"], "model=resnet9000"),
    (["dataset=imagenet22k"], "dataset=imagenet22k"),
    (["algo.nope=1"], "algo.nope"),
    (["nonsense=1"], "nonsense"),
    (["algo.lr=0"], "algo.lr"),
    (["algo.lr=-0.1"], "algo.lr"),
    (["algo.lr=nan"], "algo.lr"),
    (["algo.lr=fast"], "algo.lr"),
    (["algo.batch_size=0"], "algo.batch_size"),
    (["algo.batch_size=2.5"], "algo.batch_size"),
    (["topology.workers=0"], "topology.workers"),
    (["scale.epochs=-1"], "scale.epochs"),
    (["seed=-3"], "seed"),
    (["progress=loud"], "progress"),
    (["algo.schedule=cosine"], "algo.schedule"),
    (["topology.workers=4"], "topology.workers"),  # serial runs one worker
    (["dataset=mnist", "model=linear"], "model=linear"),  # 784 pixels into a 22-feature model
    (["algo.lr=0.1,0.2"], "sweep"),  # a sweep without -m
    (["log.bn_samples=-1"], "log.bn_samples"),
    (["backend=sim", "topology.sim.compute.cores=0"], "topology.sim.compute.cores"),
    (["backend=sim", "topology.sim.handoff_Bps=0"], "topology.sim.handoff_Bps"),
    (["backend=sim", "topology.sim.wake_s=-1e-6"], "topology.sim.wake_s"),
    (["backend=sim", "topology.sim.spin_s=-1"], "topology.sim.spin_s"),
    (["backend=sim", "topology.sim.link.desched_s=-1e-4"], "topology.sim.link.desched_s"),
    (["backend=process", "algo=asysg_con", "backend.spin_s=-0.001"], "backend.spin_s"),
    (["algo=kavg_probe", "algo.batches=1"], "algo.batches"),
    (["algo=bench_round_robin", "algo.replicas=0"], "algo.replicas"),
    (["algo=bench_round_robin", "algo.interleave=-3"], "algo.interleave"),
    (["algo=bench_round_robin", "algo.delay=-1"], "algo.delay"),
]


@pytest.mark.parametrize("overrides,names", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_a_config_error_naming_the_key(overrides, names):
    with pytest.raises(ConfigError) as e:
        prepare(overrides)
    msg = str(e.value)
    assert names in msg
    assert "\n" not in msg


# One experiment of each paper (their algorithms, topologies and models) in the default suite; every
# experiment under the slow marker (two compositions each).
_ID_STEMS = ("huo17-fig1", "kavg18-fig1", "lian15-table-con", "thesis-fig6", "thesis-fig10", "thesis-fig20",
             "bench-sim-vs-real")


@pytest.mark.parametrize("which", ["groups", "stems", pytest.param("all", marks=pytest.mark.slow)])
def test_run_ids_of_runs_finished_by_older_versions_are_found(which):
    """Every option of every group and every experiment's first point at smoke scale keep the run id (the
    hash of the resolved config) they had when tests/data/run_ids.json was written, before conf/'s files
    inherited from bases: a run finished then is still found and skipped. New options are not in it; one
    that changes on purpose changes every run behind it (say so, then rewrite the file with
    ``tests/dump_configs.py --fixture``). Every point of every experiment at the three scales:
    ``tests/dump_configs.py``, run in both checkouts."""
    import json
    from pathlib import Path

    from hdist.sweeps import experiment_runs
    from tests.dump_configs import combined_group_points, resolved

    want = json.loads((Path(__file__).parent / "data" / "run_ids.json").read_text())
    if which == "groups":
        # The combinations the fixture was written with (its labels are their overrides): options added
        # since (algo=diloco) shift the cycling of combined_group_points, not the ids of these.
        pts = [(label, label.split()) for label in want if "@" not in label]
        assert {o for _, ovs in pts for o in ovs} <= {o for _, ovs in combined_group_points() for o in ovs}
    else:
        stems = _ID_STEMS if which == "stems" else sorted({k.split("@")[0] for k in want if "@" in k})
        pts = [(f"{s}@smoke#0", experiment_runs(s, ["scale=smoke"])[0]) for s in stems]
    assert pts and all(label in want for label, _ in pts)  # no option or experiment went missing
    got = {label: resolved(ovs)[0] for label, ovs in pts}
    assert {k: v for k, v in got.items() if want[k] != v} == {}
