"""The metrics table: one tidy schema, a buffered crash-safe writer, and ``load_results``.

Every rank of every run writes rows of the same shape (:data:`COLUMNS`) to
``<run_dir>/metrics-r<rank>.parquet``. Result files are the only interface between training
and plotting: a figure is a pure function of the DataFrame that :func:`load_results` returns.

Crash safety. A parquet file is unreadable until its footer is written, so an open file can
never be the only copy. The writer therefore flushes each buffer as a complete *part* file
(``metrics-r0.p00003.parquet``, written to a temp name and renamed: atomic on POSIX) every
``flush_s`` seconds, and at close merges the parts, one row group each, into
``metrics-r0.parquet`` (again temp + rename) and deletes them. A run killed at any instant
leaves only complete files; :func:`read_run_metrics` reads the final file when it exists and
the parts otherwise.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from hdist.rundir import write_failed

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported where a table is read or written, not at import: `hdist ls`, `report` and
# the launcher's atomic writes reach this module without reading a table (bench-startup times `ls`).

# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------

#: Column -> (arrow type name, meaning). ``step``/``updates``/``epoch``/``samples`` describe the
#: logging rank's progress when the row was written; ``value`` is the measurement.
SCHEMA_DOC: dict[str, tuple[str, str]] = {
    "run_id": ("string", "stable hash of the run's resolved config"),
    "rank": ("int32", "rank that wrote the row (0 for serial runs)"),
    "role": ("string", "worker | server | stage | bench: what the rank does"),
    "kind": ("string", "train | eval | comm | event"),
    "step": ("int64", "local optimisation steps taken by this rank"),
    "updates": ("int64", "updates applied to the shared / global model so far"),
    "epoch": ("float64", "passes over this rank's training data (fractional)"),
    "samples": ("int64", "training samples processed by this rank"),
    "wall_s": ("float64", "seconds of training since the rank started (evaluation excluded)"),
    "sim_s": ("float64", "virtual seconds on the sim backend; NaN elsewhere"),
    "metric": ("string", "metric name, one of METRICS (or a documented extension)"),
    "value": ("float64", "the measurement"),
}
COLUMNS: list[str] = list(SCHEMA_DOC)
_SCHEMA: list = []


def schema() -> pa.Schema:
    """The arrow schema of SCHEMA_DOC, built on first use."""
    if not _SCHEMA:
        import pyarrow as pa
        _SCHEMA.append(pa.schema([(c, getattr(pa, t)()) for c, (t, _) in SCHEMA_DOC.items()]))
    return _SCHEMA[0]


def __getattr__(name: str) -> Any:
    if name == "SCHEMA":  # the module attribute readers used before schema() existed
        return schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
KINDS = ("train", "eval", "comm", "event")

#: Metric names used across hdist, with their unit. New metrics are added here first.
METRICS: dict[str, str] = {
    "train_loss": "objective on the step's mini-batch (incl. regulariser), nats",
    "train_loss_full": "objective on the whole training set, nats",
    "train_error": "fraction of training samples misclassified, 0..1",
    "test_loss": "loss on the test set, nats",
    "test_error": "fraction of test samples misclassified, 0..1",
    "lr": "learning rate in force at the step",
    "grad_norm_sq": "squared norm of the full gradient",
    "duality_gap": "primal minus dual objective",
    "suboptimality": "P(w) - P(w*)",
    "primal": "primal objective P(w) of the closed-form problem (ridge 3.38, PCA 3.40), full training set",
    "duality_gap_exact": "P(w) - D(alpha) at the end, w(alpha) recomputed from every worker's dual variables",
    "dual_residual": "||w - w(alpha)||: the server's w against the primal-dual map of the workers' duals (0 = exact)",
    "full_grad_norm_sq": "squared norm of the full data gradient at an SVRG snapshot",
    "pretrain_steps": "SGD steps of SGD_SVRG's pretraining",
    "staleness": "server version at apply minus the version the gradient was computed from",
    "bytes": "bytes sent by this rank",
    "compute_s": "seconds computing gradients",
    "comm_s": "seconds communicating",
    "wait_s": "seconds blocked waiting for peers",
    "eval_s": "seconds spent evaluating (excluded from wall_s)",
    "forward_s": "seconds in forward passes",
    "backward_s": "seconds in backward passes",
    "peak_mem_bytes": "peak bytes held for activations / histories / stale gradients",
    "sigma": "sufficient-direction constant (thesis Assumption 6.4.1)",
    "forward_s/<k>": "pipeline stage k (1..K): seconds in forward passes so far (virtual on sim), cumulative",
    "backward_s/<k>": "pipeline stage k: seconds in backprop, replay, synthesizer and optimizer steps, cumulative",
    "wait_s/<k>": "pipeline stage k: seconds blocked receiving activations or error gradients so far, cumulative",
    "peak_mem_bytes/<k>": "pipeline stage k: peak bytes held for saved activations, weight snapshots, input histories "
                          "and error gradients so far (measured by storage, hdist/algos/_pipeline.py)",
    "sigma/<k>": "pipeline stage k: <exact grad, applied grad> / ||exact grad||^2 on the applied gradient's batch "
                 "at the current weights (thesis Assumption 6.4.1, fig. 26), unitless",
    "synth_loss/<k>": "DNI stage k: ||M_k - delta||^2 / ||delta||^2 of the synthesizer's last regression, unitless",
    "m_k": "per-layer gradient variance factor (thesis 4.4.3)",
    "m_k/<layer>": "variance factor M_k of parameter tensor <layer>: mean squared per-sample gradient norm over the "
                   "squared norm of the mean gradient, on log.m_k_samples training samples (thesis 4.4.3), unitless",
    "layer_lr/<layer>": "learning rate gamma_k of parameter tensor <layer> at the step (mNAG, LARS eq. 4.3, CLARS 4.7)",
    "steps_per_s": "optimisation steps per second (benchmarks)",
    "s_per_update": "real seconds per update of the shared model (benchmarks)",
    "updates_per_s": "parameter-server updates applied per second (benchmarks)",
    "conformance_ok": "1 per backend conformance check passed (step = the check's index)",
    "conformance_skip": "1 per conformance check that does not apply to the backend (step = its index)",
    "diverged": "1 when the loss became NaN or inf",
    "train_s": "seconds from the common start until every worker finished (rank 0)",
    "straggle_s_total": "seconds a worker was held back by the straggler model over the run",
    "fp16_skipped_steps": "algo.precision=fp16: gradients zeroed over the run for an inf or nan under the loss scale",
    "loss_scale": "algo.precision=fp16: the dynamic loss scale S at the end of the run (hdist/precision.py)",
    "straggle_s": "seconds a straggling worker was held back at a step (thesis 3.5 delay model)",
    "updates_total": "updates this rank pushed (or, on a server, applied) over the run",
    "serve_s": "seconds a parameter-server rank spent in its server loop (its clock: real, or virtual on the sim)",
    "apply_s": "seconds of a server's loop spent on the algorithm's work per applied update (logging, snapshots)",
    "updates_applied": "updates a parameter-server rank applied over the run",
    "step_flop": "forward FLOPs of one training step of the model at the run's batch (benchmarks)",
    "samples_per_s": "samples loaded per second (benchmarks)",
    "step_s": "seconds per training step (benchmarks)",
}


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``; on any failure the temp file goes and a disk
    error becomes :class:`~hdist.rundir.WriteFailed` naming ``path`` (a full disk leaves no torn file)."""
    tmp = _tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        failed = write_failed(e, path)
        if failed is not None:
            raise failed from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a torn one."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    _atomic(Path(path), write)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _write_table_atomic(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq
    _atomic(path, lambda tmp: pq.write_table(table, tmp))


