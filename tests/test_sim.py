"""The sim backend: deterministic virtual time, one worker equals serial, staleness from timing."""

from __future__ import annotations

import pandas as pd
import pytest

from hdist.launch import execute, prepare
from hdist.metrics import load_results, read_run_metrics

SMOKE = ["scale=smoke", "scale.n_train=400", "scale.n_test=100", "progress=quiet", "log.train_every=1"]


def _run(path, *ovs):
    res = execute(prepare([*SMOKE, f"results_dir={path}", *ovs]), quiet_skip=True)
    assert res.status == "done", res.reason
    return res


def _frame(run_dir) -> pd.DataFrame:
    df = read_run_metrics(run_dir).to_pandas().drop(columns=["wall_s"])
    # Time measurements differ by nature (real vs virtual seconds); everything else must not.
    timing = ["eval_s", "compute_s", "comm_s", "wait_s", "train_s"]
    return df[~df["metric"].isin(timing)].sort_values(["rank", "kind", "metric", "step", "updates"],
                                                          kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("algo", ["sgd", "asysg_con", "asysg_incon"])
def test_one_worker_on_sim_equals_serial_bit_for_bit(tmp_path, algo):
    a = _run(tmp_path / "serial", f"algo={algo}", "backend=serial")
    b = _run(tmp_path / "sim", f"algo={algo}", "backend=sim")
    fa = _frame(a.run_dir).drop(columns=["sim_s"])
    fb = _frame(b.run_dir)
    # sim has a server rank for parameter-server algorithms: compare the worker's rows and the evaluation.
    if algo == "asysg_con":
        fb = fb[fb["rank"] == 1].assign(rank=0)
        ev = _frame(b.run_dir)
        ev = ev[(ev["kind"] == "eval")].drop(columns=["sim_s", "role"])
        fa_ev = fa[fa["kind"] == "eval"].drop(columns=["role"])
        assert fa_ev["value"].tolist() == ev["value"].tolist()
        fa = fa[fa["kind"] == "train"]
        fb = fb[fb["kind"] == "train"]
    cols = ["metric", "step", "value"]
    pd.testing.assert_frame_equal(fa[cols].reset_index(drop=True), fb[cols].reset_index(drop=True), check_exact=True)
    assert (_frame(b.run_dir)["sim_s"].dropna() >= 0).all()


def test_same_seed_same_bits_including_virtual_time(tmp_path):
    ovs = ["algo=asysg_con", "backend=sim", "topology.workers=8", "topology.sim.compute.jitter=0.3"]
    a = _run(tmp_path / "a", *ovs)
    b = _run(tmp_path / "b", *ovs)
    pd.testing.assert_frame_equal(_frame(a.run_dir), _frame(b.run_dir), check_exact=True)
    # On sim, the time measurements are virtual: identical too.
    ta = read_run_metrics(a.run_dir).to_pandas()
    tb = read_run_metrics(b.run_dir).to_pandas()
    for m in ("compute_s", "comm_s", "train_s"):
        assert ta[ta["metric"] == m]["value"].tolist() == tb[tb["metric"] == m]["value"].tolist(), m


@pytest.mark.parametrize("workers", [1, 4])
def test_requests_served_in_place_equal_the_event_path(tmp_path, monkeypatch, workers):
    """The sim serves a pull or push in place (no event, no switch) when no event comes before the
    server takes it, even while the server still works on earlier requests. That shortcut must
    give what queueing every request as an event gives: the same bits, virtual times included."""
    import hdist.backends.sim as sim

    # A slow server: busy past the worker's next request, the case served at the server's free time.
    ovs = ["algo=asysg_con", "backend=sim", f"topology.workers={workers}", "topology.sim.compute.jitter=0.3",
           "topology.sim.server_Bps=1e8", "log.bn_samples=0"]
    a = _run(tmp_path / "in_place", *ovs)
    calls = []
    monkeypatch.setattr(sim.SimComm, "_server_now", lambda self, arrival, nbytes: calls.append(1))
    b = _run(tmp_path / "events", *ovs)
    assert calls
    ta, tb = read_run_metrics(a.run_dir).to_pandas(), read_run_metrics(b.run_dir).to_pandas()
    pd.testing.assert_frame_equal(_frame(a.run_dir), _frame(b.run_dir), check_exact=True)
    for m in ("compute_s", "comm_s", "train_s"):
        assert ta[ta["metric"] == m]["value"].tolist() == tb[tb["metric"] == m]["value"].tolist(), m


def test_staleness_comes_from_timing(tmp_path):
    _run(tmp_path, "algo=asysg_con", "backend=sim", "topology.workers=8")
    df = load_results(tmp_path)
    st = df[df["metric"] == "staleness"]["value"]
    # Equal workers behind one server: each update waits for the other 7 (AsySG-con's tau ~ P - 1).
    assert 6 <= st.median() <= 8
    ev = df[df["metric"] == "train_loss_full"].sort_values("updates")
    assert ev["sim_s"].is_monotonic_increasing and ev["sim_s"].iloc[-1] > 0


def test_virtual_time_follows_the_cost_model(tmp_path):
    per_step = 0.01
    _run(tmp_path, "algo=sgd", "backend=sim", f"topology.sim.compute.per_step_s={per_step}")
    df = load_results(tmp_path)
    last = df[df["metric"] == "train_loss_full"].sort_values("updates").iloc[-1]
    assert last["sim_s"] == pytest.approx(last["updates"] * per_step, rel=1e-9)


def test_stragglers_on_sim_are_virtual_and_logged(tmp_path):
    _run(tmp_path, "algo=asysg_incon", "backend=sim", "topology.workers=4", "topology.straggler.workers=[2]",
         "topology.straggler.p=0.5")
    df = load_results(tmp_path)
    ev = df[df["metric"] == "straggle_s"]
    assert len(ev) > 0 and set(ev["rank"]) == {2}


def test_too_many_workers_for_the_data_is_a_config_error(tmp_path):
    from hdist.types import ConfigError

    with pytest.raises(ConfigError, match="topology.workers=500"):
        prepare([*SMOKE, "algo=asysg_con", "backend=sim", "topology.workers=500", "scale.n_train=100"])


def test_128_workers_at_smoke_scale(tmp_path):
    res = _run(tmp_path, "algo=asysg_con", "backend=sim", "topology.workers=128", "scale.n_train=1024",
               "log.train_every=10")
    df = load_results(tmp_path)
    assert df["rank"].nunique() == 129  # a server and 128 workers
    assert res.status == "done"


def test_calibrate_writes_a_usable_topology(cli, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    out = tmp_path / "measured.yaml"
    code, stdout, err = cli("calibrate", str(out), "scale=smoke")
    assert code == 0, err
    assert "ms/step" in stdout
    text = out.read_text()
    assert text.startswith("# Calibrated by `hdist calibrate`")
    cfg = OmegaConf.load(out)
    assert cfg.name == "measured"
    # On a loaded machine the fit may put all of the time in either term; their sum is the step.
    c = cfg.sim.compute
    assert c.per_step_s >= 0 and c.per_sample_s >= 0 and c.per_step_s + c.per_sample_s * 10 > 0
    assert cfg.sim.memory_Bps > 0
    assert cfg.sim.compute.per_step_s != 2.0e-4  # replaced by the measurement

    # serial: one rank, no polling server; its step stands for a rank of the source topology's machine,
    # so the cores of this one are not written (lian15_32core calibrated here keeps its 32 cores)
    assert "cores" not in c and c.server_busy is False
    assert "measured by hdist calibrate" in text.split("per_step_s:")[1].splitlines()[0]
    # Comments survive: every key line still has one.
    for line in text.splitlines()[1:]:
        if line.strip() and not line.strip().endswith(":"):
            assert "#" in line, line
    # A delta of the topology it measured from: in conf/topology/ it composes to laptop's keys with the
    # measured values.
    import shutil

    from hdist import config as C

    assert list(cfg.defaults) == ["laptop", "_self_"] and "latency_s" not in text
    conf = tmp_path / "conf"
    shutil.copytree(C.CONF_DIR, conf)
    shutil.copy(out, conf / "topology" / "measured.yaml")
    monkeypatch.setattr(C, "CONF_DIR", conf)
    composed = C.finalize(C.compose(["topology=measured"])).topology
    laptop = C.finalize(C.compose(["topology=laptop"])).topology
    assert composed.sim.compute.per_step_s == c.per_step_s and composed.sim.memory_Bps == cfg.sim.memory_Bps
    assert composed.sim.link == laptop.sim.link and composed.workers == laptop.workers


def test_calibrate_refuses_a_topology_it_cannot_rewrite_before_measuring(cli, tmp_path, monkeypatch):
    """A topology file written before a key calibrate writes existed (or none at all): one line naming
    the file and the missing keys, exit 2, nothing measured or written."""
    import hdist.calibrate as cal
    from hdist import config as C

    conf = tmp_path / "conf"
    (conf / "topology").mkdir(parents=True)
    old = (cal.CONF_DIR / "topology" / "laptop.yaml").read_text()
    (conf / "topology" / "old.yaml").write_text("\n".join(ln for ln in old.splitlines() if "desched_s:" not in ln))
    monkeypatch.setattr(cal, "CONF_DIR", conf)
    monkeypatch.setattr(cal, "calibrate", lambda *a, **k: pytest.fail("measured before the check"))
    out = tmp_path / "new.yaml"
    code, _, err = cli("calibrate", str(out), "scale=smoke", "topology.name=old")
    assert code == 2 and "desched_s" in err and "old.yaml" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    code, _, err = cli("calibrate", str(out), "scale=smoke", "topology.name=nosuch")
    assert code == 2 and "nosuch" in err and "Traceback" not in err and not out.exists()
    # The new file inherits the topology it starts from: it cannot replace it (nor what that inherits).
    monkeypatch.setattr(cal, "CONF_DIR", C.CONF_DIR)
    for name, topology in (("laptop", "laptop"), ("laptop", "lian15_32core"), ("lian15_32core", "lian15_32core")):
        code, _, err = cli("calibrate", name, "scale=smoke", f"topology={topology}", "topology.workers=1")
        assert code == 2 and f"output {name}" in err and "another name" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.slow  # measures this machine: its bounds hold on a quiet one, not under other load (make test-slow)
def test_calibrate_with_local_links_measures_the_costs_of_sharing_cores(cli, tmp_path):
    """Ranks on this machine's cores: the steps' spread (jitter) and the two-process probe's
    handoff and wake-up are measured and written with their comments."""
    import os

    from omegaconf import OmegaConf

    out = tmp_path / "local.yaml"
    code, stdout, err = cli("calibrate", str(out), "scale=smoke", "--local-links")
    assert code == 0, err
    text = out.read_text()
    cfg = OmegaConf.load(out)
    assert 0 < cfg.sim.compute.jitter < 2
    assert cfg.sim.compute.cores == os.cpu_count()  # the ranks are processes on this machine's cores
    assert "measured by hdist calibrate" in text.split("jitter:")[1].splitlines()[0]
    if (os.cpu_count() or 1) >= 2:  # the probe needs two cores
        for key in ("wake_s:", "handoff_Bps:"):
            assert "measured by hdist calibrate" in text.split(key)[1].splitlines()[0]
        assert 0 < cfg.sim.wake_s < 0.1  # seconds: a wake-up is micro- to milliseconds
        assert cfg.sim.handoff_Bps is None or cfg.sim.handoff_Bps > 0
        # not measured: copied from the backend (serial has no lock to poll)
        assert cfg.sim.spin_s == 0 and "backend.spin_s of backend=serial" in text.split("spin_s:")[1].splitlines()[0]
        assert "wake-up" in stdout


# --- a parameter-server algorithm against shared memory (backend.ps=shared) ------------------------


def _train_s(path) -> float:
    df = load_results(path)
    return float(df[df["metric"] == "train_s"]["value"].iloc[0])


@pytest.mark.parametrize("algo,locked", [("asysg_con", True), ("asysg_incon", False)])
def test_shared_memory_lock_serialises_consistent_accesses(tmp_path, algo, locked):
    # No compute time, 1 ms per copy of x: each update is a read and a write of x. Under the lock
    # (consistent) the two workers' accesses take turns; lock-free ones overlap.
    n_params = 79510  # MLP 784-100-10
    bps = n_params * 4 / 1e-3
    _run(tmp_path, f"algo={algo}", "backend=sim", "backend.ps=shared", "topology.workers=2",
         "topology.sim.compute.per_step_s=0", f"topology.sim.memory_Bps={bps}")
    df = load_results(tmp_path)
    assert df["rank"].nunique() == 2  # no server rank: the workers share x
    updates = df[df["metric"] == "updates_total"]["value"].sum()
    expected = (2 * updates if locked else 2 * updates / 2) * 1e-3
    assert _train_s(tmp_path) == pytest.approx(expected, rel=1e-4)  # + microseconds of barriers


def test_shared_access_pays_the_handoff_and_the_wake_up():
    """Touching x another rank wrote last costs the handoff on top of the copy; a rank that finds
    the lock held resumes wake_s after it is freed; a lock-free access never waits."""
    from omegaconf import OmegaConf

    from hdist.backends.sim import CostModel, SimComm, World

    # x of 1,000 bytes: a copy 1 ms, a handoff 0.25 ms; a wake-up 0.1 ms.
    topo = OmegaConf.create({"sim": {"memory_Bps": 1e6, "handoff_Bps": 4e6, "wake_s": 1e-4}})
    w = World(CostModel(topo, 0, 2), 2, server=False)
    a, b = (SimComm(w, r, None, None) for r in range(2))
    w.x_nbytes, w.x_cached = 1000, {0}  # rank 0 wrote x (ps_init)
    a._shared_access(True, write=False)  # own x, free lock: the copy only
    assert a.clock == pytest.approx(1e-3)
    b._shared_access(True, write=True)  # at 0: the lock is held to 1 ms; x is not in b's cache
    assert b.clock == pytest.approx(1e-3 + 1e-4 + 1.25e-3)
    a._shared_access(True, write=True)  # at 1 ms: waits for b; b wrote x since a read it
    assert a.clock == pytest.approx(b.clock + 1e-4 + 1.25e-3)
    t = a.clock
    a._shared_access(True, write=False)  # free lock, a wrote x last
    assert a.clock == pytest.approx(t + 1e-3)
    b.clock = 0.0
    b._shared_access(False, write=False)  # lock-free: no wait, but the handoff (a wrote x)
    assert b.clock == pytest.approx(1.25e-3)


def test_a_rank_that_polls_the_lock_pays_no_wake_up():
    """Within spin_s of finding the lock held a rank polls it (the process backend's backend.spin_s) and
    takes it as it is freed; a longer wait sleeps and pays wake_s; ranks that outnumber the cores never poll."""
    from omegaconf import OmegaConf

    from hdist.backends.sim import CostModel, SimComm, World

    def second_access(spin_s: float, cores: int | None = None) -> float:
        # x of 1,000 bytes: a copy holds the lock 1 ms; a wake-up 0.1 ms; x in both caches (no handoff)
        topo = OmegaConf.create({"sim": {"memory_Bps": 1e6, "wake_s": 1e-4, "spin_s": spin_s,
                                         "compute": {"cores": cores}}})
        w = World(CostModel(topo, 0, 2), 2, server=False)
        a, b = (SimComm(w, r, None, None) for r in range(2))
        w.x_nbytes, w.x_cached = 1000, {0, 1}
        a._shared_access(True, write=False)  # holds the lock from 0 to 1 ms
        b._shared_access(True, write=False)  # at 0: waits 1 ms for it
        return b.clock

    assert second_access(0.0) == pytest.approx(2e-3 + 1e-4)  # slept: woken after the release
    assert second_access(5e-4) == pytest.approx(2e-3 + 1e-4)  # polled 0.5 ms, then slept
    assert second_access(2e-3) == pytest.approx(2e-3)  # polled through the 1 ms wait
    # 2 ranks on 1 core: no polling (copies 2x slower: the lock is held 2 ms, the next copy 2 ms more)
    assert second_access(2e-3, cores=1) == pytest.approx(4e-3 + 1e-4)


def test_one_worker_pays_no_handoff_or_wake_up(tmp_path):
    """One rank never finds x in another core's cache nor the lock held: the same virtual times."""
    base = ["algo=asysg_con", "backend=sim", "backend.ps=shared", "topology.workers=1"]
    _run(tmp_path / "a", *base)
    _run(tmp_path / "b", *base, "topology.sim.handoff_Bps=1e6", "topology.sim.wake_s=0.01")
    assert _train_s(tmp_path / "a") == _train_s(tmp_path / "b")


@pytest.mark.mpi
@pytest.mark.parametrize("workers", [1, 2])
def test_calibrate_mpi_measures_the_wait_for_a_core(cli, tmp_path, workers):
    """MPI on local links: timed with a core per rank (1 worker and the server on 2 cores), calibrate
    times the same runs again with one busy process too many and writes the extra wait per message;
    timed with more ranks than cores (2 workers), the wait is already in the link's time: 0."""
    import os

    from omegaconf import OmegaConf

    if (os.cpu_count() or 1) != 2:
        pytest.skip("the branch taken depends on the cores: written for this project's 2-core machines")
    out = tmp_path / "mpi.yaml"
    code, stdout, err = cli("calibrate", str(out), "--local-links", "scale=smoke", "model=mlp", "algo=asysg_con",
                            "backend=mpi", "backend.threads_per_rank=1", f"topology.workers={workers}")
    assert code == 0, err
    line = out.read_text().split("desched_s:")[1].splitlines()[0]
    desched = OmegaConf.load(out).sim.link.desched_s
    if workers == 1:
        # MPICH's ranks poll: a message to a rank off its core waits tens to hundreds of microseconds
        assert 1e-6 < desched < 0.05 and "1 busy process too many" in line
        assert "more per busy rank beyond the cores" in stdout
    else:
        assert desched == 0 and "already holds the wait" in line


@pytest.mark.slow  # ~20 s: 45 runs
def test_bench_sim_cost_reproduces_at_smoke(cli, tmp_path):
    code, out, err = cli("reproduce", "bench-sim-cost", "scale=smoke", "scale.n_train=200", "seed=0",
                         "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    assert (tmp_path / "figures" / "bench-sim-cost.png").exists()
    assert "simulating 8 workers costs" in out
    # the MLP's cost split: what is there at 1 worker, what 8 workers add
    assert "already with 1 worker" in out and "the sim's cost at 1 worker" in out
    # the references that split the cost: the same algorithm on serial, Python run between updates
    assert "the same algorithm on the serial backend" in out and "untimed Python run between them" in out
    # asynchrony with no simulator: 8 replicas applying each gradient 7 updates late keep 8 gradients alive,
    # and what the goal leaves a simulator after it and the algorithm's frame
    assert "applied 7 late" in out and "a simulator costing nothing would measure" in out
    df = load_results(tmp_path, "bench-sim-cost")
    peaks = df[(df["metric"] == "gradients_alive_peak") & (df["model"] == "mlp")]
    assert sorted(peaks.groupby("algo.delay")["value"].max().items()) == [(0, 1.0), (7, 8.0)]


def test_bench_sim_cost_gives_what_the_goal_leaves_a_simulator():
    """The goal's budget over the 8-replica loop, less asynchrony's late updates and the algorithm's frame,
    both measured with no simulator: what a simulator running the algorithm's code has left."""
    from hdist.figures import load_experiment

    mod = load_experiment("bench-sim-cost")
    part = pd.DataFrame({"side": [mod.RR8, mod.RR8_LATE, mod.SER1, mod.RR1],
                         "s_per_update": [300e-6, 312e-6, 290e-6, 276e-6]})
    text = mod.floor_text(part)
    assert "30 us per update" in text and "+12 us" in text and "frame +14 us" in text
    assert "leaving the simulator +4 us" in text and "would measure 1.09x" in text
    assert mod.floor_text(part[part["side"] != mod.RR8_LATE]) is None
    assert mod.side("bench_round_robin", 1, 8, "serial", 0, 7) == mod.RR8_LATE
    assert mod.side("bench_round_robin", 1, 8, "serial", float("nan"), float("nan")) == mod.RR8


@pytest.mark.mpi
def test_bench_sim_vs_real_reproduces_at_smoke(cli, tmp_path):
    code, out, err = cli("reproduce", "bench-sim-vs-real", "scale=smoke", "scale.n_train=300", "progress=quiet",
                         f"results_dir={tmp_path}")
    assert code == 0, err
    table = (tmp_path / "figures" / "bench-sim-vs-real-times.md").read_text()
    for side in ("process", "mpi", "sim shared, cal. w1", "sim shared, cal. w2", "sim server, cal. w1"):
        assert side in table
    # process and mpi: 1 and 2 workers from the 1-worker calibration, 2 from the 2-worker one
    assert out.count(") predicts ") == 6
    # the reference arms (no handoff, wake-up, jitter or wait for a core) are in the table, without a claim
    assert "sim shared, cal. w1, no core costs | 2 |" in table and "(reference, no claim)" in table
    assert "sim server, cal. w1, no core costs | 2 |" in table


def test_bench_sim_vs_real_labels_the_reference_arm_and_claims_nothing_for_it():
    import math

    from hdist.figures import load_experiment

    mod = load_experiment("bench-sim-vs-real")
    df = pd.DataFrame({"backend": ["sim", "sim", "process"], "backend.ps": ["shared", "shared", None],
                       "topology.name": ["laptop_process_w1"] * 2 + ["laptop"],
                       "topology.sim.wake_s": [3e-5, 0.0, 0.0], "topology.sim.handoff_Bps": [3e10, math.nan, math.nan],
                       "topology.sim.compute.jitter": [0.17, 0.0, 0.0], "sim_s": [1.0, 1.0, 0.0],
                       "wall_s": [9.0, 9.0, 2.0]})
    d = mod.labelled(df)
    assert list(d["side"]) == ["sim shared, cal. w1", "sim shared, cal. w1, no core costs", "process"]
    # a calibration whose only core cost is the wait for a core (mpi, server) is not the reference
    served = df.assign(**{"backend.ps": "server", "topology.name": "laptop_mpi_w1",
                          "topology.sim.link.desched_s": [0.0, 2e-4, 0.0]})
    assert list(mod.labelled(served)["side"])[:2] == ["sim server, cal. w1", "sim server, cal. w1"]
    assert list(d["time"]) == [1.0, 1.0, 2.0]  # the sim's virtual clock, the real run's wall clock
    med = pd.DataFrame({side: [1.0] for side in d["side"]}, index=[2])
    assert mod.pairs(med) == [("process", "sim shared, cal. w1"), ("process", "sim shared, cal. w1, no core costs")]
    assert mod.pairs(med, references=False) == [("process", "sim shared, cal. w1")]


def test_ranks_outnumbering_cores_compute_slower():
    from omegaconf import OmegaConf

    from hdist.backends.sim import CostModel, oversubscription

    assert oversubscription(2, True, 2) == 1.5  # 2 workers and a polling server on 2 cores
    assert oversubscription(2, False, 2) == 1.0 and oversubscription(1, True, 2) == 1.0
    assert oversubscription(64, True, None) == 1.0  # a core (or a node) per rank
    topo = OmegaConf.create({"sim": {"compute": {"per_step_s": 1e-3, "per_sample_s": 1e-5, "cores": 2,
                                                 "server_busy": True}}})
    assert CostModel(topo, 0, 2, server=True).compute_s(0, 10)[0] == pytest.approx(1.5 * 1.1e-3)
    assert CostModel(topo, 0, 2, server=False).compute_s(0, 10)[0] == pytest.approx(1.1e-3)
    assert CostModel(topo, 0, 4, server=False).compute_s(0, 10)[0] == pytest.approx(2 * 1.1e-3)
    topo.sim.memory_Bps = 1e9
    assert CostModel(topo, 0, 2, server=True).memory_s(10 ** 6) == pytest.approx(1.5e-3)  # copies slow alike


def test_messages_wait_for_a_core_per_busy_rank_beyond_the_cores():
    """desched_s: with more busy ranks than cores, every message and every latency term of a
    collective waits desched_s more per busy rank beyond the cores; with a core each, nothing."""
    from omegaconf import OmegaConf

    from hdist.backends.sim import CostModel, excess_ranks

    assert excess_ranks(2, True, 2) == 1 and excess_ranks(1, True, 2) == 0 and excess_ranks(4, True, 2) == 3
    assert excess_ranks(2, False, 2) == 0 and excess_ranks(64, True, None) == 0
    topo = OmegaConf.create({"sim": {"compute": {"cores": 2, "server_busy": True},
                                     "link": {"latency_s": 1e-6, "bandwidth_Bps": 1e9, "desched_s": 2e-4}}})
    alone, shared, crowded = (CostModel(topo, 0, w, server=True) for w in (1, 2, 4))
    assert alone.message_s(8) == pytest.approx(1e-6 + 8e-9)
    # 2 workers + a polling server on 2 cores: one rank too many (copies slow by 1.5x as before)
    assert shared.message_s(8) == pytest.approx(1e-6 + 2e-4 + 1.5 * 8e-9)
    assert crowded.message_s(0) == pytest.approx(1e-6 + 3 * 2e-4)
    assert shared.allreduce_s(0, 2) == pytest.approx(2 * (1e-6 + 2e-4))
    assert shared.wire_s(1000) == pytest.approx(1.5e-6)  # the sender's own time does not wait
    # a server that sleeps while it waits keeps no core busy: 2 workers on 2 cores wait for nothing
    topo.sim.compute.server_busy = False
    assert CostModel(topo, 0, 2, server=True).message_s(8) == pytest.approx(1e-6 + 8e-9)


def test_a_pull_waits_for_both_messages_when_ranks_outnumber_cores(tmp_path):
    """End to end: 2 AsySG-con workers against a polling server on 1 core (two busy ranks too
    many): the same run with desched_s takes, per update, at least a pull's two messages' wait
    longer (queueing at the server can only add)."""
    base = ["algo=asysg_con", "backend=sim", "topology.workers=2", "topology.sim.compute.cores=1",
            "topology.sim.compute.server_busy=true", "topology.sim.compute.per_step_s=1e-4"]
    _run(tmp_path / "a", *base)
    _run(tmp_path / "b", *base, "topology.sim.link.desched_s=1e-4")
    df = load_results(tmp_path / "a")
    updates_per_worker = df[df["metric"] == "updates_total"]["value"].max()
    extra = _train_s(tmp_path / "b") - _train_s(tmp_path / "a")
    assert extra >= updates_per_worker * 2 * 2 * 1e-4 * 0.99


def test_ps_version_is_read_at_the_rank_clock(tmp_path):
    """compute_done moves a rank's clock past the world's without yielding; a version read after it
    must still see every update the server applied by that clock (here worker 0's, at ~1 us)."""
    import torch

    from hdist.backends import sim
    from hdist.types import World

    cfg = prepare([*SMOKE, f"results_dir={tmp_path}", "algo=asysg_con", "backend=sim", "topology.workers=2",
                   "topology.sim.compute.per_step_s=0.01"])
    seen = {}

    def rank_fn(ctx):
        comm = ctx.comm
        comm.ps_init(torch.zeros(4))
        if comm.worker_index is None:
            comm.serve()
        else:
            if comm.worker_index == 0:
                comm.push(torch.ones(4), 0)
            else:
                comm.compute_done(10)  # 10 ms: long after worker 0's update reached the server
                seen["version"] = comm.ps_version()
            comm.ps_done()
        comm.barrier()

    workers = int(cfg.topology.workers)
    sim.launch(tmp_path, cfg, rank_fn, World(workers=workers, stages=1, servers=1, ranks=workers + 1))
    assert seen["version"] == 1
