"""The code's contracts, as facts a test can check: no import circle inside hdist, algorithms and
backends never import each other, no hasattr/getattr probing of algorithm or backend modules,
every algorithm declares an AlgoSpec and every backend is a Backend, and the World layout."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hdist.types import AlgoSpec, Backend, ConfigError, World

PKG = Path(__file__).resolve().parent.parent / "hdist"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The hdist modules ``path`` imports at module level or inside functions (both can close a circle
    at run time)."""
    mod = _module_name(path)
    return _imports_of_tree(ast.parse(path.read_text()), mod, path)


def _graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}


def _top_level_graph() -> dict[str, set[str]]:
    """Module-level imports only: the ones that run when the module is imported."""
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    out = {}
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        deps: set[str] = set()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                fake = ast.Module(body=[node], type_ignores=[])
                deps |= _imports_of_tree(fake, m, p)
        out[m] = {d for d in deps if d in mods and d != m}
    return out


def _imports_of_tree(tree, mod: str, path: Path) -> set[str]:
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("hdist")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("hdist"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            # A package's __init__ importing its own submodules is how a package is built, not a circle.
            if m.startswith(d + ".") or d.startswith(m + "."):
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_circle_inside_hdist():
    assert _cycle(_top_level_graph()) is None, " -> ".join(_cycle(_top_level_graph()) or [])
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_algorithms_and_backends_never_import_each_other():
    graph = _graph()
    bad = []
    for m, deps in graph.items():
        if m.startswith("hdist.algos"):
            bad += [f"{m} -> {d}" for d in deps if d.startswith("hdist.backends")]
        if m.startswith("hdist.backends"):
            bad += [f"{m} -> {d}" for d in deps if d.startswith(("hdist.algos", "hdist.bench"))]
    assert not bad, bad


def test_no_hasattr_probing_of_algorithms_or_backends():
    """Contracts are declared (AlgoSpec, Backend) and called, never probed."""
    bad = []
    for p in [PKG / "launch.py", PKG / "config.py", PKG / "cli.py", PKG / "calibrate.py"]:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr"):
                target = ast.unparse(node.args[0]) if node.args else ""
                if target in ("algo", "backend", "spec", "mod") or "get_algo" in target or "get_backend" in target:
                    bad.append(f"{p.name}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, bad


def test_every_algorithm_declares_a_spec_and_every_backend_is_a_backend():
    from hdist.algos import algo_names, get_algo
    from hdist.backends import BACKENDS, get_backend
    from hdist.config import group_options

    assert algo_names() == group_options("algo")  # every algorithm has its config file, and every file its code
    from hdist.config import compose

    for name in algo_names():
        spec = get_algo(name)
        assert isinstance(spec, AlgoSpec) and spec.families and callable(spec.run), name
        keys = set(compose([f"algo={name}"]).algo)
        assert {k.split(".", 1)[1] for k in spec.keys} <= keys, f"{name} declares rules of keys it has not"
    for name in BACKENDS:
        b = get_backend(name)
        assert isinstance(b, Backend) and b.name == name and b.families, name
        assert type(b).launch is not Backend.launch, f"{name} does not implement launch"


def _cfg(**over):
    from omegaconf import OmegaConf

    top = {"workers": 1, "stages": 1, "servers": 0, **over}
    return OmegaConf.create({"topology": top, "algo": {"name": "x"}, "backend": {"name": "b", "ps": "server"}})


class _Multi(Backend):
    name, families = "multi", ("ps", "collective", "pipeline")

    def server_rank(self, cfg) -> bool:
        return True


class _One(Backend):
    name, families, max_workers, max_ranks = "one", ("ps", "collective", "pipeline"), 1, 1


PS = AlgoSpec(families=("ps",), run=lambda ctx: None)
COLL = AlgoSpec(families=("collective",), run=lambda ctx: None)
PIPE = AlgoSpec(families=("pipeline",), run=lambda ctx: None)


def test_world_is_the_layout_the_backends_start():
    assert World.build(_cfg(workers=3), PS, _Multi()) == World(workers=3, stages=1, servers=1, ranks=4)
    assert World.build(_cfg(workers=3), PS, Backend()) == World(workers=3, stages=1, servers=0, ranks=3)
    assert World.build(_cfg(workers=3), COLL, _Multi()) == World(workers=3, stages=1, servers=0, ranks=3)
    assert World.build(_cfg(stages=4), PIPE, _Multi()) == World(workers=1, stages=4, servers=0, ranks=4)
    assert World.build(_cfg(stages=4), PIPE, _One()) == World(workers=1, stages=4, servers=0, ranks=1)
    w = World.build(_cfg(workers=2), PS, _Multi())
    assert [w.role(r) for r in range(w.ranks)] == ["server", "worker", "worker"] and w.compute_ranks == 2


@pytest.mark.parametrize("over, spec, backend, key", [
    ({"servers": 2}, PS, _Multi(), "topology.servers=2"),
    ({"workers": 2}, COLL, _One(), "topology.workers=2"),
    ({"workers": 2}, PIPE, _Multi(), "topology.workers=2"),
    ({"stages": 2}, COLL, _Multi(), "topology.stages=2"),
    ({"workers": 2}, AlgoSpec(families=("serial",), run=lambda ctx: None, max_workers=1), _Multi(),
     "topology.workers=2"),
])
def test_world_refuses_layouts_that_cannot_run(over, spec, backend, key):
    with pytest.raises(ConfigError, match=key):
        World.build(_cfg(**over), spec, backend)


def test_no_copied_block_of_more_than_10_lines_inside_hdist():
    """The same 11 consecutive (non-blank, stripped) lines never stand in two places of hdist/."""
    n = 11
    seen: dict[tuple, tuple[Path, int, int]] = {}
    copies = []
    for p in sorted(PKG.rglob("*.py")):
        lines = [(i + 1, ln.strip()) for i, ln in enumerate(p.read_text().splitlines()) if ln.strip()]
        for j in range(len(lines) - n + 1):
            key = tuple(t for _, t in lines[j:j + n])
            if key in seen:
                q, k, line = seen[key]
                if q != p or j - k >= n:  # overlapping windows of one repeated pattern are no copy
                    copies.append(f"{p.relative_to(PKG)}:{lines[j][0]} = {q.relative_to(PKG)}:{line}")
            else:
                seen[key] = (p, j, lines[j][0])
    assert not copies, copies[:5]
