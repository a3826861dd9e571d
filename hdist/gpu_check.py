"""``make gpu-check`` (``python -m hdist.gpu_check [--out DIR]``): the GPU issue's end-to-end check on one GPU.

Sized to finish in under 8 minutes on one H100 (each piece has its own time limit, :data:`PIECES`):

1. ``test-gpu``: the CUDA tests (``pytest -m gpu``, as ``make test-gpu``);
2. ``clars-resnet50``: ``hdist run algo=clars model=resnet50 topology.devices=cuda`` to its end (as written: the
   CPU resizing of :mod:`hdist.demo` does not apply on a GPU);
3. ``bench-gpu-overhead``: the benchmark stem at ``scale=small`` (both models), its ratios from ``claims.json``;
4. ``sim-32-resnet20``: the sim backend with 32 simulated ResNet-20 workers on the one GPU;
5. ``process-2-ranks``: one ``backend=process`` run with 2 ranks sharing the GPU.

Every number goes to ONE file, ``gpu-check.json`` under ``--out`` (default ``$OUT``, else ``./gpu-check``),
rewritten atomically after each piece so that a check cut short still leaves what it measured: per piece its
command, exit code, wall seconds, status and its own numbers (updates/s of a run, the tests' counts, the
benchmark's ratios). Exit 0 when every piece passed, 1 when one failed. Without a CUDA device it writes
nothing and exits 2 with one line ``no CUDA device: ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from hdist import devices
from hdist.types import ConfigError

ROOT = Path(__file__).resolve().parents[1]  # a checkout: tests/ sits beside hdist/
HDIST = [sys.executable, "-m", "hdist.cli"]
QUIET = ["progress=plain"]

#: name -> (command, time limit in seconds). The limits add up to under 8 minutes; a piece that takes longer is
#: stopped and fails.
PIECES: dict[str, tuple[list[str], float]] = {
    "test-gpu": ([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"], 160.0),
    "clars-resnet50": ([*HDIST, "run", "algo=clars", "model=resnet50", "topology.devices=cuda", *QUIET], 90.0),
    "bench-gpu-overhead": ([*HDIST, "reproduce", "bench-gpu-overhead", "scale=small", *QUIET], 120.0),
    "sim-32-resnet20": ([*HDIST, "run", "algo=asysg_con", "backend=sim", "topology.workers=32", "model=resnet20",
                         "topology.devices=cuda", "scale=smoke", "scale.n_train=10240", "scale.n_test=512",
                         "algo.batch_size=32", "log.evals_per_epoch=0", *QUIET], 50.0),
    "process-2-ranks": ([*HDIST, "run", "algo=kavg", "backend=process", "topology.workers=2", "model=resnet20",
                         "topology.devices=cuda", "scale=smoke", "scale.n_train=4096", "scale.n_test=512",
                         "algo.batch_size=64", "algo.k=4", *QUIET], 50.0),
}


def no_cuda_reason() -> str | None:
    """Why this machine cannot run the check (None: it can)."""
    try:
        devices.resolve("cuda")
    except ConfigError as e:
        return str(e)
    return None


def _call(cmd: list[str], limit_s: float, log_path: Path, cwd: Path | None = None) -> tuple[int, float]:
    """Run ``cmd`` (its output to ``log_path``) for at most ``limit_s``: (exit code, wall seconds); 124 when
    stopped at the limit. Its own session, so that a stopped run's worker processes stop with it."""
    t0 = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = 124
    return rc, time.perf_counter() - t0


def run_numbers(results_dir: Path) -> dict:
    """The numbers of the one run under ``results_dir``: status, device, updates and updates/s of training."""
    from hdist.metrics import read_run_metrics

    status_files = sorted(results_dir.glob("*/*/status.json"))
    if len(status_files) != 1:
        return {"status": f"{len(status_files)} runs found"}
    run_dir = status_files[0].parent
    out = {"status": json.loads(status_files[0].read_text())["status"], "run_dir": str(run_dir)}
    meta_path = run_dir / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        out.update({k: meta.get(k) for k in ("device", "device_name", "gpu_count")})
    df = read_run_metrics(run_dir).to_pandas()
    if len(df):
        # Every row's wall_s is training time (evaluation is paused out of it): the last row's gives the rate.
        updates, wall_s = float(df["updates"].max()), float(df["wall_s"].max())
        out.update({"updates": updates, "train_wall_s": wall_s,
                    "updates_per_s": updates / wall_s if wall_s > 0 else None})
    return out