class MetricsLogger:
    """Buffers rows in Python lists (cheap per call) and flushes them as parquet row groups.

    ``log`` is on the training hot path: it appends one tuple and checks the clock only
    every 256 rows, so no per-step pandas or file work happens.
    """

    def __init__(self, run_dir: Path, run_id: str, rank: int = 0, role: str = "worker",
                 flush_s: float = 5.0, clock=time.perf_counter):
        self.run_dir, self.run_id, self.rank, self.role = Path(run_dir), run_id, rank, role
        self.flush_s = float(flush_s)
        self._clock = clock
        self._rows: list[tuple] = []
        self._parts = 0
        self._last_flush = clock()
        self._closed = False
        self.path = self.run_dir / f"metrics-r{rank}.parquet"
        # Progress counters, updated by the algorithm; every row carries them.
        self.step = 0
        self.updates = 0
        self.epoch = 0.0
        self.samples = 0
        self.sim_s = math.nan
        self.t0 = clock()
        self.paused_s = 0.0  # time excluded from wall_s (evaluation)

    # --- time -------------------------------------------------------------------------------
    def restart_clock(self) -> None:
        """wall_s counts from now (ranks call it together after a start barrier)."""
        self.t0 = self._clock()
        self.paused_s = 0.0

    def wall_s(self) -> float:
        return self._clock() - self.t0 - self.paused_s

    # --- rows -------------------------------------------------------------------------------
    def log(self, kind: str, metric: str, value: float, wall_s: float | None = None) -> None:
        self._rows.append((self.role, kind, self.step, self.updates, self.epoch, self.samples,
                           self.wall_s() if wall_s is None else wall_s, self.sim_s, metric, float(value)))
        if len(self._rows) & 255 == 0 and self._clock() - self._last_flush >= self.flush_s:
            self.flush()

    def log_many(self, kind: str, values: dict[str, float]) -> None:
        w = self.wall_s()
        for k, v in values.items():
            self.log(kind, k, v, wall_s=w)

    def maybe_flush(self) -> None:
        """Flush if ``flush_s`` has passed; call from loops that log rarely."""
        if self._rows and self._clock() - self._last_flush >= self.flush_s:
            self.flush()

    def _table(self, rows: list[tuple]) -> pa.Table:
        import pyarrow as pa
        cols = list(zip(*rows)) if rows else [[] for _ in range(10)]
        n = len(rows)
        data = {
            "run_id": [self.run_id] * n,
            "rank": [self.rank] * n,
            "role": cols[0], "kind": cols[1], "step": cols[2], "updates": cols[3], "epoch": cols[4],
            "samples": cols[5], "wall_s": cols[6], "sim_s": cols[7], "metric": cols[8], "value": cols[9],
        }
        return pa.Table.from_pydict(data, schema=schema())

    def flush(self) -> None:
        """Write the buffered rows as one complete part file (atomic)."""
        self._last_flush = self._clock()
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        self._parts += 1
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_table_atomic(self._table(rows), self.run_dir / f"metrics-r{self.rank}.p{self._parts:05d}.parquet")

    def close(self) -> None:
        """Flush, then merge all parts into ``metrics-r<rank>.parquet`` (one row group per part)."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        finalize_rank(self.run_dir, self.rank)


def _part_files(run_dir: Path, rank: int | str = "*") -> list[str]:
    return sorted(glob.glob(str(Path(run_dir) / f"metrics-r{rank}.p[0-9]*.parquet")))


def finalize_rank(run_dir: Path, rank: int) -> Path:
    """Merge rank ``rank``'s part files into its final metrics file, atomically."""
    run_dir = Path(run_dir)
    import pyarrow.parquet as pq
    final = run_dir / f"metrics-r{rank}.parquet"
    parts = _part_files(run_dir, rank)
    if not parts:
        if not final.exists():
            _write_table_atomic(schema().empty_table(), final)
        return final
    tables = ([pq.read_table(final, schema=schema())] if final.exists() else []) + [
        pq.read_table(p, schema=schema()) for p in parts]

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema()) as w:
            for t in tables:
                w.write_table(t)  # one row group per flushed part

    _atomic(final, write)
    # The parts are deleted only after the merged file is in place; if we die in between, the
    # reader prefers the final file and ignores the leftovers.
    for p in parts:
        os.unlink(p)
    return final


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


