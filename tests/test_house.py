"""The house rules, checked: package boundaries, no import cycles, one YAML home, docs that exist.

The import graph is read from the source with `ast` (module-level and function-level imports
alike, since a lazy import is still a dependency), so a new edge across a boundary fails here
before it becomes a tangle.
"""
import ast
from pathlib import Path

import pytest

from conftest import ROOT

PKG = ROOT / "simreal"
BASE = {"errors", "validation", "cliargs", "files", "yamlfiles", "protocol"}
# what each top-level part of simreal may import (besides itself); data flows one way
ALLOWED = {
    "errors": set(), "validation": set(), "cliargs": set(), "files": set(),
    "yamlfiles": {"errors", "validation"},
    "protocol": set(),
    "hardware": BASE,               # servo-bus and IMU wire formats, register tables: both ends use them
    "robot": BASE,
    "bundle": BASE | {"robot"},
    "envs": BASE | {"robot"},
    "mock": BASE | {"robot", "envs", "hardware"},
    "deploy": BASE | {"robot", "bundle", "hardware"},
    "servos": BASE | {"robot", "deploy", "hardware"},   # bench tools over the deploy package's bus link
    "finetune": BASE | {"robot", "bundle", "envs", "deploy", "train", "export"},   # learns on the robot through the deploy runtime
    "algos": BASE,
    "train": BASE | {"robot", "bundle", "envs", "algos"},
    "export": BASE | {"robot", "bundle", "envs", "algos", "train"},
    "sysid": BASE | {"robot", "bundle", "envs", "deploy"},
    "sweep": BASE | {"robot", "bundle", "envs", "train", "export", "mock", "deploy"},   # trains, exports, runs the mock
    "faults": BASE | {"robot", "bundle", "mock", "deploy", "train"},   # drills the layers below, as a user would
    "demo": BASE | {"robot", "bundle", "envs", "mock", "deploy", "train", "export", "cli"},
    "cli": BASE,                    # subcommand modules are found through COMMAND_MODULES at run time
    "__init__": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """simreal modules `path` imports; `from simreal.x import y` counts y when it is a module."""
    out = set()
    tree = ast.parse(path.read_text())
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in type_only:       # `if TYPE_CHECKING:` imports are annotations, not dependencies
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "simreal"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "simreal":
            out.add(node.module)
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or (ROOT / Path(*sub.split("."))).is_dir():
                    out.add(sub)
    return out


FILES = {module_name(f): f for f in PKG.rglob("*.py")}
GRAPH = {m: imports_of(f) for m, f in FILES.items()}


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_graph_is_read():
    assert "simreal.bundle.policy" in GRAPH["simreal.deploy.session"]
    assert "simreal.protocol" in GRAPH["simreal.mock.robot"]          # `from simreal import protocol`


@pytest.mark.parametrize("area", sorted(ALLOWED))
def test_package_boundaries(area):
    crossings = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if part(m) == area
                       for t in targets if part(t) != area and part(t) not in ALLOWED[area] and t != "simreal")
    assert not crossings, f"{area} may import only {sorted(ALLOWED[area])}:\n  " + "\n  ".join(crossings)


def test_no_import_cycles():
    # edges from a package's __init__ to its own modules are lazy re-exports, not dependencies
    nodes = {m: {t for t in ts if t in GRAPH and t != m and not t.startswith(m + ".")} for m, ts in GRAPH.items()}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):                      # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in nodes[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n  " + "\n  ".join(" <-> ".join(c) for c in cycles)


def test_only_yamlfiles_reads_yaml():
    readers = sorted(m for m, f in FILES.items() if "yaml.safe_load(" in f.read_text())
    assert readers == ["simreal.yamlfiles"], readers


def test_search_dirs_finds_a_shipped_data_folder(tmp_path, monkeypatch):
    """Data folders ship without __init__.py (namespace packages): found through the import system."""
    from simreal.yamlfiles import search_dirs

    (tmp_path / "extra").mkdir()
    (tmp_path / "shipped_data_pkg" / "quadruped").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SIMREAL_TEST_PATH", str(tmp_path / "extra"))
    got = search_dirs("SIMREAL_TEST_PATH", "no-such-checkout-folder", "shipped_data_pkg")
    assert got == [tmp_path / "extra", tmp_path / "shipped_data_pkg"]