def test_numbers(log_text: str) -> dict:
    """pytest's summary line as counts: passed, failed, skipped, errors."""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", log_text)}
    return {k: counts.get(k, 0) for k in ("passed", "failed", "skipped", "deselected")} | {
        "errors": counts.get("error", 0) + counts.get("errors", 0)}


def bench_numbers(results_dir: Path, stem: str) -> dict:
    """A benchmark stem's claims: each claim's status and measured ratio text."""
    path = results_dir / stem / "claims.json"
    if not path.exists():
        return {"claims": [], "claims_missing": str(path)}
    claims = json.loads(path.read_text())
    rows = []
    for c in claims:
        row = {k: c.get(k) for k in ("claim", "status", "measured", "reason")}
        # The measured text starts with the ratio of the medians (hdist.papers.bench.gpu_overhead).
        head = str(c.get("measured", "")).split(" ", 1)[0]
        row["ratio"] = float(head) if re.fullmatch(r"\d+(\.\d+)?", head) else None
        rows.append(row)
    return {"claims": rows}


def check_piece(name: str, out_dir: Path) -> dict:
    cmd, limit_s = PIECES[name]
    piece_dir = out_dir / name
    piece_dir.mkdir(parents=True, exist_ok=True)
    results = piece_dir / "results"
    is_tests = name == "test-gpu"
    full = cmd if is_tests else [*cmd, f"results_dir={results}"]
    rc, wall_s = _call(full, limit_s, piece_dir / "output.log", cwd=ROOT if is_tests else None)
    row: dict = {"name": name, "command": " ".join(full), "rc": rc, "wall_s": round(wall_s, 3), "limit_s": limit_s}
    text = (piece_dir / "output.log").read_text(errors="replace")
    if is_tests:
        row |= test_numbers(text)
        row["passed_piece"] = rc == 0 and row["failed"] == 0 and row["errors"] == 0 and row["passed"] > 0
    elif name.startswith("bench-"):
        row |= bench_numbers(results, name)
        row["passed_piece"] = rc == 0 and bool(row["claims"])
    else:
        row |= run_numbers(results)
        row["passed_piece"] = rc == 0 and row.get("status") == "done" and row.get("device") == "cuda"
    if not row["passed_piece"]:
        row["output_tail"] = text[-2000:]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hdist.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None,
                    help="directory of gpu-check.json and the runs (default $OUT, else ./gpu-check)")
    ap.add_argument("--only", nargs="*", choices=list(PIECES), help="run only these pieces")
    args = ap.parse_args(argv)
    reason = no_cuda_reason()
    if reason is not None:
        print(f"no CUDA device: {reason}", file=sys.stderr)
        return 2
    from hdist.metrics import atomic_write_json

    out_dir = Path(args.out or os.environ.get("OUT") or "gpu-check").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"device": devices.meta("cuda"), "pieces": [], "passed": False, "wall_s": 0.0}
    path = out_dir / "gpu-check.json"
    t0 = time.perf_counter()
    for name in args.only or PIECES:
        print(f"[gpu-check] {name} ...", file=sys.stderr, flush=True)
        row = check_piece(name, out_dir)
        report["pieces"].append(row)
        report["wall_s"] = round(time.perf_counter() - t0, 3)
        report["passed"] = all(p["passed_piece"] for p in report["pieces"])
        atomic_write_json(path, report)
        print(f"[gpu-check] {name}: {'pass' if row['passed_piece'] else 'FAIL'} in {row['wall_s']:.1f} s",
              file=sys.stderr, flush=True)
    print(f"[gpu-check] {'passed' if report['passed'] else 'FAILED'} in {report['wall_s']:.1f} s: {path}",
          file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
