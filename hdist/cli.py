"""``hdist``: the command line. Verb dispatch only; Hydra composes every config.

    hdist run [key=value ...]          one run (Hydra); -m for a multirun sweep
    hdist reproduce STEM [key=value]   the runs behind one paper figure, then its figure and claims
    hdist figures [STEM ...]           draw figures + claim checks from whatever results exist
    hdist ls [STEM]                    list stems / runs and their status
    hdist report                       write <results_dir>/REPORT.md
    hdist gallery [out=DIR]            write DIR/README.md (default docs/gallery): every stem's figure and claims
    hdist data                         list datasets: where looked for, present, checksum
    hdist models                       list models: parameters, stages, input shape
"""

from __future__ import annotations

import atexit
import gc
import sys
from pathlib import Path

from hdist.types import ConfigError

USAGE = """usage: hdist VERB [key=value ...]

Distributed-training experiments from Hydra configs: runs write tidy parquet metrics,
figures and claim checks are drawn from them.

verbs:
  run [-m] [key=value ...]       one run; -m sweeps (Hydra multirun): hdist run -m seed=0,1,2 algo.lr=0.1,0.01
                                 hdist run --help shows the config groups and options
  reproduce STEM [key=value ...] the sweep behind one paper figure (resumable), then its figure and claims;
                                 --estimate: its runs and their time here, measured on a few steps (writes nothing);
                                 --timing-limit=S: each timing run's limit (default 60 s; big networks need more)
  figures [STEM ...]             draw <results_dir>/figures/<stem>.png|pdf and <results_dir>/<stem>/claims.json
  ls [STEM]                      list stems with run counts, or one stem's runs
  report                         write <results_dir>/REPORT.md: figures, claims (PASS/FAIL), run counts
  gallery [out=DIR]              write DIR/README.md, <stem>.png and <stem>.md (default docs/gallery): every
                                 stem's figure and claims with scale, data, runs and commit, regenerated from results
  data                           every known dataset: where it is looked for, present, checksum
  models                         every model: parameter count, stage count, default input shape
  calibrate [NAME] [key=value]   time a training step of model/batch here; write conf/topology/NAME.yaml for sim

Every verb accepts key=value overrides, e.g. results_dir=DIR (default: results).
Stems are the figure ids of docs/papers.md; conf/experiment/ lists the ones hdist has.
Bad input gets one line and exit code 2."""


