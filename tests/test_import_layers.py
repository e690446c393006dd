"""The import picture of `common/`, `producer/` and `worker/`, as rules a change cannot break
unseen: no circle (imports inside functions count: they run too), no base module importing a
`common` subpackage, `common` never importing the producer or the workers.

Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "producer", "worker")
#: What every other module stands on; they import only each other.
BASE = {"common", "common.errors", "common.settings", "common.schemas", "common.params",
        "common.presets", "common.formats", "common.files"}  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(tree: ast.Module) -> Iterator[str]:
    """Every module named by an import in `tree` that runs (``from a import b`` names ``a.b``
    and ``a``; the graph keeps whichever is a module)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for part in node.body for inner in ast.walk(part)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target in imported(ast.parse(path.read_text(encoding="utf-8"))):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(f"{target}."):
                edges[name].add(target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    assert circles(graph()) == []


def test_the_base_modules_import_no_common_subpackage() -> None:
    edges = graph()
    up = sorted((a, b) for a in BASE & set(edges) for b in edges[a] if b not in BASE)
    assert not up, up


def test_common_imports_neither_producer_nor_worker() -> None:
    edges = graph()
    out = sorted(
        (a, b) for a, targets in edges.items() if a.startswith("common") for b in targets
        if not b.startswith("common")
    )  # fmt: skip
    assert not out, out


def test_the_rules_see_a_circle() -> None:
    """The checker itself: a circle through a function-level import is found."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    # `Context.sampler` imports the sampler inside the method: the graph has that edge.
    assert "common.lstm.sampler" in graph()["common.jobs.context"]
