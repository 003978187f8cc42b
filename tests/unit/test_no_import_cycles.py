"""No import cycles in the product, the emulator, the local host or the benchmarks (scripts/check_cycles.py).

The checker itself is tested on small trees first: a cycle hidden under ``TYPE_CHECKING`` or inside a
function must still be found, and relative imports must resolve.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_checker() -> ModuleType:
    """``scripts/`` is not a package: load the script by path, as ``make lint`` runs it."""
    spec = importlib.util.spec_from_file_location("check_cycles", ROOT / "scripts" / "check_cycles.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_cycles = _load_checker()


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def rings(root: Path) -> list[list[str]]:
    return [ring for ring, _ in check_cycles.find_cycles(root, packages=("pkg",))]


def test_a_cycle_under_type_checking_counts(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import B\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n",
    })
    assert rings(tmp_path) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_a_cycle_through_a_function_level_relative_import_counts(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/a.py": "from . import b\n",
        "pkg/sub/b.py": "def f():\n    from ..c import g\n",
        "pkg/c.py": "import pkg.sub.a\n",
    })
    assert rings(tmp_path) == [["pkg.c", "pkg.sub.a", "pkg.sub.b", "pkg.c"]]


def test_layered_imports_and_outside_modules_make_no_cycle(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "pkg/__init__.py": "import json\n",
        "pkg/low.py": "import os.path\nfrom pkg import __name__ as _n\n",
        "pkg/high.py": "from pkg.low import thing\nfrom .low import other\n",
    })
    assert rings(tmp_path) == []


def test_main_prints_each_cycle_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {f"{p}/__init__.py": "" for p in check_cycles.PACKAGES})
    write_tree(tmp_path, {"bench/x.py": "import bench.y\n", "bench/y.py": "import bench.x\n"})
    assert check_cycles.main(["check_cycles", str(tmp_path)]) == 1
    assert "bench.x -> bench.y -> bench.x" in capsys.readouterr().out


def test_the_repository_has_no_import_cycles(capsys: pytest.CaptureFixture[str]) -> None:
    code = check_cycles.main(["check_cycles", str(ROOT)])
    assert code == 0, capsys.readouterr().out