class UnreadableRun(Exception):
    """A run directory with a file that is not what hdist writes there; ``str()`` names the file and why."""


#: The files of one rank: the final ``metrics-r<N>.parquet`` and the flushed parts ``metrics-r<N>.p<K>.parquet``.
FINAL_RE = re.compile(r"metrics-r(\d+)\.parquet")
PART_RE = re.compile(r"metrics-r(\d+)\.p(\d+)\.parquet")


def _read_table(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        return pq.read_table(path, schema=schema())
    except (OSError, ValueError, pa.ArrowException) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnreadableRun(f"{path}: not a metrics parquet file ({why[:120]}); expected the columns "
                            f"{', '.join(COLUMNS)}") from None


def _metrics_files(run_dir: Path, parts: bool) -> list[Path]:
    """The files :func:`read_run_metrics` reads, in rank order."""
    finals, partials = {}, {}
    for f in sorted(Path(run_dir).iterdir()):
        if m := FINAL_RE.fullmatch(f.name):
            finals[int(m.group(1))] = f
        elif m := PART_RE.fullmatch(f.name):
            partials.setdefault(int(m.group(1)), []).append(f)
    files: list[Path] = []
    for rank in sorted(set(finals) | (set(partials) if parts else set())):
        files += [finals[rank]] if rank in finals else sorted(partials[rank])
    return files


def check_run_metrics(run_dir: Path, parts: bool = True) -> None:
    """:class:`UnreadableRun` unless every metrics file of the run is a parquet file of :data:`SCHEMA`
    (footers only: cheap)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    for f in _metrics_files(run_dir, parts):
        try:
            file_schema = pq.read_schema(f)
        except (OSError, ValueError, pa.ArrowException) as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UnreadableRun(f"{f}: not a parquet file ({why[:120]}); expected hdist's metrics table") from None
        missing = [c for c in COLUMNS if c not in file_schema.names]
        if missing:
            raise UnreadableRun(f"{f}: lacks the column(s) {', '.join(missing)}; expected hdist's metrics table "
                                f"({', '.join(COLUMNS)})")


def read_run_metrics(run_dir: Path, parts: bool = True) -> pa.Table:
    """All ranks' rows of one run: each rank's final file, or, with ``parts``, the flushed parts of a
    rank that has none yet (a running or killed run). Raises :class:`UnreadableRun` naming a bad file."""
    import pyarrow as pa
    tables = [_read_table(f) for f in _metrics_files(run_dir, parts)]
    return pa.concat_tables(tables) if tables else schema().empty_table()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(d) if isinstance(d, list) else d
    return out


#: Config columns every results frame carries (name -> dotted config key).
BASE_COLUMNS = {
    "stem": "stem", "algo": "algo.name", "model": "model.name", "dataset": "dataset.name",
    "backend": "backend.name", "workers": "topology.workers", "stages": "topology.stages",
    "seed": "seed", "scale": "scale.name",
}

# Config keys loaded as columns whether or not they vary (the hyperparameters figures label by; a network's
# depth where its name does not say it, vgg's: titles and claims name the model run).
ALWAYS_PREFIXES = ("algo.", "scale.", "model.depth")


def iter_runs(results_dir: Path, stems: Iterable[str] | None = None) -> Iterable[Path]:
    results_dir = Path(results_dir)
    pattern = [results_dir / s for s in stems] if stems else sorted(p for p in results_dir.iterdir() if p.is_dir())
    for stem_dir in pattern:
        if not stem_dir.is_dir() or stem_dir.name == "figures":
            continue
        for run_dir in sorted(stem_dir.iterdir()):
            if (run_dir / "config.yaml").exists():
                yield run_dir


#: The largest config.yaml / status.json / meta.json hdist reads (its own are a few KB).
MAX_RUN_FILE_BYTES = 1 << 20


def _read_small(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_RUN_FILE_BYTES:
        raise UnreadableRun(f"{path}: {size:,} bytes; expected at most {MAX_RUN_FILE_BYTES:,} (hdist writes a few KB)")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UnreadableRun(f"{path}: cannot be read ({type(e).__name__}); expected text") from None


def _no_alias_loader():
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """SafeLoader refusing aliases: a few hundred bytes of nested aliases ("billion laughs") expand
        into gigabytes; hdist's own files never hold one."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("YAML aliases are not allowed")
            return super().compose_node(parent, index)

    return NoAliasLoader


def _load_yaml_no_alias(text: str) -> Any:
    """``text`` as YAML, refusing aliases; with libyaml (PyYAML's wheels have it) its C parser reads the
    events once to find an alias and then loads, instead of the pure-Python loader: `hdist ls` and
    `report` read every run's config."""
    import yaml

    if not yaml.__with_libyaml__:
        return yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 (a SafeLoader)
    if any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=yaml.CSafeLoader)):
        raise yaml.YAMLError("YAML aliases are not allowed")
    return yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 (libyaml's SafeLoader)


def read_run_config(path: Path) -> dict:
    """A run's ``config.yaml`` as a mapping; :class:`UnreadableRun` for anything that is not one hdist wrote."""
    import yaml

    try:
        cfg = _load_yaml_no_alias(_read_small(path))
    except yaml.YAMLError as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else "YAML error"
        raise UnreadableRun(f"{path}: not valid YAML ({why}); expected a run config hdist wrote") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("algo"), dict) or "name" not in cfg["algo"]:
        what = type(cfg).__name__ if not isinstance(cfg, dict) else "a mapping without algo.name"
        raise UnreadableRun(f"{path}: holds {what}; expected a run config (a mapping with algo, model, dataset, ...)")
    return cfg


