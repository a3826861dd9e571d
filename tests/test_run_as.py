"""Titles and claims name the model, batch and worker count actually run (issue 28, item 3): a stem whose runs
used a stand-in (ResNet-8 for ResNet-110, B=8 for the thesis' 128) says "(run as resnet8, B=8 not 128)" in its
figure and in every claim; one whose runs used the paper's setting says no "run as" anywhere.

The frames are built from each stem's own sweeps (what ``hdist reproduce`` would run): smoke scale for the
stand-in (plus, where smoke runs the paper's setting, a smaller batch on the command line), paper scale for
the paper's setting. The label is read from the frames' config columns, never from the scale."""

from __future__ import annotations

import functools
import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from hdist import config as C
from hdist.figures import check_claims, load_experiment
from hdist.plots import batch_of, model_label, models_run, run_as, stand_ins
from hdist.sweeps import experiment_runs

#: Initial values of the metrics the checks read, and the per-stage metrics (k = 1..K) of the pipeline stems.
START = {"train_loss": 2.3, "train_loss_full": 2.3, "test_loss": 2.3, "test_error": 0.9, "train_error": 0.9,
         "m_k/conv1.weight": 1.0, "m_k/fc.weight": 2.0}
PER_STAGE = {"forward_s": 0.1, "backward_s": 0.2, "wait_s": 0.0, "sigma": 0.5}
#: Config keys that can change the model, batch or workers of a run: one composition per distinct value.
SETTING_KEYS = ("model", "model.name", "model.depth", "net", "algo.batch_size", "algo.accum_steps",
                "topology.workers")
COLUMNS = {"topology.workers": "workers", "topology.stages": "stages"}


def _value(v: str):
    try:
        return json.loads(v)
    except ValueError:
        return v


def frame(stem: str, scale: str, *extra: str, memory: bool = False) -> pd.DataFrame:
    return _frame(stem, scale, tuple(extra), memory).copy()


@functools.cache
def _frame(stem: str, scale: str, extra: tuple[str, ...], memory: bool) -> pd.DataFrame:
    """Rows of every run of ``stem``'s sweep at ``scale`` (with ``extra`` overrides), their config columns as
    load_results gives them (each run's model, batch and workers from its composed config). ``memory``: the
    per-stage peak bytes too (the memory stems build the model to predict them: smoke's ResNet-8 only)."""
    composed: dict = {}
    rows = []
    for i, ov in enumerate(experiment_runs(stem, [f"scale={scale}", *extra])):
        sets = {o.partition("=")[0]: o.partition("=")[2] for o in ov}
        key = tuple(sets.get(k) for k in SETTING_KEYS)
        if key not in composed:
            composed[key] = C.compose(ov)
        cfg = composed[key]
        cols = {"stem": stem, "algo": sets.get("algo", cfg.algo.name), "model": str(cfg.model.name),
                "dataset": sets.get("dataset", cfg.dataset.name), "backend": sets.get("backend", cfg.backend.name),
                "workers": int(cfg.topology.workers), "stages": int(_value(sets.get("topology.stages", "null"))
                                                                    or cfg.topology.get("stages", 1)),
                "scale": scale, "status": "done", "stand_in_for": "", "seed": 0, "run_id": f"r{i:03d}"}
        if cfg.model.get("depth") is not None:
            cols["model.depth"] = int(cfg.model.depth)
        for k, v in cfg.algo.items():
            if isinstance(v, (int, float, str, bool)):
                cols[f"algo.{k}"] = v
        for k, v in sets.items():
            if k not in ("experiment", "scale", "algo", "model", "dataset", "backend"):
                v = _value(v)
                cols[COLUMNS.get(k, k)] = str(v) if isinstance(v, list) else v
        metrics = dict(START)
        for k in range(1, cols["stages"] + 1):
            metrics.update({f"{m}/{k}": v for m, v in PER_STAGE.items()})
            if memory:
                metrics[f"peak_mem_bytes/{k}"] = 1e6 * (cols["stages"] - k + 1)
        for step in range(4):
            for metric, start in metrics.items():
                falls = metric.startswith(("train_loss", "test_loss"))
                rows.append({**cols, "metric": metric, "value": start * (0.7 ** step if falls else 1.0),
                             "kind": "eval" if metric.startswith("test") else "train", "step": 10 * (step + 1),
                             "updates": 10 * (step + 1), "epoch": float(step + 1), "wall_s": 0.5 * (step + 1),
                             "sim_s": 0.5 * (step + 1)})
    return pd.DataFrame(rows)


def texts(fig) -> str:
    """Every title and label of a figure, one per line."""
    out = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_ylabel(), *(t.get_text() for t in ax.get_xticklabels())]
    plt.close(fig)
    return "\n".join(out)


def labels(stem: str, df: pd.DataFrame) -> tuple[str, list[str]]:
    mod = load_experiment(stem)
    return texts(mod.plot(df)), [c.claim for c in check_claims(mod, df)]


#: (stem, overrides that make smoke differ from the paper where smoke runs the paper's setting, memory rows).
#: The default suite takes one stem per paper and labelling path (2-4 s each); the others are slow.
FAST = [("thesis-fig26", [], False), ("thesis-fig13", [], False), ("kavg18-fig1", [], False),
        ("huo17-fig1", ["algo.batch_size=32"], False)]
