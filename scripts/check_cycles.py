"""Find import cycles between the project's own modules; exit 1 if there is any.

    .venv/bin/python scripts/check_cycles.py [ROOT]

Why our own, beside import-linter: its contracts say which way layers may depend, but not that two
modules of one layer never import each other in a ring. Every import statement counts, wherever it is:
under ``if TYPE_CHECKING:`` and inside functions too, because a lazy or type-only import hides a cycle
rather than removing it — the two modules still cannot be understood, or split, one without the other.

Only the standard library is used (``ast``), so the check runs before anything is installed.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

PACKAGES: tuple[str, ...] = ("shared", "unprovision", "emulator", "devhost", "bench")

Graph = Mapping[str, set[str]]


def module_files(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name → source file, for every ``.py`` file under the given top-level packages."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_package(name: str, files: Mapping[str, Path]) -> bool:
    return files[name].name == "__init__.py"


def _absolute(node: ast.ImportFrom, importer: str, files: Mapping[str, Path]) -> str:
    """The absolute module a ``from ... import`` names, resolving leading dots against ``importer``."""
    if not node.level:
        return node.module or ""
    package = importer if _is_package(importer, files) else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _known(name: str, files: Mapping[str, Path]) -> str | None:
    """The most specific project module that ``name`` is or lies inside; None for outside code."""
    while name:
        if name in files:
            return name
        name = name.rpartition(".")[0]
    return None


def imported_names(tree: ast.AST, importer: str, files: Mapping[str, Path]) -> Iterator[str]:
    """Every dotted name one module imports, from any statement at any depth of its tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, importer, files)
            # ``from pkg import name``: ``name`` is a submodule when such a file exists, else an attribute.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def build_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """Importer → the project modules it imports (outside code and self-imports left out)."""
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {_known(imported, files) for imported in imported_names(tree, name, files)}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's components with more than one module, each sorted, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = _pop_component(node, stack, on_stack)
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def _pop_component(root: str, stack: list[str], on_stack: set[str]) -> list[str]:
    component: list[str] = []
    while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == root:
            return component


def shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    """One shortest ring through the component's first module, e.g. ``[a, b, a]`` (breadth first)."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a component but on no cycle")  # pragma: no cover


def find_cycles(root: Path, packages: Iterable[str] = PACKAGES) -> list[tuple[list[str], list[str]]]:
    """Per group of modules that import each other (directly or through others): one shortest ring
    through it, and every module of the group (a group can hold several rings)."""
    graph = build_graph(module_files(root, packages))
    return [(shortest_cycle(graph, group), group) for group in strongly_connected(graph)]


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    cycles = find_cycles(root)
    for ring, group in cycles:
        print("import cycle: " + " -> ".join(ring))
        if len(group) > len(ring) - 1:
            print("  entangled with it: " + ", ".join(m for m in group if m not in ring))
    print(f"{len(cycles)} import cycle(s) in {', '.join(PACKAGES)}")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
