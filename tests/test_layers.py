"""The package's layers hold: import-linter's contracts (pyproject.toml) and no import cycles at all."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "route_switch"


def module_imports() -> dict[str, set[str]]:
    """Every route_switch module -> the route_switch modules it imports (lazy imports included,
    ``if TYPE_CHECKING:`` blocks excluded)."""
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, p in mods.items():
        tree = ast.parse(p.read_text())
        skip = {id(n) for b in ast.walk(tree) if isinstance(b, ast.If) and "TYPE_CHECKING" in ast.dump(b.test)
                for n in ast.walk(b)}
        out = set()
        for n in ast.walk(tree):
            if id(n) in skip:
                continue
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("route_switch") and not n.level:
                for a in n.names:
                    full = f"{n.module}.{a.name}"
                    out.add(full if full in mods else n.module)
            elif isinstance(n, ast.Import):
                out |= {a.name for a in n.names if a.name.startswith("route_switch")}
            elif isinstance(n, ast.ImportFrom) and n.level:
                out.add(f"<relative import in {name}>")
        graph[name] = {m for m in out if m != name and m != "route_switch"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_relative_imports_so_moves_stay_greppable():
    bad = sorted(m for deps in module_imports().values() for m in deps if m.startswith("<relative"))
    assert not bad, bad


def test_no_import_cycles():
    assert cycles(module_imports()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_imports_nothing_above_it():
    above = ("route_switch.llm", "route_switch.routing", "route_switch.optimization", "route_switch.labeling",
             "route_switch.server", "route_switch.jobs", "route_switch.integrations", "route_switch.cli")
    bad = {m: sorted(d for d in deps if d.startswith(above))
           for m, deps in module_imports().items() if m.startswith("route_switch.core")}
    assert not {m: d for m, d in bad.items() if d}, bad


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("import-linter is not installed: pip install -e '.[test]'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,  # this checkout
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout, r.stdout[-2000:]