#: With memory rows, the memory stems build the model (torch) to predict the bytes: seconds.
SLOW = [("thesis-fig9", ["algo.batch_size=8"], False), ("thesis-fig27", [], False), ("thesis-fig28", [], False),
        ("thesis-table3", [], False), ("thesis-table6", [], False), ("lian15-table-incon", [], False),
        ("thesis-fig27", [], True), ("thesis-table6", [], True), ("thesis-fig20", [], False),
        ("thesis-table5", [], False), ("thesis-table7", [], False), ("thesis-fig17", [], False),
        ("thesis-fig12", ["algo.batch_size=8"], False), ("thesis-fig14", [], False), ("thesis-fig10", [], False),
        ("thesis-fig22", [], False), *((f"kavg18-fig{n}", [], False) for n in range(2, 8)),
        ("huo17-fig2", ["algo.batch_size=32"], False), ("huo17-fig3", ["algo.batch_size=32"], False),
        ("huo17-fig4", ["algo.batch_size=32"], False)]
STEMS = FAST + [pytest.param(*s, marks=pytest.mark.slow) for s in SLOW]


@pytest.mark.parametrize("stem,extra,memory", STEMS)
def test_a_stand_in_is_named_in_the_title_and_every_claim(stem, extra, memory):
    small, paper = frame(stem, "smoke", *extra, memory=memory), frame(stem, "paper")
    other_model = sorted(set(models_run(small)) - set(models_run(paper)))
    other_batch = sorted({int(b) for b in batch_of(small).dropna()} - {int(b) for b in batch_of(paper).dropna()})
    other_workers = sorted(set(small["workers"]) - set(paper["workers"]))
    assert other_model or other_batch or other_workers, f"{stem}: smoke runs the paper's setting; needs a stand-in"
    fig, claims = labels(stem, small)
    assert claims
    for text in (fig, *claims):
        assert "(run as " in text, f"{stem}: no stand-in named in {text!r}"
        said = text[text.index("(run as "):]
        assert all(m in said for m in other_model), f"{stem}: {other_model} not named in {text!r}"
        assert all(f"B={b}" in said or f"/{b}" in said for b in other_batch), f"{stem}: B={other_batch} in {text!r}"
        assert not other_workers or " workers not " in said, f"{stem}: workers {other_workers} in {text!r}"


@pytest.mark.parametrize("stem", [s for s, _, _ in FAST]
                         + [pytest.param(s, marks=pytest.mark.slow) for s, _, m in SLOW if not m])
def test_the_papers_setting_has_no_run_as_label(stem):
    fig, claims = labels(stem, frame(stem, "paper"))
    assert claims
    for text in (fig, *claims):
        assert "run as" not in text, f"{stem}: the paper's setting labelled as a stand-in: {text!r}"


def test_run_as_reads_model_batch_and_workers_from_the_config_columns():
    df = pd.DataFrame({"model": ["resnet8"] * 2, "algo.batch_size": [8, 8], "workers": [2, 4]})
    assert run_as(df, "ResNet-110", batch=128, workers=(8, 16, 32, 64, 128)) == \
        "ResNet-110 (run as resnet8, B=8 not 128, 2/4 workers not 8/16/.../128)"
    same = pd.DataFrame({"model": ["resnet110"], "algo.batch_size": [128], "workers": [8]})
    assert run_as(same, "ResNet-110", batch=128, workers=(8, 16)) == "ResNet-110"
    # Data-parallel large batches count micro-batch x accumulation steps x workers (thesis ch. 4's B = 8192).
    dp = pd.DataFrame({"model": ["vgg11_bn"], "algo.batch_size": [128], "algo.accum_steps": [64], "workers": [1]})
    assert list(batch_of(dp)) == [8192] and stand_ins(dp, ["VGG-11-BN"], batch=8192) == []
    assert model_label(df, "resnet8", {"resnet164": "ResNet-164", "resnet101": "ResNet-101"}, 128) == \
        "ResNet-164/101 (run as resnet8, B=8 not 128)"


@pytest.mark.slow  # one kavg18 smoke run (~10 s)
def test_a_smoke_runs_stand_in_is_read_from_its_results(cli, tmp_path):
    """End to end: vgg's depth is no part of its name, so the results frame carries ``model.depth`` and the
    claims of a smoke run (VGG-11, B=4, 2 learners) name them."""
    from hdist.metrics import load_results

    code, _, err = cli("run", "experiment=kavg18-fig1", "scale=smoke", "algo=kavg", "topology.workers=2",
                       "progress=quiet", f"results_dir={tmp_path}")
    assert code == 0, err
    df = load_results(tmp_path)
    assert set(df["model.depth"]) == {11}
    claims = check_claims(load_experiment("kavg18-fig1"), df)
    assert claims and all("(run as vgg11, B=4 not 16, 2 workers not 8/16/.../128)" in c.claim for c in claims)


def test_models_run_reads_a_missing_depth_as_none():
    # load_results types columns: a model without depth (mlp beside vgg) reads as pd.NA, not NaN
    df = pd.DataFrame({"model": ["vgg", "mlp"], "model.depth": pd.array([11, None], dtype="Int64")})
    assert list(models_run(df)) == ["vgg11", "mlp"]