def read_run_json(path: Path, required: bool = True) -> dict:
    """A run's ``status.json`` or ``meta.json`` as a mapping ({} when absent and not ``required``)."""
    if not path.exists():
        if required:
            raise FileNotFoundError(path)
        return {}
    try:
        obj = json.loads(_read_small(path))
    except ValueError as e:
        raise UnreadableRun(f"{path}: not valid JSON ({e}); expected a JSON object") from None
    if not isinstance(obj, dict):
        raise UnreadableRun(f"{path}: holds a JSON {type(obj).__name__}; expected a JSON object")
    return obj


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Flattened config plus status of one run (no metrics); :class:`UnreadableRun` names a bad file."""
    run_dir = Path(run_dir)
    flat = _flatten(read_run_config(run_dir / "config.yaml"))
    try:
        st = read_run_json(run_dir / "status.json")
    except FileNotFoundError:
        st = {"status": "unknown", "reason": "no status.json"}
    meta = read_run_json(run_dir / "meta.json", required=False)
    # A real dataset replaced by a synthetic stand-in (dataset.fallback) is named here, so that
    # figures can say so.
    flat["stand_in_for"] = meta.get("stand_in_for") or ""
    # The machine's load while the run trained (hdist.launch.machine_load): timing claims need it.
    flat["load_1m_start"] = meta.get("load_1m_start")
    flat["load_1m_end"] = meta.get("load_1m_end")
    cpus = [c for c in (meta.get("cpu_count_start"), meta.get("cpu_count_end")) if c]
    flat["cpu_count"] = min(cpus) if cpus else None
    flat["status"] = str(st.get("status", "unknown"))
    flat["reason"] = str(st.get("reason", ""))
    flat["run_dir"] = str(run_dir)
    flat["run_id"] = run_dir.name
    return flat


def scan_runs(results_dir: Path, stems: Iterable[str] | None = None,
              warn: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """``(summaries, unreadable)``: every readable run's :func:`run_summary`, and one line per run
    skipped for a bad file (``warn``: also printed to stderr). One bad run never stops the others."""
    import sys

    summaries, bad = [], []
    for run_dir in iter_runs(results_dir, stems):
        try:
            summary = run_summary(run_dir)
            check_run_metrics(run_dir, parts=summary["status"] not in ("done", "diverged"))
            summaries.append(summary)
        except UnreadableRun as e:
            bad.append(str(e))
            if warn:
                print(f"[hdist] skipped unreadable run {run_dir.name}: {e}", file=sys.stderr)
    return summaries, bad


def load_results(results_dir: str | Path = "results", stems: Iterable[str] | str | None = None,
                 status: Iterable[str] | None = ("done", "diverged")):
    """Metrics of every run under ``results_dir`` (optionally only ``stems``) as one DataFrame.

    Each row carries its run's config columns: :data:`BASE_COLUMNS`, every config key that
    varies between the runs loaded (the swept keys, by their dotted name), and every
    ``algo.*`` and ``scale.*`` key (a figure needs the hyperparameters even when a stem holds
    them fixed), plus ``status``.
    ``status`` filters runs (None keeps all, unfinished ones too).
    """
    import pandas as pd

    if isinstance(stems, str):
        stems = [stems]
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return pd.DataFrame(columns=[*COLUMNS, *BASE_COLUMNS, "status"])
    summaries, _ = scan_runs(results_dir, stems, warn=True)
    if status is not None:
        keep = set(status)
        summaries = [s for s in summaries if s["status"] in keep]
    if not summaries:
        return pd.DataFrame(columns=[*COLUMNS, *BASE_COLUMNS, "status"])
    keys = set().union(*summaries)
    load = ("load_1m_start", "load_1m_end", "cpu_count")
    ignore = {"run_dir", "reason", "results_dir", "stand_in_for", "progress", "log.flush_s", *load}
    varying = sorted(k for k in keys - ignore
                     if k.startswith(ALWAYS_PREFIXES)
                     or len({json.dumps(s.get(k), sort_keys=True, default=str) for s in summaries}) > 1)
    import sys

    frames = []
    for s in summaries:
        # The parts of a running or killed run only when unfinished runs are asked for.
        try:
            df = read_run_metrics(Path(s["run_dir"]), parts=s["status"] not in ("done", "diverged")).to_pandas()
        except UnreadableRun as e:
            print(f"[hdist] skipped unreadable run {s['run_id']}: {e}", file=sys.stderr)
            continue
        df["run_id"] = s["run_id"]
        for col, key in BASE_COLUMNS.items():
            df[col] = s.get(key)
        for key in varying:
            if key not in BASE_COLUMNS.values() and key not in ("status", "run_id"):
                df[key] = s.get(key)
        df["status"] = s["status"]
        df["stand_in_for"] = s["stand_in_for"]
        for key in load:
            df[key] = float("nan") if s.get(key) is None else float(s[key])
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, *BASE_COLUMNS, "status"])
    out = pd.concat(frames, ignore_index=True)
    for col in [c for c in out.columns if pd.api.types.is_object_dtype(out[c])]:
        out[col] = typed_column(out[col])
    return out


def typed_column(col):
    """A config column as its YAML type, missing values (a key a run does not have) as NA: bool -> boolean,
    int -> Int64, int and float -> float64, else str (a column mixing text and numbers: all text)."""
    import pandas as pd

    kinds = {type(v) for v in col.dropna()}
    if kinds <= {bool}:
        return col.astype("boolean")
    if kinds <= {int}:
        return col.astype("Int64")
    if kinds <= {int, float}:
        return col.astype("float64")
    return col.map(lambda v: v if v is None or isinstance(v, str) else str(v)).astype(pd.StringDtype())