def _split(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(positional words, key=value overrides, flags)."""
    pos = [a for a in args if "=" not in a and not a.startswith("-")]
    ovs = [a for a in args if "=" in a and not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    return pos, ovs, flags


def _results_dir(overrides: list[str], *, writes: bool = True) -> Path:
    """The results directory of ``overrides``, checked as a run's config is (a bad override of any
    key is refused, not ignored: ``hdist figures algo.lr=-1`` is exit 2). Read straight from
    ``results_dir=`` or conf/config.yaml when that is all there is (``hdist ls`` stays instant)."""
    from hdist.config import CONF_DIR, check_results_dir

    if all(o.startswith("results_dir=") for o in overrides):
        if overrides:
            path = overrides[-1].split("=", 1)[1]
        else:
            import yaml  # PyYAML comes with omegaconf

            path = str(yaml.safe_load((CONF_DIR / "config.yaml").read_text())["results_dir"])
        if "${" not in path:
            check_results_dir(path, writes=writes)
            return Path(path)
    from hdist.launch import prepare

    return Path(prepare(overrides, writes=writes).results_dir)


# ---------------------------------------------------------------------------------------------
# run: Hydra's own entry point (composition, --help, -m multirun, launcher plugins)
# ---------------------------------------------------------------------------------------------

_RESULTS: list = []


def _task(cfg):
    """One job of Hydra's app: a run through ``hdist run --help|--info|...`` or one point of a multirun sweep
    (any launcher; the sweeper validated every point before launching). Returns the RunResult (what the
    sweeper reports)."""
    from hydra.core.hydra_config import HydraConfig

    from hdist import config as C
    from hdist.launch import execute

    try:
        # the point's own overrides: keys the user set are left alone by the headline's CPU sizing
        cfg = C.finalize(cfg, list(HydraConfig.get().overrides.task))
        C.validate(cfg)
        result = execute(cfg)
    except ConfigError as e:
        print(f"hdist: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    _RESULTS.append(result)
    return result


def _hydra_main(argv: list[str]) -> None:
    import hydra

    from hdist.config import CONF_DIR

    # Hydra names the program after argv[0] (help text, the completion script): the console script's name.
    sys.argv = ["hdist", *argv]
    main = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(_task)
    if "--help" not in argv and "-h" not in argv:
        main()
        return
    import contextlib
    import io

    # Hydra's help lists every file of a group; the _*.yaml bases are not choices (config.group_options).
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            main()
    finally:
        print(_hide_bases(buf.getvalue()), end="")


def _hide_bases(help_text: str) -> str:
    lines, in_groups = [], False
    for line in help_text.splitlines(keepends=True):
        if line.startswith("== "):
            in_groups = line.startswith("== Configuration groups")
        elif in_groups and line.startswith("at_scale/"):
            continue  # an experiment's per-scale settings, chosen by experiment= and scale=, not by hand
        elif in_groups and ": " in line:
            group, _, options = line.rstrip("\n").partition(": ")
            line = f"{group}: {', '.join(o for o in options.split(', ') if not o.startswith('_'))}\n"
        lines.append(line)
    return "".join(lines)


def _cfg_job(overrides: list[str]) -> int:
    """``hdist run --cfg job``: the config the run would store in config.yaml (composed, resolved, validated,
    the data checked as the run checks it), or the one-line error."""
    from omegaconf import OmegaConf

    from hdist.launch import check_problem, prepare

    cfg = prepare(overrides)
    check_problem(cfg)
    print(OmegaConf.to_yaml(cfg), end="")
    return 0


def cmd_run(args: list[str]) -> int:
    from hdist.launch import execute, prepare

    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-") and a not in ("-m", "--multirun")]
    if not multirun and {"--cfg", "-c"} & set(flags) and set(flags) <= {"--cfg", "-c", "--resolve"} \
            and "job" in overrides:
        # Hydra's --cfg job prints the composition before resolution and validation; this is the config the
        # run stores (its config.yaml), or the bad value's one-line error.
        return _cfg_job([o for o in overrides if o != "job"])
    if not multirun and not flags:
        # One run: one composition (Hydra's compose API), validated, then run; Hydra's app and its
        # launchers are for sweeps and Hydra's own flags.
        return _summarise([execute(prepare(overrides))], False)
    from hdist.sweeps import LAST_RESULTS

    _RESULTS.clear()
    LAST_RESULTS.clear()
    _hydra_main(args)
    return _summarise(LAST_RESULTS if multirun else _RESULTS, multirun)


#: the variables launchers set to a process's rank in the job: mpich/hydra, PMIx, Open MPI, torchrun
_RANK_ENV = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "RANK")


def _world_rank() -> int:
    """This process's rank in an external world (mpiexec, srun, torchrun); 0 when started alone."""
    import os

    for name in _RANK_ENV:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _summarise(results, many: bool) -> int:
    failed = [r for r in results if r.status == "failed"]
    if many or len(results) > 1:
        counts = {}
        for r in results:
            key = "skipped" if r.skipped else r.status
            counts[key] = counts.get(key, 0) + 1
        print("[hdist] " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), file=sys.stderr)
    if len(results) == 1 and not failed and _world_rank() == 0:
        r = results[0]
        print(f"results: {r.run_dir}  (hdist figures draws them; hdist ls lists them)")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# reproduce: the stem's sweep, resumable, then its figure and claims
# ---------------------------------------------------------------------------------------------


