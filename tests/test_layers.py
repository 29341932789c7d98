"""The house's shape (issue 22 item 7): layers look down only, no import cycles (function-level imports
included), and no module over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("retrieval", "ingest", "benchmarks", "simlookup")
# what each package may import from the others: ingest -> retrieval, benchmarks -> ingest/retrieval, simlookup on top
ALLOWED = {
    "retrieval": set(),
    "ingest": {"retrieval"},
    "benchmarks": {"retrieval", "ingest"},
    "simlookup": {"retrieval", "ingest", "benchmarks"},
}
MAX_LINES = 600


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(ROOT)
            if "results" in rel.parts:  # committed benchmark run scripts
                continue
            name = ".".join(rel.with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ours that a file imports anywhere (``from pkg import submodule`` counts as the submodule);
    imports under ``if TYPE_CHECKING:`` are left out (they never run)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(node.module)
    return {m for m in out if m in known}


def test_layers_look_down_only() -> None:
    known = modules()
    wrong = []
    for name, path in known.items():
        pkg = name.split(".")[0]
        for dep in imports_of(path, known):
            other = dep.split(".")[0]
            if other != pkg and other not in ALLOWED[pkg]:
                wrong.append(f"{name} imports {dep}")
    assert not wrong, wrong
    server = [n for n in known if n.startswith("simlookup.server")]
    assert not [f"{n} -> {d}" for n in server for d in imports_of(known[n], known) if d.startswith("ingest")]


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports_of(path, known) - {name} for name, path in known.items()}
    # a package's __init__ importing its own submodules is how packages work, not a cycle between concepts
    for name in graph:
        graph[name] = {d for d in graph[name] if not (name.startswith(d + ".") and d in known)}
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_module_over_600_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}
