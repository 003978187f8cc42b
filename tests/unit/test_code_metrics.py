"""scripts/code_metrics.py on a small tree: lines per folder, cycles (TYPE_CHECKING too), longest ones."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    """``scripts/`` is not a package: load the script by path, as it is run."""
    spec = importlib.util.spec_from_file_location("code_metrics", ROOT / "scripts" / "code_metrics.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("code_metrics", module)
    spec.loader.exec_module(module)
    return module


code_metrics = _load()


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for folder in code_metrics.FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_figures_of_a_small_tree(tmp_path: Path) -> None:
    body = "".join(f"x{i} = {i}\n" for i in range(12))
    method_body = "".join(f"        {line}\n" for line in body.splitlines())
    test_body = "".join(f"    {line}\n" for line in body.splitlines()) * 3
    root = write_tree(tmp_path, {
        "shared/__init__.py": "",
        "shared/a.py": "from shared.b import B\n\n\nclass A:\n    def method(self) -> None:\n" + method_body,
        "shared/b.py": "from typing import TYPE_CHECKING\n"
                       "if TYPE_CHECKING:\n    from shared.a import A\nB = 1\n",
        "tests/test_x.py": "def test_long() -> None:\n" + test_body,
    })
    result = code_metrics.metrics(root)
    assert result["linesPerFolder"]["shared"] == 5 + 12 + 4
    assert result["linesPerFolder"]["tests"] == 1 + 36
    assert result["importCycles"] == 1
    longest = result["longestFunctions"]
    assert longest[0] == {"function": "A.method", "file": "shared/a.py:5", "lines": 13}
    assert all(not str(f["file"]).startswith("tests/") for f in longest)  # tests are left out