def cmd_reproduce(args: list[str]) -> int:
    from hdist import config as C
    from hdist.launch import execute, prepare
    from hdist.papers import stems
    from hdist.sweeps import experiment_runs

    pos, ovs, flags = _split(args)
    C.SEARCH_DIRS[:] = C.search_dirs(ovs)  # a user's own experiments (hydra.searchpath=[DIR]) are stems too
    if len(pos) != 1:
        raise ConfigError(f"reproduce: expected one STEM, got {pos or 'none'}; allowed: {', '.join(stems())}")
    stem = pos[0]
    if stem not in stems():
        raise ConfigError(f"reproduce {stem}: unknown stem; allowed: {', '.join(stems())}")
    bad = [f for f in flags
           if f not in ("--estimate", "--no-figures") and not f.startswith(("--format=", "--timing-limit="))]
    if bad:
        raise ConfigError(f"reproduce: unknown flag {bad[0]}; allowed: --estimate [--format=table|md] "
                          f"[--timing-limit=SECONDS], --no-figures")
    if "--estimate" in flags:
        return _estimate(stem, ovs, flags)
    if any(f.startswith(("--format", "--timing-limit")) for f in flags):
        raise ConfigError("reproduce --format, --timing-limit: only with --estimate; allowed: --estimate "
                          "[--format=table|md] [--timing-limit=SECONDS]")
    combos = experiment_runs(stem, ovs)
    cfgs = [prepare(c) for c in combos]  # validate everything first
    print(f"[hdist] {stem}: {len(cfgs)} run(s)", file=sys.stderr)
    results = []
    for cfg in cfgs:
        results.append(execute(cfg))
    _summarise(results, True)
    results_dir = Path(cfgs[0].results_dir) if cfgs else _results_dir(ovs)
    from hdist.figures import draw_stem, print_claims, write_sweep

    ids = {r.run_id for r in results}
    write_sweep(results_dir, stem, ids, ovs)  # what a later `hdist figures` draws for this stem
    if "--no-figures" not in flags:
        out = draw_stem(results_dir, stem, ids)
        if out:
            print(f"figure: {out['png']}")
            if out["others"]:
                print(f"[hdist] {stem}: drawn from this sweep's {out['runs']} run(s); {out['others']} other run(s) in "
                      f"{results_dir / stem} (another config, topology or scale) left out", file=sys.stderr)
            print_claims(stem, out["claims"])
    return 1 if any(r.status == "failed" for r in results) else 0


def _estimate(stem: str, ovs: list[str], flags: list[str]) -> int:
    """``hdist reproduce STEM --estimate [--format=md]``: the runs and their measured time here; nothing written."""
    from hdist.estimate import check_flags, estimate, format_md_row, format_table

    fmt, limit_s = check_flags(flags)
    est = estimate(stem, ovs, progress=lambda line: print(line, file=sys.stderr, flush=True), limit_s=limit_s)
    print(format_md_row(est) if fmt == "md" else format_table(est))
    return 0


# ---------------------------------------------------------------------------------------------
# figures, ls, report, data, models
# ---------------------------------------------------------------------------------------------


def _only_all_flag(verb: str, flags: list[str]) -> None:
    bad = [f for f in flags if f != "--all"]
    if bad:
        raise ConfigError(f"{verb}: unknown flag {bad[0]}; allowed: --all (draw every finished run of a stem, "
                          f"not only its last reproduce's)")


def cmd_figures(args: list[str]) -> int:
    from hdist.figures import check_stems, draw_all, print_claims

    pos, ovs, flags = _split(args)
    _only_all_flag("figures", flags)
    results_dir = _results_dir(ovs)
    check_stems(results_dir, pos)
    outs = draw_all(results_dir, pos or None, every_run="--all" in flags)
    if not outs:
        print(f"no results under {results_dir}/ (hdist run writes some)")
        return 0
    failed = 0
    for stem, out in outs.items():
        if "error" in out:
            failed += 1
            print(f"{stem}: not drawn: {out['error']}")
            continue
        if not out["runs"]:
            print(f"{stem}: not drawn: none of the {out['sweep_runs']} run(s) of its last `hdist reproduce` has "
                  f"finished (hdist figures --all draws the folder's other runs)")
            continue
        print(f"{stem}: {out['png']}  ({out['runs']} run(s))")
        if out["others"]:
            print(f"[hdist] {stem}: drawn from its last `hdist reproduce` sweep; {out['others']} other run(s) in "
                  f"{results_dir / stem} left out (hdist figures --all draws them)", file=sys.stderr)
        print_claims(stem, out["claims"])
    # every other stem is drawn; the exit status still says that one was not
    return 1 if failed else 0


