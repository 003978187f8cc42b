"""Code metrics for a closing note: lines per top-level folder, import cycles, the longest functions.

    .venv/bin/python scripts/code_metrics.py [ROOT] [--json]

``ROOT`` is a checkout of this repository (default: this one), e.g. a ``git worktree`` of an older commit,
so the same figures can be given before and after a change (issue 10 asks for them). Standard library only.

* **Lines**: physical lines of the ``.py`` files under each folder of ``FOLDERS`` (blank and comment lines
  included: what a reader scrolls through).
* **Import cycles**: the groups of modules that import each other, found by ``scripts/check_cycles.py`` run
  on ``ROOT`` (every import statement counts, ``TYPE_CHECKING`` and function-level imports included).
* **Longest functions**: functions and methods of the product, emulator, local host and benchmarks (tests
  left out), by lines from ``def`` (decorators excluded) to their last line, as ``ast`` reports them.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_cycles import PACKAGES, find_cycles

FOLDERS = ("shared", "unprovision", "emulator", "devhost", "bench", "tests")
LONGEST = 10


def lines_per_folder(root: Path) -> dict[str, int]:
    """Folder → physical lines of its ``.py`` files."""
    return {
        folder: sum(len(p.read_text(encoding="utf-8").splitlines()) for p in (root / folder).rglob("*.py"))
        for folder in FOLDERS
    }


def _functions(tree: ast.AST, qualifier: str = "") -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, line count) of every function, methods as ``Class.name``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{qualifier}{node.name}"
            yield name, node.lineno, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{qualifier}{node.name}.")


def longest_functions(root: Path, count: int = LONGEST) -> list[dict[str, object]]:
    """The ``count`` longest functions of ``PACKAGES`` (tests left out), longest first."""
    found: list[dict[str, object]] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for name, line, length in _functions(tree):
                found.append({"function": name, "file": f"{path.relative_to(root)}:{line}", "lines": length})
    found.sort(key=lambda f: (-int(str(f["lines"])), str(f["file"])))
    return found[:count]


def metrics(root: Path) -> dict[str, object]:
    """Every figure for ``root``, JSON-ready."""
    cycles = find_cycles(root)
    return {
        "root": str(root),
        "linesPerFolder": lines_per_folder(root),
        "importCycles": len(cycles),
        "cycles": [{"ring": ring, "modules": group} for ring, group in cycles],
        "longestFunctions": longest_functions(root),
    }


def _text(root: Path) -> str:
    folders, cycles, longest = lines_per_folder(root), find_cycles(root), longest_functions(root)
    lines = [f"# {root}", "lines per folder:"]
    lines += [f"  {folder:<12} {n:>7,}" for folder, n in folders.items()]
    lines.append(f"  {'total':<12} {sum(folders.values()):>7,}")
    lines.append(f"import cycles: {len(cycles)}")
    lines += [f"  {' -> '.join(ring)} ({len(group)} modules)" for ring, group in cycles]
    lines.append(f"{LONGEST} longest functions:")
    lines += [f"  {f['lines']:>4}  {f['function']}  ({f['file']})" for f in longest]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--json"]
    root = Path(args[0]).resolve() if args else Path(__file__).resolve().parent.parent
    print(json.dumps(metrics(root), indent=2) if "--json" in argv else _text(root))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
