"""Every resolved config hdist can compose from conf/, with its run id: the check that a change to conf/
changes no run (a run finished before it is still found and skipped after it).

    python tests/dump_configs.py [--scales smoke,small,paper] [--sort-keys] > configs.txt

prints, for every option of every group composed alone over the defaults and for every point of every
experiment at each scale, a line ``== <label> <run_id>`` and the resolved config as YAML. Run it in two
checkouts (``PYTHONPATH=<checkout>`` so that checkout's hdist is imported) and diff the outputs.
``--sort-keys`` prints the keys sorted: the run id hashes them sorted, so key order is not identity.
``--fixture`` prints the run ids of a subset that composes in seconds (:func:`fixture_points`): written
by an older checkout, it is tests/data/run_ids.json, which test_config checks the current code against.
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterator

ALONE_GROUPS = ("dataset", "model", "algo", "backend", "topology", "scale")


def group_points() -> Iterator[tuple[str, list[str]]]:
    """Every option of every group (experiments excepted), composed alone over the defaults."""
    from hdist import config as C

    for group in ALONE_GROUPS:
        for opt in C.group_options(group):
            yield f"{group}={opt}", [f"{group}={opt}"]


def experiment_points(scales: list[str], first_only: bool = False,
                      stems: list[str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Every point of every experiment (or of ``stems``) at each scale, as ``hdist reproduce`` runs them
    (or only the first)."""
    from hdist import config as C
    from hdist.sweeps import experiment_runs

    for stem in stems or C.group_options("experiment"):
        for scale in scales:
            runs = experiment_runs(stem, [f"scale={scale}"])
            for i, ovs in enumerate(runs[:1] if first_only else runs):
                yield f"{stem}@{scale}#{i}", ovs


def points(scales: list[str], first_only: bool = False) -> Iterator[tuple[str, list[str]]]:
    yield from group_points()
    yield from experiment_points(scales, first_only)


def combined_group_points() -> Iterator[tuple[str, list[str]]]:
    """Every option of every group (experiments excepted) in as few compositions as the largest group
    has options: the i-th point takes each group's i-th option (cycling), a few seconds for all."""
    from hdist import config as C

    options = {g: C.group_options(g) for g in ALONE_GROUPS}
    for i in range(max(len(o) for o in options.values())):
        ovs = [f"{g}={o[i % len(o)]}" for g, o in options.items()]
        yield " ".join(ovs), ovs


def fixture_points() -> Iterator[tuple[str, list[str]]]:
    """The points of tests/data/run_ids.json: every group option (combined) and every experiment's
    first point at smoke scale."""
    yield from combined_group_points()
    yield from experiment_points(["smoke"], first_only=True)


def resolved(overrides: list[str]):
    """(run id, resolved config) of one point, as a run computes them."""
    from hdist import config as C

    cfg = C.finalize(C.compose(overrides))
    return C.run_id(cfg), cfg


def main(argv: list[str] | None = None) -> int:
    import yaml
    from omegaconf import OmegaConf

    import hdist

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="smoke,small,paper", help="comma-separated scales of the experiment points")
    ap.add_argument("--sort-keys", action="store_true", help="print each config's keys sorted")
    ap.add_argument("--fixture", action="store_true", help="print tests/data/run_ids.json's points as JSON instead")
    ap.add_argument("--stems", help="comma-separated stems only, no group options (to split the work over processes)")
    args = ap.parse_args(argv)
    print(f"hdist from {hdist.__file__}", file=sys.stderr)
    if args.fixture:
        import json

        print(json.dumps({label: resolved(ovs)[0] for label, ovs in fixture_points()}, indent=1))
        return 0
    n = 0
    scales = args.scales.split(",")
    todo = experiment_points(scales, stems=args.stems.split(",")) if args.stems else points(scales)
    for label, ovs in todo:
        rid, cfg = resolved(ovs)
        print(f"== {label} {rid}")
        if args.sort_keys:
            print(yaml.safe_dump(OmegaConf.to_container(cfg), sort_keys=True, default_flow_style=None), end="")
        else:
            print(OmegaConf.to_yaml(cfg), end="")
        n += 1
    print(f"{n} configs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