def cmd_ls(args: list[str]) -> int:
    from hdist.figures import list_runs, list_stems

    pos, ovs, _ = _split(args)
    results_dir = _results_dir(ovs, writes=False)
    if pos:
        for stem in pos:
            print(list_runs(results_dir, stem))
    else:
        print(list_stems(results_dir))
    return 0


def cmd_report(args: list[str]) -> int:
    from hdist.report import write_report

    _, ovs, flags = _split(args)
    _only_all_flag("report", flags)
    path = write_report(_results_dir(ovs), every_run="--all" in flags)
    print(f"report: {path}")
    return 0


def cmd_gallery(args: list[str]) -> int:
    from hdist.gallery import check_out, write_gallery

    pos, ovs, flags = _split(args)
    if flags:
        raise ConfigError(f"gallery: unknown flag {flags[0]}; allowed: results_dir=DIR out=DIR")
    if pos:
        raise ConfigError(f"gallery: unexpected word {pos[0]!r}; allowed: results_dir=DIR out=DIR (every stem "
                          f"with runs is in the gallery)")
    outs = [o.split("=", 1)[1] for o in ovs if o.startswith("out=")]
    results_dir = _results_dir([o for o in ovs if not o.startswith("out=")])
    if not results_dir.is_dir():
        raise ConfigError(f"gallery: results_dir={results_dir} is not a directory; allowed: a results directory "
                          f"that hdist run or hdist reproduce wrote")
    out = check_out(outs[-1] if outs else "docs/gallery")  # before anything is drawn or written
    done = write_gallery(results_dir, out)
    print(f"gallery: {done['readme']}  ({len(done['stems'])} stem(s) with finished runs"
          + (f"; {len(done['unreadable'])} unreadable file(s) skipped" if done["unreadable"] else "") + ")")
    return 0


def cmd_data(args: list[str]) -> int:
    from hdist.data.catalog import describe_all

    _, ovs, _ = _split(args)
    root = None
    for o in ovs:
        if o.startswith("dataset.root="):
            root = o.split("=", 1)[1]
    print(data_table(describe_all(root)))
    return 0


def data_table(rows: list[dict]) -> str:
    """One line per dataset: name, source, present, checksum, the files present of those looked for, folder."""
    head = ("dataset", "source", "present", "checksum", "files", "folder")
    body = []
    for r in rows:
        files = r["files"]
        n_there = sum(1 for f in files if f["present"])
        body.append((r["name"], r["source"], r["present"], r["checksum"],
                     f"{n_there}/{len(files)}" if files else "-", r["folder"] or "(generated from the seed)"))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = ["  ".join(str(x[i]).ljust(widths[i]) for i in range(len(widths))) + "  " + str(x[-1])
             for x in [head, *body]]
    return "\n".join(lines)


def cmd_models(args: list[str]) -> int:
    from hdist.models import build_model, get_spec, model_names, n_params

    for name in model_names():
        spec = get_spec(name)
        m = build_model(name)
        print(f"{name:14s} params={n_params(m):>11,d}  stages={len(m):3d}  input={list(spec.input_shape)}  "
              f"classes={spec.num_classes}  {spec.description}")
    return 0


def cmd_calibrate(args: list[str]) -> int:
    """hdist calibrate [NAME|PATH.yaml] [--local-links] [key=value ...]: time a training step, write a topology file."""
    from hdist.calibrate import calibrate, check_source_topology, write_topology
    from hdist.config import CONF_DIR
    from hdist.launch import prepare

    pos, ovs, flags = _split(args)
    bad = [f for f in flags if f != "--local-links"]
    if bad:
        print(f"hdist calibrate: unknown flag {bad[0]}; allowed: --local-links", file=sys.stderr)
        return 2
    out = pos[0] if pos else "calibrated"
    cfg = prepare(ovs)
    check_source_topology(cfg, out)  # before a minute of measuring, not after
    measured = calibrate(cfg, ovs, local_links="--local-links" in flags)
    path = write_topology(cfg, measured, out)
    print(f"{cfg.model.name} batch {measured['batch']}: {measured['step_s_at_batch'] * 1e3:.3f} ms/step "
          f"({measured['what']}) "
          f"(per_step_s={measured['per_step_s']:.4g}, per_sample_s={measured['per_sample_s']:.4g}), "
          f"memory {measured['memory_Bps'] / 1e9:.1f} GB/s"
          + (f", handoff {measured['handoff_s'] * 1e6:.1f} us per x, wake-up {measured['wake_s'] * 1e6:.1f} us"
             if "wake_s" in measured else "")
          + (f", a message {measured['desched_s'] * 1e6:.1f} us more per busy rank beyond the cores"
             if measured.get("comm_loaded_s") else ""))
    if path.parent.resolve() == (CONF_DIR / "topology").resolve():
        print(f"topology: {path}  (use: topology={path.stem} backend=sim)")
    else:
        print(f"topology: {path}  (copy it into {CONF_DIR / 'topology'} to use it as topology={path.stem})")
    return 0


VERBS = {
    "run": cmd_run,
    "reproduce": cmd_reproduce,
    "figures": cmd_figures,
    "ls": cmd_ls,
    "report": cmd_report,
    "gallery": cmd_gallery,
    "data": cmd_data,
    "models": cmd_models,
    "calibrate": cmd_calibrate,
}


def _shell_completion(args: list[str]) -> int:
    """``hdist -sc query=bash``, as the script of ``hdist run --shell-completion install=bash`` calls it on TAB:
    the verbs while the verb is typed, then Hydra's candidates (config groups, options, keys) for the
    key=value words after it."""
    import contextlib
    import io
    import os
    import re

    if not any(a.startswith("query=") for a in args):
        _hydra_main(["--shell-completion", *args])  # install= / uninstall=: Hydra writes the script
        return 0
    # "<program> <verb> <key=value words>": while the verb is typed (no blank after it yet), the verbs.
    m = re.match(r"^(\s*\S+\s+)(\S+)(\s.*)?$", os.environ.get("COMP_LINE", ""))
    if m is None or m.group(3) is None:
        print(" ".join(VERBS))
        return 0
    # Hydra reads the line after the program's name as overrides: the verb is not one.
    os.environ["COMP_LINE"] = m.group(1) + m.group(3).lstrip()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _hydra_main(["--shell-completion", *args])
    # As in --help: the _*.yaml bases are not choices, and an experiment's per-scale files are chosen by
    # experiment= and scale=, not by hand.
    words = [w for w in buf.getvalue().split()
             if not w.startswith("at_scale") and not w.partition("=")[2].startswith("_")]
    print(" ".join(words))
    return 0


def main(argv: list[str] | None = None) -> None:
    # Skip the interpreter's last garbage collection: a pass over every object of torch, pandas, pyarrow
    # and hydra, after the run is recorded and its files closed, that on a loaded machine kept hdist
    # alive seconds longer (a failed run then ended well past backend.timeout_s). Frozen objects are left
    # to the OS; at exit (atexit), so that an hdist called in-process keeps its collections.
    atexit.register(gc.freeze)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-sc", "--shell-completion"):
        sys.exit(_shell_completion(argv[1:]))
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0)
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"hdist: unknown verb {verb!r}; allowed: {', '.join(VERBS)}", file=sys.stderr)
        sys.exit(2)
    try:
        code = VERBS[verb](rest)
    except ConfigError as e:
        print(f"hdist: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("hdist: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()
